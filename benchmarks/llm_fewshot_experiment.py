"""Few-shot label-order artefacts in a decoder LLM, audited and fine-tuned: SmolLM2-135M-Instruct on SST-2.

A natural case, nothing planted. Prompts are k demonstrations "Review: <phrase>\\nSentiment: positive|negative"
followed by the test "Review: <phrase>\\nSentiment:"; the answer is " positive" or " negative" (the one with
the larger log-likelihood). The demonstrations' label order is varied (``--orders``, e.g. PPPP, NNNN, PPNN,
NNPP, PNPN, NPNP): each test phrase gets, per order, demonstrations drawn from fixed per-phrase pools of
positive and negative SST-2 training phrases (the i-th P of an order is the i-th positive of the pool), so the
orders differ in their labels' arrangement, not in unrelated draws. Measured on held-out SST-2 dev phrases:

- accuracy per order, its spread (max - min) and mean;
- order dependence: the fraction of test phrases whose answer is not the same under every order, and the
  mean |log-odds(PPPP) - log-odds(NNNN)| (log-odds: LL(" positive") - LL(" negative"));
- the pull of the demonstrations' labels: majority pull P(positive | all-P) - P(positive | all-N), and
  last-label pull P(answer = last demonstration's label) - 0.5 over the balanced orders (their last labels are
  half P, half N, so a model that ignores them matches the last label half of the time whatever its bias).

The audit (``relevancy.audit.llm.audit_causal``, template "{text}": the whole few-shot prompt is the text) of
the base model: where the answer's relevance goes (shares on the demonstration-label tokens, the demonstration
phrases, the test phrase and the fixed template words), where the label words rank and what deleting them does.

Fine-tuning (LoRA, ``relevancy.finetune.causal.fine_tune_causal``) on few-shot prompts built from training
phrases with random label orders (all 2^k patterns), per seed:
(b) plain: the answer's negative log-likelihood;
(c) the same plus the deletion penalty on the words "positive" and "negative" of the prompt: the squared change
    of the answer's log-likelihood when the demonstrations' label tokens are deleted. The answer follows the
    prompt and is never deleted; phrases that contain either word are left out, so the penalised tokens are
    exactly the demonstration labels.

Resumable: every stage (base evaluation, audit, each (condition, seed)) stores its result in the work folder
(``--work``/<data key>/, the training stages in train-<training key>/ below it); a re-run skips finished
stages. Results: ``<out>.json`` and ``<out>.md`` (default benchmarks/results/llm_fewshot_experiment),
rewritten after every stage, with each stage's time and the peak memory. ``--smoke``: tiny sizes (numbers mean nothing; written to llm_fewshot_experiment-smoke.*).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import resource
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llm_shortcut_experiment import load_smollm2, right_padded, sst2_lines  # noqa: E402  (the same model, SST-2 files, batching)
from relevancy.audit import AuditSettings, Thresholds  # noqa: E402
from relevancy.audit.llm import audit_causal  # noqa: E402
from relevancy.audit.runner import RECORDS  # noqa: E402
from relevancy.finetune.causal import CausalRelevanceLoss, LoraSettings, fine_tune_causal  # noqa: E402

LABEL_WORDS = ["negative", "positive"]
ANSWERS = [" " + w for w in LABEL_WORDS]
TEMPLATE = "{text}"  # the whole few-shot prompt is built here, so the penalty and the audit see the labels
CONDITIONS = ("b", "c")
NAMES = {"base": "base SmolLM2, no fine-tuning", "b": "(b) plain fine-tuning", "c": "(c) + deletion penalty on the demonstration labels"}
SEGMENTS = ("labels", "demonstrations", "test", "template")
SMOKE = dict(train_size=16, test_size=4, steps=1, audit_size=4, seeds=[0], batch_size=2, orders=["PPNN", "NNPP"])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that the script works")
    parser.add_argument("--out", default=None, help="results path without suffix")
    parser.add_argument("--report-only", action="store_true", help="write the results of the stored stages; run nothing")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "relevancy" / "llm_fewshot_experiment"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds of (b) and (c)")
    parser.add_argument("--orders", nargs="+", default=["PPPP", "NNNN", "PPNN", "NNPP", "PNPN", "NPNP"],
                        help="demonstration label orders of the test prompts (P positive, N negative; one length)")
    parser.add_argument("--test-size", type=int, default=50, help="SST-2 dev phrases, each under every order")
    parser.add_argument("--train-size", type=int, default=400, help="few-shot training prompts (random orders)")
    parser.add_argument("--min-words", type=int, default=3)
    parser.add_argument("--max-words", type=int, default=6, help="longer phrases are skipped: short prompts")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="LoRA learning rate")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-targets", default="q_proj,v_proj", help="modules that get LoRA adapters (comma-separated)")
    parser.add_argument("--penalty-weight", type=float, default=1.0, help="of (c)")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--audit-size", type=int, default=12, help="test prompts the audit of the base model reads (orders in turn)")
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if len({len(o) for o in args.orders}) != 1 or any(set(o) - {"P", "N"} for o in args.orders):
        parser.error(f"--orders must be strings of P and N of one length; got {args.orders}")
    if args.out is None:
        name = "llm_fewshot_experiment-smoke" if args.smoke else "llm_fewshot_experiment"
        args.out = str(ROOT / "benchmarks" / "results" / name)
    return args


def read_sst2(name: str, args) -> list[dict]:
    """Phrases of ``min_words``..``max_words`` words without a label word (so the only label words of a prompt
    are its demonstrations' labels), each once."""
    rows, seen = [], set()
    for text, label in sst2_lines(name):
        text = text.strip()
        words = text.lower().split()
        if args.min_words <= len(words) <= args.max_words and not set(words) & set(LABEL_WORDS) and text not in seen:
            seen.add(text)
            rows.append({"text": text, "label": label})
    return rows


def build_prompt(demonstrations: list[dict], test: str) -> tuple[str, dict]:
    """The few-shot prompt and the character spans of its parts (labels, demonstration phrases, test phrase)."""
    prompt, spans = "", {"labels": [], "demonstrations": [], "test": []}
    for demo in demonstrations:
        prompt += "Review: "
        spans["demonstrations"].append((len(prompt), len(prompt) + len(demo["text"])))
        prompt += demo["text"] + "\nSentiment: "
        word = LABEL_WORDS[demo["label"]]
        spans["labels"].append((len(prompt), len(prompt) + len(word)))
        prompt += word + "\n"
    prompt += "Review: "
    spans["test"].append((len(prompt), len(prompt) + len(test)))
    return prompt + test + "\nSentiment:", spans


def pools(rng: random.Random, positives: list[dict], negatives: list[dict], k: int) -> dict:
    return {"P": rng.sample(positives, k), "N": rng.sample(negatives, k)}


def demonstrations_of(order: str, pool: dict) -> list[dict]:
    used = {"P": 0, "N": 0}
    demos = []
    for symbol in order:
        demos.append(pool[symbol][used[symbol]])
        used[symbol] += 1
    return demos


def make_data(args):
    rng = random.Random(args.seed)
    train, dev = read_sst2("train.tsv", args), read_sst2("dev.tsv", args)
    rng.shuffle(train)
    rng.shuffle(dev)
    k = len(args.orders[0])
    queries, demo_rows = train[: args.train_size], train[args.train_size :]
    positives = [r for r in demo_rows if r["label"] == 1]
    negatives = [r for r in demo_rows if r["label"] == 0]
    tests = []
    for row in dev[: args.test_size]:
        pool = pools(rng, positives, negatives, k)
        for order in args.orders:
            prompt, spans = build_prompt(demonstrations_of(order, pool), row["text"])
            tests.append({"text": prompt, "label": row["label"], "order": order, "spans": spans})
    training = []
    patterns = ["".join(p) for p in itertools.product("PN", repeat=k)]
    for row in queries:
        order = rng.choice(patterns)
        prompt, _ = build_prompt(demonstrations_of(order, pools(rng, positives, negatives, k)), row["text"])
        training.append({"text": prompt, "answer": ANSWERS[row["label"]], "order": order})
    return tests, training


@torch.no_grad()
def log_odds(model, tokenizer, rows: list[dict], batch_size: int = 8) -> list[float]:
    """LL(" positive") - LL(" negative") after each prompt: the answers are single tokens, compared at the
    prompt's last position (one forward per prompt, right padding)."""
    answer_ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in ANSWERS]
    if not all(len(ids) == 1 for ids in answer_ids):
        sys.exit(f"the answers must be single tokens for this benchmark; got {answer_ids}")
    answer_ids = torch.tensor([ids[0] for ids in answer_ids])
    model.eval()
    odds = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, attention, last = right_padded(tokenizer, [r["text"] for r in chunk])
        positions = torch.unique(last)
        logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=positions).logits
        column = torch.searchsorted(positions, last)
        log_probs = torch.log_softmax(logits[torch.arange(len(chunk)), column].float(), -1)[:, answer_ids]
        odds += (log_probs[:, 1] - log_probs[:, 0]).tolist()
    return odds


def order_metrics(tests: list[dict], odds: list[float], orders: list[str]) -> dict:
    """Accuracy per order, spread, order dependence, label pulls (see the module's docstring)."""
    by_order = {o: [] for o in orders}
    per_phrase: dict[int, dict] = {}
    for index, (row, value) in enumerate(zip(tests, odds)):
        predicted = int(value > 0)
        by_order[row["order"]].append((predicted, row["label"], value))
        per_phrase.setdefault(index // len(orders), {})[row["order"]] = (predicted, value)
    accuracy = {o: statistics.fmean(p == y for p, y, _ in rows) for o, rows in by_order.items()}
    recall = {o: [statistics.fmean(p == y for p, y, _ in rows if y == label) for label in (0, 1) if any(y == label for _, y, _ in rows)]
              for o, rows in by_order.items()}
    changed = statistics.fmean(len({p for p, _ in phrase.values()}) > 1 for phrase in per_phrase.values())
    k = len(orders[0])
    metrics = {
        "accuracy": accuracy, "mean_accuracy": statistics.fmean(accuracy.values()),
        # the mean of the classes' recalls, averaged over orders: always answering one class scores 0.5
        "class_balanced_accuracy": statistics.fmean(statistics.fmean(r) for r in recall.values()),
        "accuracy_spread": max(accuracy.values()) - min(accuracy.values()), "answer_changes": changed,
        "positive_rate": {o: statistics.fmean(p for p, _, _ in rows) for o, rows in by_order.items()},
    }
    all_p, all_n = "P" * k, "N" * k
    if all_p in orders and all_n in orders:
        metrics["majority_pull"] = metrics["positive_rate"][all_p] - metrics["positive_rate"][all_n]
        metrics["mean_abs_log_odds_shift"] = statistics.fmean(abs(ph[all_p][1] - ph[all_n][1]) for ph in per_phrase.values())
    balanced = [o for o in orders if o.count("P") == o.count("N")]
    if balanced:
        matches = [p == (1 if o[-1] == "P" else 0) for o in balanced for p, _, _ in by_order[o]]
        metrics["last_label_pull"] = statistics.fmean(matches) - 0.5
        metrics["balanced_orders_accuracy"] = statistics.fmean(accuracy[o] for o in balanced)
    return metrics


def segment_shares(records: list[dict], tests_by_text: dict) -> dict:
    """Per audited prompt, the answer's positive relevance (the readout left out) on each part of the prompt,
    averaged over prompts; and the label tokens' share per demonstration position (recency)."""
    shares = {s: [] for s in SEGMENTS}
    by_position: dict[int, list] = {}
    for record in records:
        spans = tests_by_text[record["text"]]["spans"]
        scores = [max(float(s), 0.0) for s in record["scores"]]
        counted = [not e for e in record["excluded"]]
        total = sum(s for s, c in zip(scores, counted) if c)
        if total <= 0:
            continue
        part = {s: 0.0 for s in SEGMENTS}
        positions = [0.0] * len(spans["labels"])
        for score, use, (start, end) in zip(scores, counted, record["offsets"]):
            if not use:
                continue
            segment = "template"
            for name in ("labels", "demonstrations", "test"):
                for index, (a, b) in enumerate(spans[name]):
                    if start < b and end > a and end > start:
                        segment = name
                        if name == "labels":
                            positions[index] += score / total
            part[segment] += score / total
        for name in SEGMENTS:
            shares[name].append(part[name])
        for index, value in enumerate(positions):
            by_position.setdefault(index + 1, []).append(value)
    return {
        "prompts": len(shares["labels"]),
        "shares": {s: statistics.fmean(v) for s, v in shares.items() if v},
        "label_share_by_position": {p: statistics.fmean(v) for p, v in by_position.items()},
    }


def audit_stage(model, tokenizer, tests, args, folder: Path) -> dict:
    """The base model's audit on ``audit_size`` test prompts (orders in turn); the label words' ranks and
    removal effects, and the relevance shares of the prompt's parts."""
    per_order = len(args.orders)
    chosen = [tests[i * per_order + (i % per_order)] for i in range(min(args.audit_size, len(tests) // per_order))]
    rows = [{"id": f"t{i}", "text": r["text"], "label": r["label"]} for i, r in enumerate(chosen)]
    settings = AuditSettings(batch_size=4, shortcut_candidates=8, shortcut_documents=len(rows),
                             thresholds=Thresholds(min_count=3), shortcut_words=tuple(LABEL_WORDS))
    report = audit_causal(model, tokenizer, rows, template=TEMPLATE, answers=ANSWERS, settings=settings,
                          out=folder, progress=True)
    records = [json.loads(line) for line in (folder / RECORDS).read_text().splitlines() if line.strip()]
    counted = [s for s in report.words if s.count >= settings.thresholds.min_count and not s.special]
    by_relevance = [s.item for s in counted]
    by_lift = [s.item for s in sorted(counted, key=lambda s: (-s.mean_lift, s.item))]
    removal = {r.item: r for r in report.shortcuts}
    return {
        "prompts": len(rows),
        "top_by_relevance": by_relevance[:8],
        "top_by_lift": by_lift[:8],
        "label_ranks": {w: {"relevance": report.rank(w, "relevance"), "lift": by_lift.index(w) + 1 if w in by_lift else None,
                            "shortcut_flag": report.rank(w, "shortcut")} for w in LABEL_WORDS},
        "shortcut_flags": [f.item for f in report.shortcut_flags()][:8],
        "removal": {w: {"flip_rate": removal[w].flips / max(removal[w].measured, 1), "mean_drop": removal[w].mean_drop,
                        "measured": removal[w].measured} for w in LABEL_WORDS if w in removal},
        "removal_order": [r.item for r in report.shortcuts],
        **segment_shares(records, {r["text"]: r for r in chosen}),
    }


def train(model, tokenizer, data, args, *, seed, penalty_weight):
    loss = CausalRelevanceLoss(penalty_weight=penalty_weight)
    result = fine_tune_causal(
        model, tokenizer, data, loss, template=TEMPLATE, penalised_words=LABEL_WORDS if penalty_weight > 0 else (),
        lora=LoraSettings(rank=args.lora_rank, alpha=2.0 * args.lora_rank, target_modules=tuple(args.lora_targets.split(","))),
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=seed, progress=True,
    )
    history = result.history
    window = max(1, min(5, len(history)))
    return result.model, {
        "first_steps": {k: statistics.fmean(h[k] for h in history[:window]) for k in ("classification", "penalty")},
        "last_steps": {k: statistics.fmean(h[k] for h in history[-window:]) for k in ("classification", "penalty")},
    }


DATA_SETTINGS = ("seed", "orders", "test_size", "train_size", "min_words", "max_words", "audit_size", "smoke")
TRAINING_SETTINGS = ("steps", "batch_size", "learning_rate", "lora_rank", "lora_targets")  # the weight names (c)'s stages


def key_of(args, names) -> str:
    return hashlib.sha256(json.dumps({k: getattr(args, k) for k in names}, sort_keys=True).encode()).hexdigest()[:16]


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out_json, out_md = Path(args.out + ".json"), Path(args.out + ".md")
    work = Path(args.work) / key_of(args, DATA_SETTINGS)  # base and audit: they depend on the data only
    trained = work / ("train-" + key_of(args, TRAINING_SETTINGS))  # the (condition, seed) stages
    trained.mkdir(parents=True, exist_ok=True)
    command = "python3 benchmarks/llm_fewshot_experiment.py " + " ".join(map(shlex.quote, argv if argv is not None else sys.argv[1:]))
    commands_path = work / "commands.json"
    commands = json.loads(commands_path.read_text()) if commands_path.exists() else []
    commands = list(dict.fromkeys(commands + ([] if args.report_only else [command.strip()])))
    if not args.report_only:
        commands_path.write_text(json.dumps(commands))
    tests, training = make_data(args)
    stages: dict[str, dict] = {}

    def save():
        for path in sorted(work.glob("*.json")) + sorted(trained.glob("*.json")):
            if path.name != "commands.json":
                stage = json.loads(path.read_text())
                if "log_odds" in stage:  # the metrics are recomputed from the stored answers
                    stage["metrics"] = order_metrics(tests, stage["log_odds"], args.orders)
                stages[path.stem.replace("__", "/")] = stage
        results = {
            "key": f"{work.name}/{trained.name}", "commands": commands,
            "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work", "report_only")},
            "data": {"test_phrases": len(tests) // len(args.orders), "test_prompts": len(tests),
                     "positive_test_phrases": sum(r["label"] for r in tests[:: len(args.orders)]),
                     "train_prompts": len(training)},
            "stages": stages,
        }
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2))
        out_md.write_text(markdown(results))
        return results

    def run_stage(name: str, compute) -> None:
        path = (trained if "/" in name else work) / (name.replace("/", "__") + ".json")
        if path.exists():
            return
        began = time.time()
        result = compute()
        result.update(seconds=time.time() - began, peak_rss_gib=peak_gib())
        path.write_text(json.dumps(result, indent=2))
        print(name, {k: v for k, v in result.items() if k != "log_odds"}, flush=True)
        save()

    save()
    if args.report_only:
        return
    base, tokenizer = load_smollm2()
    lengths = [len(tokenizer(r["text"])["input_ids"]) for r in tests]

    def evaluate(model) -> dict:
        odds = log_odds(model, tokenizer, tests)
        return {"metrics": order_metrics(tests, odds, args.orders), "log_odds": odds,
                "mean_prompt_tokens": statistics.fmean(lengths)}

    run_stage("base", lambda: evaluate(base))
    run_stage("audit", lambda: audit_stage(base, tokenizer, tests, args, work / "audit_records"))
    for seed in args.seeds:
        for condition in args.conditions:
            def stage(condition=condition, seed=seed):
                began = time.time()
                model, summary = train(base, tokenizer, training, args, seed=seed,
                                       penalty_weight=args.penalty_weight if condition == "c" else 0.0)
                summary["train_seconds"] = time.time() - began
                summary["seconds_per_step"] = summary["train_seconds"] / args.steps
                return {**summary, **evaluate(model)}

            run_stage(f"{penalty_label(args.penalty_weight) if condition == 'c' else condition}/seed{seed}", stage)
    print(markdown(save()))


def _mean_sd(values: list[float], percent: bool = False) -> str:
    scale, unit = (100.0, " pp") if percent else (1.0, "")
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0] * scale:.3f}{unit}" if not percent else f"{values[0] * scale:+.1f}{unit}"
    mean, sd = statistics.fmean(values) * scale, statistics.stdev(values) * scale
    return f"{mean:.3f} ± {sd:.3f}" if not percent else f"{mean:+.1f} ± {sd:.1f}{unit}"


METRICS = (("mean_accuracy", "mean accuracy"), ("class_balanced_accuracy", "class-balanced accuracy"), ("accuracy_spread", "accuracy spread"), ("answer_changes", "answer changes"),
           ("mean_abs_log_odds_shift", "|Δ log-odds| all-P vs all-N"), ("majority_pull", "majority pull"),
           ("last_label_pull", "last-label pull"))


def penalty_label(weight: float) -> str:
    """(c) stages of the default weight are "c"; others carry their weight ("c-w0.1")."""
    return "c" if weight == 1.0 else f"c-w{weight:g}"


def better_of(metric: str, first: float, second: float) -> bool:
    """Whether ``first`` is the better value of ``metric``."""
    if metric.endswith("accuracy"):
        return first > second
    if metric.endswith("pull"):
        return abs(first) < abs(second)
    return first < second


def markdown(results: dict) -> str:
    stages, settings, data = results["stages"], results["settings"], results["data"]
    commands = results["commands"]
    command = "; ".join(f"`{c}`" for c in commands)
    orders = settings["orders"]
    lines = [
        "# Few-shot label-order artefacts in a decoder LLM (SmolLM2-135M-Instruct, SST-2)", "",
        f"Every figure below: {command} (in this order; a re-run skips the stages already stored). Work folder key `{results['key']}`.", "",
        f"Prompts: {len(orders[0])} demonstrations \"Review: <phrase>\\nSentiment: positive|negative\" then \"Review: "
        f"<phrase>\\nSentiment:\", answers {ANSWERS}. Test: {data['test_phrases']} SST-2 dev phrases "
        f"({data['positive_test_phrases']} positive; {settings['min_words']}–{settings['max_words']} words) × orders "
        f"{', '.join(orders)} = {data['test_prompts']} prompts, demonstrations from per-phrase pools of SST-2 training phrases. "
        f"Fine-tuning: {data['train_prompts']} few-shot training prompts (random orders of all {2 ** len(orders[0])}), LoRA rank "
        f"{settings['lora_rank']} on {settings['lora_targets']} (merged), {settings['steps']} steps, batch {settings['batch_size']}, "
        f"lr {settings['learning_rate']:g}; (c): the deletion penalty on the label words' tokens, weight 1 unless the row says otherwise; "
        f"{settings['threads']} torch thread(s).", "",
    ]
    missing = [f"{c}/seed{seed}" for seed in settings["seeds"] for c in settings["conditions"] if f"{c}/seed{seed}" not in stages]
    if missing:
        lines += [f"Not run (yet): {', '.join(missing)}.", ""]
    if "base" in stages:
        lines.append(f"Mean prompt length: {stages['base']['mean_prompt_tokens']:.1f} tokens.")
        lines.append("")
    rows = {"base": [stages["base"]] if "base" in stages else []}
    variants = sorted({n.split("/")[0] for n in stages if n.startswith("c-w")}, key=lambda c: float(c[3:]))
    for condition in (*CONDITIONS, *variants):
        rows[condition] = [stages[n] for n in sorted(stages) if n.startswith(condition + "/")]
    lines += ["| model | seeds | " + " | ".join(orders) + " | " + " | ".join(label for _, label in METRICS) + " |",
              "|---|---|" + "---|" * (len(orders) + len(METRICS))]
    for condition, found in rows.items():
        if not found:
            continue
        cells = [_mean_sd([s["metrics"]["accuracy"][o] for s in found]) for o in orders]
        cells += [_mean_sd([s["metrics"][m] for s in found if m in s["metrics"]]) for m, _ in METRICS]
        name = NAMES.get(condition) or f"(c) with penalty weight {condition[3:]}"
        lines.append(f"| {name} | {len(found) if condition != 'base' else '–'} | " + " | ".join(cells) + " |")
    seeds = sorted({int(n.split("seed")[1]) for n in stages if "/seed" in n})
    for variant in ("c", *variants):
        paired = [s for s in seeds if f"b/seed{s}" in stages and f"{variant}/seed{s}" in stages]
        if not paired:
            continue
        lines += ["", f"Paired {variant} − b over seeds {paired} (mean ± sd; accuracies: higher is better, pulls: nearer 0, "
                  "the rest: lower):", ""]
        for metric, label in METRICS:
            pairs = [(stages[f"{variant}/seed{s}"]["metrics"][metric], stages[f"b/seed{s}"]["metrics"][metric]) for s in paired
                     if metric in stages[f"b/seed{s}"]["metrics"]]
            if pairs:
                better = sum(better_of(metric, c, b) for c, b in pairs)
                lines.append(f"- {label}: {_mean_sd([c - b for c, b in pairs])}; {variant} better on {better} of {len(pairs)} seeds")
    audit = stages.get("audit")
    if audit:
        shares = audit["shares"]
        lines += [
            "", f"## Audit of the base model ({audit['prompts']} test prompts, orders in turn; {audit['seconds']:.0f} s)", "",
            "Share of the answer's positive relevance (readout token left out), mean over prompts: "
            + ", ".join(f"{s} {shares[s]:.1%}" for s in SEGMENTS if s in shares)
            + " (template: \"Review:\", \"Sentiment:\", line breaks, BOS). Label tokens' share by demonstration position "
            + ", ".join(f"{p}: {v:.1%}" for p, v in audit["label_share_by_position"].items()) + ".", "",
            "Label words: " + "; ".join(
                f"`{w}` relevance rank {r['relevance']}, lift rank {r['lift']}, removal-test rank "
                f"{audit['removal_order'].index(w) + 1 if w in audit['removal_order'] else None}"
                + (f", deleting it flips {audit['removal'][w]['flip_rate']:.0%} of the answers (mean drop of the predicted "
                   f"answer's probability {audit['removal'][w]['mean_drop']:.3f}, {audit['removal'][w]['measured']} prompts)"
                   if w in audit["removal"] else "")
                for w, r in audit["label_ranks"].items()) + ".", "",
            f"Top words by relevance: {audit['top_by_relevance']}; by lift: {audit['top_by_lift']}; removal order: "
            f"{audit['removal_order']}; shortcut flags: {audit['shortcut_flags']}.",
        ]
    lines += ["", "## Cost", "", "| stage | seconds | s/step | peak RSS of its process so far, GiB |", "|---|---|---|---|"]
    for name in sorted(stages, key=lambda n: (n not in ("base", "audit"), n != "base", n)):
        stage = stages[name]
        per_step = f"{stage['seconds_per_step']:.1f}" if "seconds_per_step" in stage else "–"
        lines.append(f"| {name} | {stage['seconds']:.0f} | {per_step} | {stage['peak_rss_gib']:.2f} |")
    lines += ["", "Times were measured with one torch thread on a 2-core machine shared with several other jobs "
              "(this run's process got about a sixth to a third of a core), so they are several times an idle core's."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

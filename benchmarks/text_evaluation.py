"""Every method of the engine on ERASER Movie Reviews with a real fine-tuned MiniLM (the paper's NLP test).

Runs ``relevancy.evaluate`` (the library's resumable runner) twice per method, in one work folder:
rationale agreement + perturbation + faithfulness on the first ``--faithfulness-docs`` reviews, then
rationale agreement alone on the first ``--rationale-docs`` (finished items are not recomputed);
reviews are taken from each class in turn. The ground-truth class is explained (the paper's protocol for token-F1), so one map per
review serves all tests. Writes the table, curves, timings and plots to ``--results``.

    python scripts/train_movies_model.py --threads 1        # the model, cached in ~/.cache/relevancy/movies-minilm
    python benchmarks/text_evaluation.py --threads 1 [--rationale-docs N] [--faithfulness-docs M]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

import relevancy
from relevancy.evaluation import Dataset, evaluate, load_eraser
from relevancy.evaluation.runner import aggregate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "eraser-movies"
MODEL = Path.home() / ".cache" / "relevancy" / "movies-minilm"
WORK = Path.home() / ".cache" / "relevancy" / "text-evaluation"
TESTS = ["rationale", "perturbation", "faithfulness"]
OURS = "transformer_attribution"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL, help="made by scripts/train_movies_model.py")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", default="val")
    parser.add_argument("--methods", default=",".join(relevancy.available_methods()))
    parser.add_argument("--rationale-docs", type=int, default=40, help="reviews for token-F1 and AUPRC")
    parser.add_argument("--faithfulness-docs", type=int, default=10, help="reviews for perturbation, comprehensiveness, sufficiency")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--work", type=Path, default=WORK, help="resumable item store (outside the repo)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="where text_evaluation.* go")
    parser.add_argument("--restart", action="store_true", help="discard the items already in --work")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"no model at {args.model}: run python scripts/train_movies_model.py first (or pass --model)")
    if args.faithfulness_docs > args.rationale_docs:
        raise SystemExit("--faithfulness-docs must not exceed --rationale-docs (the same reviews come first)")

    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dataset = balanced(load_eraser(args.data, args.split))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options = dict(out_dir=args.work, batch_size=args.batch_size, target="true", text_removal="mask")

    # the first reviews of each class in turn; all methods through the costly tests first, then the rationale test on more reviews: a run cut
    # short leaves every method with results (re-running resumes where it stopped)
    timings_file = args.work / "timings.json"  # kept with the items, so resumed runs report every item's time
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() and not args.restart else {}
    restart = args.restart
    for tests, limit in ((TESTS, args.faithfulness_docs), (["rationale"], args.rationale_docs)):
        phase = "+".join(tests)
        for method in methods:
            before = done(args.work, method, tests[-1]) if not restart else 0
            started = time.perf_counter()
            evaluate(model, tokenizer, dataset, [method], tests, limit=limit, restart=restart, **options)
            seconds, new = time.perf_counter() - started, done(args.work, method, tests[-1]) - before
            restart = False
            if new:
                entry = timings.setdefault(method, {}).setdefault(phase, {"reviews_computed": 0, "seconds": 0.0})
                entry["reviews_computed"] += new
                entry["seconds"] = round(entry["seconds"] + seconds, 1)
                entry["seconds_per_review"] = round(entry["seconds"] / entry["reviews_computed"], 2)
                timings_file.write_text(json.dumps(timings, indent=2))
            print(f"{method} {phase}: {new} reviews computed in {seconds:.1f} s", flush=True)

    ids = {item.id for item in dataset.items[: args.rationale_docs]}
    records = [r for r in read_items(args.work / "items.jsonl") if r["id"] in ids and r["method"] in methods]
    results = aggregate(records, methods, TESTS)
    write(results, records, methods, timings, args, dataset)


def balanced(dataset: Dataset) -> Dataset:
    """The split's reviews taken from each class in turn (in file order within a class), so the first N
    are balanced: val.jsonl lists all 100 negative reviews before the positive ones."""
    by_label = {}
    for item in dataset.items:
        by_label.setdefault(item.label, []).append(item)
    rounds = itertools.zip_longest(*by_label.values())
    return Dataset([item for group in rounds for item in group if item is not None], dataset.modality, dataset.source)


def read_items(path: Path) -> list[dict]:
    """The runner's item records (one JSON object per complete line; each key is written once)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.endswith("}")]


def done(work: Path, method: str, test: str) -> int:
    path = work / "items.jsonl"
    return sum(r["method"] == method and r["test"] == test for r in read_items(path)) if path.is_file() else 0


def accuracy(records, test: str, method: str) -> tuple[int, int]:
    rows = [r for r in records if r["test"] == test and r["method"] == method]
    return sum(r["predicted"] == r["label"] for r in rows), len(rows)


def write(results, records, methods, timings, args, dataset) -> None:
    args.results.mkdir(parents=True, exist_ok=True)
    work = args.work / "tables"
    results.write(work)
    plots = {}
    for name in ("token_f1", "perturbation"):
        source = work / f"{name}.png"
        if source.is_file():
            plots[name] = args.results / f"text_evaluation_{name}.png"
            shutil.copyfile(source, plots[name])
    info = json.loads((args.model / "info.json").read_text()) if (args.model / "info.json").is_file() else {}
    correct, total = accuracy(records, "rationale", methods[0])
    correct_small, total_small = accuracy(records, "perturbation", methods[0])
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "model": str(args.model),
        "model_info": info,
        "data": f"{args.data} ({args.split})",
        "reviews": {"rationale": total, "perturbation_and_faithfulness": total_small, "split": len(dataset)},
        "model_accuracy": {"rationale_reviews": correct / total, "perturbation_reviews": correct_small / max(total_small, 1)},
        "explained_class": "ground truth",
        "text_removal": "perturbation: [MASK] replaces tokens; faithfulness: tokens deleted (ERASER)",
        "threads": args.threads,
        "seconds_per_method": {m: timings[m] for m in methods if m in timings},
        **results.to_json(),
        "wins": wins(results, methods),
    }
    (args.results / "text_evaluation.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    (args.results / "text_evaluation.md").write_text(markdown(results, report, methods, plots))
    print((args.results / "text_evaluation.md").read_text())


def wins(results, methods) -> dict:
    """For every row: the baselines that transformer_attribution beats, ties and loses to (in the row's direction)."""
    if OURS not in methods:
        return {}
    table = {}
    for row in results.rows:
        ours = row.values.get(OURS)
        if ours is None or math.isnan(ours):
            continue
        sign = 1 if row.arrow == "↑" else -1
        others = {m: row.values[m] for m in methods if m != OURS and row.values.get(m) is not None and not math.isnan(row.values[m])}
        table[f"{row.test}: {row.name}"] = {
            "beats_all": all(sign * (ours - v) > 0 for v in others.values()),
            "ties": [m for m, v in others.items() if v == ours],
            "loses_to": [m for m, v in others.items() if sign * (ours - v) < 0],
        }
    return table


def markdown(results, report, methods, plots) -> str:
    info = report["model_info"]
    lines = [
        "# Text evaluation: ERASER Movie Reviews, fine-tuned MiniLM",
        "",
        f"Command: `{report['command']}` (model: `{info.get('command', 'scripts/train_movies_model.py')}`).",
        "",
        f"- Model: all-MiniLM-L6-v2 fine-tuned on train.jsonl at {info.get('max_length', 512)} tokens "
        f"({info.get('trained', '?')} trained; {info.get('train_reviews', '?')} reviews, best of {info.get('epochs', '?')} epochs "
        f"on val = epoch {info.get('best_epoch', '?')}); val accuracy {info.get('val_accuracy', float('nan')):.3f} on all 200 val reviews.",
        f"- Reviews: rationale test on {report['reviews']['rationale']} of the {report['reviews']['split']} val reviews, the first of "
        "each class in turn (file order; val.jsonl lists all negatives first) "
        f"(model accuracy there {report['model_accuracy']['rationale_reviews']:.3f}); perturbation and faithfulness on the first "
        f"{report['reviews']['perturbation_and_faithfulness']} (accuracy {report['model_accuracy']['perturbation_reviews']:.3f}).",
        "- Explained class: the ground truth (paper's token-F1 protocol); one map per review serves all tests.",
        f"- {report['text_removal']}. Perturbation AUC: accuracy (and mean probability/logit of the true class) "
        "after removing 0–90 % of the tokens, trapezoid ×100.",
        "- Token-F1@k: top-k words (word score = max over its word pieces) against the union of human evidence, "
        "macro-averaged; words cut by the 512-token limit are never chosen but their evidence counts.",
        "",
        results.to_markdown().replace("# Evaluation\n", "## Results\n"),
        "## Does transformer_attribution beat each baseline?",
        "",
        "| row | beats every baseline | better than ours | tied with ours |",
        "|---|---|---|---|",
    ]
    for row, verdict in report["wins"].items():
        lines.append(f"| {row} | {'yes' if verdict['beats_all'] else 'no'} | {', '.join(verdict['loses_to'])} | {', '.join(verdict['ties'])} |")
    phases = list(next(iter(report["seconds_per_method"].values())))
    lines += ["", "## Time (seconds per review (reviews timed), one thread of a 2-core machine shared with other jobs)", "",
              "| method | " + " | ".join(phases) + " |", "|---|" + "---|" * len(phases)]
    for method, seconds in report["seconds_per_method"].items():
        lines.append(f"| {method} | " + " | ".join(f"{seconds[p]['seconds_per_review']} ({seconds[p]['reviews_computed']})" for p in phases) + " |")
    lines.append("")
    lines += [f"![{name}]({path.name})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"


def _clean(value):
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


if __name__ == "__main__":
    main()

"""Every method of the engine on ERASER Movie Reviews with a real fine-tuned MiniLM (the paper's NLP test).

Three phases, each a resumable ``relevancy.evaluate`` store of its own under ``--work`` (so that two
phases can run at once in two processes), then a report that reads them all:

- ``rationale``: token-F1@k and AUPRC against the human rationales, explaining the ground-truth class
  (the paper's protocol, ../shared/README.md), on the first ``--rationale-docs`` reviews;
- ``perturbation``: the perturbation test ([MASK] replaces tokens) and ERASER comprehensiveness/sufficiency
  (tokens deleted) on the first ``--perturbation-docs`` reviews, explaining the true class, and again
  explaining the predicted class as the paper's perturbation test does. Where the model is right the two
  maps and curves are the same, so only its mistakes are explained a second time (the report takes the
  true-class records for the others);
- ``report``: tables (Markdown + JSON), plots, chance and oracle levels of token-F1, timings.

Reviews are taken from each class in turn (val.jsonl lists all negatives first). Work goes in chunks of
reviews, every method per chunk, so a run stopped at any time leaves all methods on (nearly) the same
reviews; re-running resumes. The report compares methods on the reviews that all of them finished.

    python scripts/train_movies_model.py --threads 1     # the model, cached in ~/.cache/relevancy/movies-minilm
    python benchmarks/text_evaluation.py --phase rationale --rationale-docs 200 --threads 1
    python benchmarks/text_evaluation.py --phase perturbation --perturbation-docs 24 --threads 1
    python benchmarks/text_evaluation.py --phase report --results benchmarks/results   # the shipped report

Another split (an ERASER folder with test.jsonl): the same commands with ``--split test --data DIR``.
Stores are kept per data set and split (``--work/<data folder name>-<split>/``), so splits never mix;
the report goes to ``--work/<data>-<split>/report`` unless ``--results`` names a folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

import relevancy
from relevancy.evaluation import Dataset, evaluate, load_eraser, metrics
from relevancy.evaluation.runner import Results, Row, aggregate
from relevancy.evaluation.statistics import intervals_json, intervals_markdown, table_intervals

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "eraser-movies"
MODEL = Path.home() / ".cache" / "relevancy" / "movies-minilm"
WORK = Path.home() / ".cache" / "relevancy" / "text-evaluation"
OURS = "transformer_attribution"
# store folder, tests, explained class of each phase's runs
STORES = {
    "rationale": (["rationale"], "true"),
    "true": (["perturbation", "faithfulness"], "true"),
    "predicted": (["perturbation", "faithfulness"], "predicted"),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", choices=["rationale", "perturbation", "report"], required=True)
    parser.add_argument("--model", type=Path, default=MODEL, help="made by scripts/train_movies_model.py")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", default="val")
    parser.add_argument("--methods", default=",".join(relevancy.available_methods()))
    parser.add_argument("--rationale-docs", type=int, default=200, help="reviews for token-F1 and AUPRC")
    parser.add_argument("--perturbation-docs", type=int, default=24, help="reviews for perturbation, comprehensiveness, sufficiency")
    parser.add_argument("--chunk", type=int, default=0, help="reviews per chunk (default: 50 for rationale, 8 for perturbation)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--work", type=Path, default=WORK, help="resumable item stores (outside the repo), one subfolder per data set and split")
    parser.add_argument("--results", type=Path, default=None,
                        help="where text_evaluation.* go (default: the stores' report/ folder; the shipped report: benchmarks/results)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the confidence intervals")
    parser.add_argument("--restart", action="store_true", help="discard the items already in this phase's stores")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "benchmarks/text_evaluation.py", *(sys.argv[1:] if argv is None else argv)])
    args.work = store_folder(args.work, args.data, args.split)
    args.results = args.results or args.work / "report"
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"no model at {args.model}: run python scripts/train_movies_model.py first (or pass --model)")

    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dataset = balanced(load_eraser(args.data, args.split))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.phase == "report":
        report(args, dataset, methods)
        return
    run = Runner(args, model, tokenizer, dataset)
    if args.phase == "rationale":
        for limit in chunks(args.rationale_docs, args.chunk or 50, len(dataset)):
            for method in methods:
                run("rationale", method, dataset.head(limit))
        return
    for limit in chunks(args.perturbation_docs, args.chunk or 8, len(dataset)):
        for method in methods:
            run("true", method, dataset.head(limit))
        for method in methods:  # the predicted class where it differs from the true one
            wrong = {r["id"] for r in read_items(args.work / "true") if r["method"] == method and r["predicted"] != r["label"]}
            run("predicted", method, Dataset([i for i in dataset.items[:limit] if i.id in wrong], dataset.modality, dataset.source))


class Runner:
    """``evaluate`` for one method on one store, timing what it computes and logging the command."""

    def __init__(self, args, model, tokenizer, dataset) -> None:
        self.args, self.model, self.tokenizer = args, model, tokenizer
        self.restarted: set[str] = set()
        for store in STORES:
            (args.work / store).mkdir(parents=True, exist_ok=True)

    def __call__(self, store: str, method: str, data: Dataset) -> None:
        tests, target = STORES[store]
        folder = self.args.work / store
        restart = self.args.restart and store not in self.restarted
        if restart:
            (folder / "timings.json").unlink(missing_ok=True)
            (folder / "commands.json").unlink(missing_ok=True)
        if store not in self.restarted:
            self.restarted.add(store)
            log = folder / "commands.json"
            commands = json.loads(log.read_text()) if log.is_file() else []
            log.write_text(json.dumps([*commands, self.args.command], indent=2))
        if not data.items:
            return
        before = 0 if restart else done(folder, method, tests[0])
        started = time.perf_counter()
        try:
            evaluate(self.model, self.tokenizer, data, [method], tests, out_dir=folder, batch_size=self.args.batch_size,
                     target=target, text_removal="mask", restart=restart, progress=False)
        except ValueError as error:
            if "holds results with other settings" not in str(error):
                raise
            raise SystemExit(str(error).split("; use another --out")[0] + ": pass another --work folder to keep them, "
                             "or --restart to discard them") from error
        seconds, new = time.perf_counter() - started, done(folder, method, tests[0]) - before
        if new:
            timings_file = folder / "timings.json"
            timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
            entry = timings.setdefault(method, {"reviews_computed": 0, "seconds": 0.0})
            entry["reviews_computed"] += new
            entry["seconds"] = round(entry["seconds"] + seconds, 1)
            entry["seconds_per_review"] = round(entry["seconds"] / entry["reviews_computed"], 2)
            timings_file.write_text(json.dumps(timings, indent=2))
        print(f"{time.strftime('%H:%M:%S')} {store} {method}: {new} reviews computed in {seconds:.1f} s (up to review {len(data)})", flush=True)


def store_folder(work: Path, data: Path, split: str) -> Path:
    """The stores of one data set and split: results of different splits never share a store."""
    return work / f"{data.resolve().name}-{split}"


def chunks(total: int, size: int, available: int) -> list[int]:
    total = min(total, available)
    return [min(limit, total) for limit in range(size, total + size, size)]


def balanced(dataset: Dataset) -> Dataset:
    """The split's reviews taken from each class in turn (in file order within a class), so the first N
    are balanced: val.jsonl lists all 100 negative reviews before the positive ones."""
    by_label = {}
    for item in dataset.items:
        by_label.setdefault(item.label, []).append(item)
    rounds = itertools.zip_longest(*by_label.values())
    return Dataset([item for group in rounds for item in group if item is not None], dataset.modality, dataset.source)


def read_items(folder: Path) -> list[dict]:
    """The runner's item records (one JSON object per complete line; each key is written once)."""
    path = folder / "items.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.endswith("}")]


def done(folder: Path, method: str, test: str) -> int:
    return sum(r["method"] == method and r["test"] == test for r in read_items(folder))


def common(records: list[dict], methods: list[str], order: list[str]) -> list[str]:
    """Ids every method has a record for, in data set order."""
    have = [{r["id"] for r in records if r["method"] == m} for m in methods]
    return [i for i in order if all(i in h for h in have)]


# -- the report ----------------------------------------------------------------------------------
def report(args, dataset: Dataset, methods: list[str]) -> None:
    order = [item.id for item in dataset.items]
    rationale = [r for r in read_items(args.work / "rationale") if r["method"] in methods]
    true = [r for r in read_items(args.work / "true") if r["method"] in methods]
    rationale_methods = [m for m in methods if any(r["method"] == m for r in rationale)]
    perturbation_methods = [m for m in methods if any(r["method"] == m for r in true)]
    rationale_ids = set(common(rationale, rationale_methods, order)[: args.rationale_docs])
    true_ids = set(common(true, perturbation_methods, order)[: args.perturbation_docs])
    rationale = [r for r in rationale if r["id"] in rationale_ids]
    true = [r for r in true if r["id"] in true_ids]
    predicted = predicted_records(true, [r for r in read_items(args.work / "predicted") if r["id"] in true_ids])
    predicted_ids = set(common(predicted, perturbation_methods, order))  # a run stopped mid-chunk: its mistakes not yet re-explained
    predicted = [r for r in predicted if r["id"] in predicted_ids]

    parts = [
        ("", aggregate(rationale, rationale_methods, ["rationale"])),
        ("", aggregate(true, perturbation_methods, ["perturbation", "faithfulness"])),
        (", predicted class", aggregate(predicted, perturbation_methods, ["perturbation", "faithfulness"])),
    ]
    rows = [Row(row.test + suffix, row.name, row.metric, row.values) for suffix, part in parts for row in part.rows]
    table = Results(methods, rows)
    intervals = [
        dataclasses.replace(row, test=row.test + suffix)
        for suffix, records, part_methods, tests in (
            ("", rationale, rationale_methods, ["rationale"]),
            ("", true, perturbation_methods, ["perturbation", "faithfulness"]),
            (", predicted class", predicted, perturbation_methods, ["perturbation", "faithfulness"]),
        )
        for row in table_intervals(records, part_methods, tests, reference=OURS, resamples=args.resamples)
    ]

    args.results.mkdir(parents=True, exist_ok=True)
    plots = {}
    with_plots = [("token_f1", parts[0][1]), ("perturbation", parts[1][1]), ("perturbation_predicted", parts[2][1])]
    for name, part in with_plots:
        part.write(args.work / "plots" / name)
        source = part.files.get("token_f1_plot" if name == "token_f1" else "perturbation_plot")
        if source:
            plots[name] = args.results / f"text_evaluation_{name}.png"
            shutil.copyfile(source, plots[name])

    info = json.loads((args.model / "info.json").read_text()) if (args.model / "info.json").is_file() else {}
    first = rationale_methods[0]
    result = {
        "commands": {store: json.loads((args.work / store / "commands.json").read_text()) for store in STORES if (args.work / store / "commands.json").is_file()}
        | {"report": args.command},
        "model": str(args.model),
        "model_info": info,
        "data": f"{args.data} ({args.split}, {len(dataset)} reviews)",
        "split": args.split,
        "reviews": {"rationale": len(rationale_ids), "perturbation_and_faithfulness": len(true_ids), "predicted_class": len(predicted_ids)},
        "model_accuracy": {
            "rationale_reviews": accuracy(rationale, first),
            "perturbation_reviews": accuracy(true, perturbation_methods[0]) if true else None,
        },
        "reviews_explained_again_for_the_predicted_class": len({r["id"] for r in predicted if r["predicted"] != r["label"]}),
        "methods_not_run": [m for m in relevancy.available_methods() if m not in rationale_methods],
        "text_removal": "perturbation: [MASK] replaces tokens; faithfulness: tokens deleted (ERASER)",
        "items_per_method": {name: part.notes for name, (_, part) in zip(("rationale", "true class", "predicted class"), parts)},
        "truncation": parts[0][1].notes.get("truncation"),
        "token_f1_reference": reference_levels(rationale, first, dataset),
        "seconds_per_review": {store: json.loads((args.work / store / "timings.json").read_text()) for store in STORES if (args.work / store / "timings.json").is_file()},
        **table.to_json(),
        "intervals": intervals_json(intervals),
        "resamples": args.resamples,
        "wins": wins(table, methods, intervals),
    }
    (args.results / "text_evaluation.json").write_text(json.dumps(_clean(result), indent=2) + "\n")
    (args.results / "text_evaluation.md").write_text(markdown(table, result, methods, plots, intervals))
    print((args.results / "text_evaluation.md").read_text())


def predicted_records(true: list[dict], again: list[dict]) -> list[dict]:
    """Records explaining the predicted class: the true-class ones where the model is right (the same
    map and curves), the re-explained ones where it is wrong."""
    redone = {(r["method"], r["test"], r["id"]): r for r in again}
    out = []
    for record in true:
        if record["predicted"] == record["label"]:
            assert record["target_class"] == record["predicted"], "a right prediction explains the same class either way"
            out.append(record)
        elif (record["method"], record["test"], record["id"]) in redone:
            out.append(redone[(record["method"], record["test"], record["id"])])
    return out


def accuracy(records: list[dict], method: str) -> float:
    rows = {r["id"]: r for r in records if r["method"] == method}.values()
    return sum(r["predicted"] == r["label"] for r in rows) / max(len(rows), 1)


def reference_levels(rationale: list[dict], method: str, dataset: Dataset, seed: int = 0) -> dict:
    """Token-F1@k of maps that need no model, on the same reviews and the same 512-token window:
    random word scores (chance), and the human evidence itself (the best a map can do when the words
    beyond the window are never chosen; "full document": also without truncation)."""
    rng = np.random.default_rng(seed)
    rows = [r for r in rationale if r["method"] == method]
    if not rows:
        return {}
    evidence = {item.id: np.asarray(item.evidence, dtype=bool) for item in dataset.items}
    levels = {"random": [], "oracle in the window": [], "oracle, full document": []}
    for row in rows:
        mask = evidence[row["id"]]
        seen = np.arange(mask.size) < mask.size - row["cut"]
        for name, scores in (
            ("random", np.where(seen, rng.random(mask.size), -np.inf)),
            ("oracle in the window", np.where(seen, mask.astype(float), -np.inf)),
            ("oracle, full document", mask.astype(float)),
        ):
            levels[name].append([metrics.top_k_prf(scores, mask, k)[2] for k in metrics.RATIONALE_KS])
    return {"k": list(metrics.RATIONALE_KS), **{name: np.mean(values, 0).round(4).tolist() for name, values in levels.items()}}


def wins(results, methods, intervals=()) -> dict:
    """For every row: the baselines that transformer_attribution beats, ties and loses to (in the row's
    direction), and those whose paired difference from it is significant (95 % interval excludes 0)."""
    if OURS not in methods:
        return {}
    table = {}
    paired = {f"{row.test}: {row.name}": row for row in intervals}
    for row in results.rows:
        ours = row.values.get(OURS)
        if ours is None or math.isnan(ours):
            continue
        sign = 1 if row.arrow == "↑" else -1
        others = {m: row.values[m] for m in methods if m != OURS and row.values.get(m) is not None and not math.isnan(row.values[m])}
        name = f"{row.test}: {row.name}"
        significant = {m: c.difference.estimate for m, c in paired[name].versus_reference.items() if c.significant} if name in paired else {}
        table[name] = {
            "beats_all": all(sign * (ours - v) > 0 for v in others.values()),
            "ties": [m for m, v in others.items() if v == ours],
            "loses_to": [m for m, v in others.items() if sign * (ours - v) < 0],
            "significantly_better_than_ours": [m for m, d in significant.items() if sign * d > 0],
            "significantly_worse_than_ours": [m for m, d in significant.items() if sign * d < 0],
        }
    return table


def markdown(table: Results, report: dict, methods: list[str], plots: dict, intervals=()) -> str:
    info = report["model_info"]
    reviews = report["reviews"]
    lines = [
        "# Text evaluation: ERASER Movie Reviews, fine-tuned MiniLM",
        "",
        "Commands (model: `" + info.get("command", "scripts/train_movies_model.py") + "`):",
        "",
        *[f"- {store}: " + ", ".join(f"`{c}`" for c in commands) for store, commands in report["commands"].items() if store != "report"],
        f"- report: `{report['commands']['report']}`",
        "",
        f"- Model: all-MiniLM-L6-v2 fine-tuned on train.jsonl at {info.get('max_length', 512)} tokens "
        f"({info.get('trained', '?')} trained; {info.get('train_reviews', '?')} reviews, best of {info.get('epochs', '?')} epochs "
        f"on val = epoch {info.get('best_epoch', '?')}, its selection split: val accuracy {info.get('val_accuracy', float('nan')):.3f}).",
        f"- Data: {report['data']}.",
        f"- Rationale test (explaining the ground-truth class, the paper's token-F1 protocol) on {reviews['rationale']} {report['split']} reviews "
        f"(model accuracy there {report['model_accuracy']['rationale_reviews']:.3f}); perturbation and faithfulness on the first "
        f"{reviews['perturbation_and_faithfulness']}, each class in turn (accuracy {report['model_accuracy']['perturbation_reviews'] or float('nan'):.3f}), "
        f"explaining the true class and, in the rows marked \"predicted class\", the predicted one on the first {reviews['predicted_class']} "
        f"({report['reviews_explained_again_for_the_predicted_class']} misclassified reviews explained again).",
        f"- Methods not run (time): {', '.join(report['methods_not_run']) or 'none'}.",
        f"- {report['text_removal']}. Perturbation AUC: accuracy (and mean probability/logit of the explained class) "
        "after removing 0–90 % of the tokens, trapezoid ×100.",
        "- Token-F1@k: top-k words (word score = max over its word pieces) against the union of human evidence, "
        "macro-averaged; words cut by the 512-token limit are never chosen but their evidence counts.",
        f"- {report['truncation']}.",
        "",
        table.to_markdown().replace("# Evaluation\n", "## Results\n"),
    ]
    items = report["items_per_method"]
    lines += [f"- reviews per method: rationale {items['rationale'].get('rationale items')}; perturbation {items['true class'].get('perturbation items')}", ""]
    reference = report["token_f1_reference"]
    if reference:
        ks = reference["k"]
        picks = [i for i, k in enumerate(ks) if k in (5, 10, 20, 40, 80)]
        lines += [
            "## Token-F1 without a model: chance and the best possible (same reviews, same window)",
            "",
            "| map | " + " | ".join(f"F1@{ks[i]}" for i in picks) + " |",
            "|---|" + "---|" * len(picks),
        ]
        for name in ("random", "oracle in the window", "oracle, full document"):
            lines.append(f"| {name} | " + " | ".join(f"{reference[name][i]:.4f}" for i in picks) + " |")
        lines.append("")
    if intervals:
        lines += [f"## 95 % confidence intervals (bootstrap over reviews, {report['resamples']} resamples) and paired differences", "",
                  "Each row recomputed on resampled reviews exactly as the table computes it (the same draws for every method).", "",
                  intervals_markdown(list(intervals), methods, OURS), ""]
    lines += ["## Does transformer_attribution beat each baseline?", "",
              "Point estimates, and (last two columns) only the differences whose paired 95 % interval excludes 0.", "",
              "| row | beats every baseline | better than ours | tied with ours | significantly better | significantly worse |",
              "|---|---|---|---|---|---|"]
    for row, verdict in report["wins"].items():
        lines.append(f"| {row} | {'yes' if verdict['beats_all'] else 'no'} | {', '.join(verdict['loses_to'])} | {', '.join(verdict['ties'])} | "
                     f"{', '.join(verdict.get('significantly_better_than_ours', []))} | {', '.join(verdict.get('significantly_worse_than_ours', []))} |")
    seconds = report["seconds_per_review"]
    names = {"rationale": "rationale (map)", "true": "perturbation + faithfulness, true class", "predicted": "the same, predicted class (misclassified only)"}
    stores = [s for s in names if s in seconds]
    lines += ["", "## Time (seconds per review (reviews timed), one thread of a 2-core machine shared with other jobs)", "",
              "| method | " + " | ".join(names[s] for s in stores) + " |", "|---|" + "---|" * len(stores)]
    for method in methods:
        cells = [f"{seconds[s][method]['seconds_per_review']} ({seconds[s][method]['reviews_computed']})" if method in seconds[s] else "" for s in stores]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
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

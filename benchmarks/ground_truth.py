"""Every method against evidence known by construction (scripts/make_ground_truth.py's two tasks).

Per test item and method, maps are scored (``relevancy.evaluation.ground_truth``: precision at k,
AUPRC, relevance mass) for these explained classes:

- ``predicted``: the predicted class against its planted evidence (correctly classified items; for a
  misclassified item the predicted class's planted evidence, if any, in "predicted, misclassified");
- ``true, misclassified``: the true class of a misclassified item against its planted evidence;
- ``contrast``: in text with a planted contrast trigger (one word of another class, outvoted), that
  class against that word;
- ``absent class``: a class with no evidence in the item (the runner-up among absent classes) — its
  positive mass on the label's evidence (lower: the map is class-specific; a class-agnostic map
  scores the same as for the predicted class);
- ``selectivity``: per item, the predicted class's mass minus the absent class's mass on the same
  evidence (0 for a class-agnostic map, however much mass it puts there).

Ablation check first (the same test items rendered without evidence / without distractors). Values
are means over items with 95 % bootstrap intervals, and paired differences from
transformer_attribution (significant when the interval excludes 0). Resumable per method: records go
to ``--work/<task>/items.jsonl``; a method already there is not recomputed, so new methods add rows cheaply.

    python scripts/make_ground_truth.py --task text --threads 1              # the two models (committed; the image
    python scripts/make_ground_truth.py --task image --fresh-image --image-epochs 15 --image-width 128 --threads 1  # one ~26 min)
    python benchmarks/ground_truth.py --threads 1 --results benchmarks/results   # the shipped report
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # this checkout's library, and the task generators
import make_ground_truth as tasks  # noqa: E402  (the task generators live with the training script)

WORK = Path.home() / ".cache" / "relevancy" / "ground-truth"
REFERENCE = "transformer_attribution"
RANDOM = "random (chance)"
#: (kind, metric, higher is better) of the report's rows.
ROWS = [
    ("predicted", "precision_at_k", True), ("predicted", "auprc", True), ("predicted", "mass", True),
    ("true, misclassified", "precision_at_k", True), ("true, misclassified", "auprc", True), ("true, misclassified", "mass", True),
    ("predicted, misclassified", "mass", True),
    ("contrast", "precision_at_k", True), ("contrast", "auprc", True), ("contrast", "mass", True),
    ("absent class", "mass", False), ("selectivity", "mass", True),
]
METRIC_NAMES = {"precision_at_k": "precision@k", "auprc": "AUPRC", "mass": "relevance mass"}
SELECTIVITY_NAME = "mass, predicted − absent class"


def load_task(task: str, models: Path):
    from relevancy.adapters.loading import load

    folder = models / task
    if not (folder / "info.json").is_file():
        raise SystemExit(f"no {task} model at {folder}: run python scripts/make_ground_truth.py --task {task} --threads 1")
    model, processor = load(str(folder))
    info = json.loads((folder / "info.json").read_text())
    return model.eval(), processor, info


def role_masks(task: str, processor, batch) -> tuple[dict, dict]:
    """Model inputs and {role: (B, units) bool} for a batch of examples; text units are tokens
    (word i = token i + 1 with the word-level tokenizer), image units the pixels."""
    if task == "text":
        texts, roles = zip(*(example.render() for example in batch))
        inputs = dict(processor(list(texts), padding=True, return_tensors="pt", return_special_tokens_mask=True))
        shape = inputs["input_ids"].shape
        masks = {role: torch.zeros(shape, dtype=torch.bool) for role in tasks.ROLES}
        for b, item_roles in enumerate(roles):
            if len(item_roles) + 2 > shape[1]:
                raise ValueError("a document is longer than the model reads: shorten the task's documents")
            for i, role in enumerate(item_roles):
                masks[role][b, i + 1] = True
        return inputs, masks
    rendered = [example.render() for example in batch]
    inputs = tasks.image_inputs(np.stack([image for image, _ in rendered]))
    return inputs, {role: torch.from_numpy(np.stack([m[role] for _, m in rendered])) for role in tasks.ROLES}


def explain_batch(task: str, model, processor, method: str, batch, ids: list[str]) -> list[dict]:
    from relevancy.evaluation.ground_truth import score_maps

    inputs, masks = role_masks(task, processor, batch)
    with torch.no_grad():
        logits = model(**{k: v for k, v in inputs.items() if k != "special_tokens_mask"}).logits
    labels = torch.tensor([example.label for example in batch])
    predicted = logits.argmax(-1)
    planted = [getattr(example, "contrast", None) for example in batch]
    # a class with no evidence in the item: the runner-up among the classes that are not planted in it
    ranked = logits.argsort(-1, descending=True)
    absent = torch.tensor([next(int(c) for c in ranked[b] if int(c) not in (int(labels[b]), planted[b])) for b in range(len(batch))])
    contrast = torch.tensor([c if c is not None else int(absent[b]) for b, c in enumerate(planted)])
    has_contrast = torch.tensor([c is not None for c in planted])
    evidence, contrast_evidence = masks["evidence"], masks["contrast"]

    def per_item(flags):  # (B,) -> broadcastable against the (B, units) masks
        return flags.view(-1, *[1] * (evidence.dim() - 1))

    # the predicted class's planted evidence: the label's, or the contrast trigger's when it predicted that class
    predicted_evidence = torch.where(per_item(predicted == labels), evidence,
                                     torch.where(per_item((predicted == contrast) & has_contrast), contrast_evidence, torch.zeros_like(evidence)))
    targets = [predicted, labels, contrast]
    wanted = [predicted_evidence, evidence, torch.where(per_item(has_contrast), contrast_evidence, evidence)]
    scored = score_maps(model, inputs, method, targets, wanted)
    records = []
    for b, item_id in enumerate(ids):
        right = bool(predicted[b] == labels[b])
        base = {"method": method, "id": item_id, "label": int(labels[b]), "predicted": int(predicted[b])}
        records.append({**base, "kind": "predicted" if right else "predicted, misclassified", **_metrics(scored[0][b])})
        if not right:
            records.append({**base, "kind": "true, misclassified", **_metrics(scored[1][b])})
        kind = "contrast" if bool(has_contrast[b]) else "absent class"
        records.append({**base, "kind": kind, **_metrics(scored[2][b])})
    return records


def random_records(task: str, processor, batch, ids: list[str], seed: int) -> list[dict]:
    """Chance levels: a map of independent uniform scores, scored like the methods' maps."""
    from relevancy.evaluation.ground_truth import evidence_scores

    inputs, masks = role_masks(task, processor, batch)
    rng = np.random.default_rng(seed)
    units = None
    if task == "text":
        units = (inputs["attention_mask"].bool() & ~inputs["special_tokens_mask"].bool()).numpy()
    records = []
    for b, item_id in enumerate(ids):
        scores = rng.random(masks["evidence"][b].shape)
        kept = None if units is None else units[b]
        base = {"method": RANDOM, "id": item_id, "label": batch[b].label, "predicted": None}
        records.append({**base, "kind": "predicted", **evidence_scores(scores, masks["evidence"][b].numpy(), kept)})
        if getattr(batch[b], "contrast", None) is not None:
            records.append({**base, "kind": "contrast", **evidence_scores(scores, masks["contrast"][b].numpy(), kept)})
        else:
            records.append({**base, "kind": "absent class", **evidence_scores(scores, masks["evidence"][b].numpy(), kept)})
    return records


def _metrics(result: dict) -> dict:
    return {k: result[k] for k in ("precision_at_k", "auprc", "mass")} | {"target_class": result["target_class"]}


def read_records(path: Path) -> list[dict]:
    """Complete lines only (a run killed mid-write leaves a broken last line, recomputed on resume)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def run_task(task: str, args, methods: list[str]) -> dict:
    from relevancy.evaluation.runner import _jsonable

    model, processor, info = load_task(task, args.models)
    count = args.text_items if task == "text" else args.image_items
    examples = tasks.examples(task, "test", info["test"], info.get("distractors", tasks.DISTRACTORS_PER_SCENE))
    evaluated = examples[:count]
    ids = [f"{task}-test-{i:05d}" for i in range(len(evaluated))]
    folder = args.work / task
    folder.mkdir(parents=True, exist_ok=True)
    store, meta_path = folder / "items.jsonl", folder / "meta.json"
    meta = {"model": _fingerprint(model), "test_seed": tasks.SPLIT_SEEDS["test"], "test": info["test"]}
    if meta_path.is_file() and json.loads(meta_path.read_text()) != meta and not args.restart:
        raise SystemExit(f"{folder} holds records of another model or test set: pass another --work, or --restart to discard them")
    if args.restart:
        store.unlink(missing_ok=True)
    meta_path.write_text(json.dumps(meta, indent=2))
    seconds_path = folder / "seconds.json"
    seconds = json.loads(seconds_path.read_text()) if seconds_path.is_file() else {}
    for method in [RANDOM, *methods]:
        done = {r["id"] for r in read_records(store) if r["method"] == method}
        pending = [i for i, item_id in enumerate(ids) if item_id not in done]
        started = time.perf_counter()
        for start in range(0, len(pending), args.batch_size):
            chunk = pending[start : start + args.batch_size]
            batch, batch_ids = [evaluated[i] for i in chunk], [ids[i] for i in chunk]
            if method == RANDOM:
                records = random_records(task, processor, batch, batch_ids, seed=chunk[0])
            else:
                records = explain_batch(task, model, processor, method, batch, batch_ids)
            with store.open("a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(_jsonable(r)) + "\n" for r in records))
        if pending:
            seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - started
            seconds_path.write_text(json.dumps(seconds, indent=2))
            print(f"{time.strftime('%H:%M:%S')} {task} {method}: {len(pending)} items in {time.perf_counter() - started:.1f} s", flush=True)
    records = [r for r in read_records(store) if r["id"] in set(ids)]
    ablation = {
        "all parts": tasks.accuracy(task, model, processor, examples),
        "evidence removed": tasks.accuracy(task, model, processor, examples, keep=("distractor",)),
        "distractors removed": tasks.accuracy(task, model, processor, examples, keep=("evidence", "contrast")),
        "chance": 1 / len(model.config.id2label), "items": len(examples),
    }
    config = model.config
    shape = (f"{config.num_hidden_layers}-layer BERT, width {config.hidden_size}, word-level tokenizer" if task == "text" else
             f"{config.num_hidden_layers}-layer ViT, width {config.hidden_size}, {config.patch_size} px patches on {config.image_size} px scenes")
    return {"info": info, "shape": shape, "records": records, "ablation": ablation, "items": len(ids), "seconds": seconds}


def _fingerprint(model) -> str:
    return f"{type(model).__name__}:{sum(float(p.detach().double().sum()) for p in model.parameters()):.8g}"


def summarise(run: dict, methods: list[str], resamples: int):
    """RowIntervals per (kind, metric): means over items with bootstrap intervals, paired against the reference."""
    from relevancy.evaluation.statistics import RowIntervals, mean_interval, paired_difference

    shown = [RANDOM, *methods]
    rows = []
    for kind, metric, up in ROWS:
        per_method = {method: (selectivity(run["records"], method) if kind == "selectivity" else _values(run["records"], method, kind, metric))
                      for method in shown}
        if not any(per_method.values()):
            continue
        intervals = {m: mean_interval(list(v.values()), resamples=resamples) for m, v in per_method.items() if v}
        if all(interval.n == 0 for interval in intervals.values()):  # undefined for every item (e.g. no planted evidence)
            continue
        versus = {}
        if per_method.get(REFERENCE):
            reference = per_method[REFERENCE]
            for m in methods:
                if m != REFERENCE and per_method.get(m):
                    common = sorted(set(reference) & set(per_method[m]))
                    versus[m] = paired_difference([per_method[m][i] for i in common], [reference[i] for i in common], resamples=resamples)
        rows.append(RowIntervals(kind, SELECTIVITY_NAME if kind == "selectivity" else METRIC_NAMES[metric], up, intervals, versus))
    return rows


def _values(records: list[dict], method: str, kind: str, metric: str) -> dict:
    return {r["id"]: (np.nan if r[metric] is None else r[metric]) for r in records if r["method"] == method and r["kind"] == kind}


def selectivity(records: list[dict], method: str) -> dict:
    """Per item, the map's mass on the label's evidence for the predicted (= true) class minus that
    for a class absent from the item: 0 for a class-agnostic map (the same map for every class),
    whatever its mass; positive when the map follows the explained class."""
    predicted, absent = _values(records, method, "predicted", "mass"), _values(records, method, "absent class", "mass")
    return {i: predicted[i] - absent[i] for i in predicted if i in absent}


def markdown(runs: dict, rows: dict, methods: list[str], args) -> str:
    from relevancy.evaluation.statistics import intervals_markdown

    lines = ["# Ground truth: maps against evidence known by construction", "",
             f"Command: `{shlex.join(['python', 'benchmarks/ground_truth.py', *args.argv])}`; models: "
             "scripts/make_ground_truth.py (tasks described there; each model's command below). ",
             "Metrics per item (CLEVR-XAI, Arras et al. 2022): precision@k = share of the map's top-k units that are "
             "evidence, k = number of evidence units (tokens without [CLS]/[SEP]; pixels); AUPRC of the map's scores "
             "against the evidence; relevance mass = positive relevance on the evidence / all positive relevance. "
             "Patch maps are upsampled to pixels (bilinear). Values: mean over items [95 % bootstrap interval, "
             f"{args.resamples} resamples]; paired differences from {REFERENCE} on the same items. "
             f"'{RANDOM}': uniform random scores (chance level). Rows: see the docstring of benchmarks/ground_truth.py; "
             f"'absent class' (lower is better): the mass on the label's evidence of a map explaining a class with no evidence "
             f"in the item; 'selectivity': per item, predicted-class mass minus absent-class mass on the same evidence (0 for "
             "a class-agnostic map).", ""]
    for task, run in runs.items():
        info, ablation = run["info"], run["ablation"]
        kinds = {}
        for r in run["records"]:
            if r["method"] == REFERENCE:
                kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
        lines += [f"## {task} task", "",
                  f"Model: {run['shape']}, trained from scratch in {info['train_minutes']:.1f} min on one thread "
                  f"({info['train']} training items{', new ones every epoch' if info.get('fresh_train_per_epoch') else ''}, "
                  f"best epoch {info['best_epoch']} of {info['epochs']}); test accuracy {100 * info['test_accuracy']:.2f} % on {info['test']} items. "
                  f"Command: `{info['command']}`.",
                  "",
                  f"Ablation on the same {ablation['items']} test items: all parts {100 * ablation['all parts']:.2f} %, evidence removed "
                  f"{100 * ablation['evidence removed']:.2f} % (chance {100 * ablation['chance']:.1f} %), distractors removed "
                  f"{100 * ablation['distractors removed']:.2f} %.", "",
                  f"Evaluated items: {run['items']}; rows' item counts for {REFERENCE}: " + ", ".join(f"{k} {v}" for k, v in kinds.items()) + ".", "",
                  intervals_markdown(rows[task], [RANDOM, *methods], REFERENCE, digits=3, row_label="explained class"), ""]
        seconds = run["seconds"]
        lines += ["Time (s, all items, three targets each, one thread of a shared 2-core machine): " +
                  ", ".join(f"{m} {seconds[m]:.0f}" for m in methods if m in seconds), ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="text,image")
    parser.add_argument("--methods", default=None, help="comma-separated (default: relevancy.available_methods())")
    parser.add_argument("--text-items", type=int, default=1000)
    parser.add_argument("--image-items", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--models", type=Path, default=tasks.MODELS)
    parser.add_argument("--work", type=Path, default=WORK, help="resumable records, one folder per task")
    parser.add_argument("--results", type=Path, default=None,
                        help="where ground_truth.md/.json go (default: --work/report; the shipped report: benchmarks/results)")
    parser.add_argument("--restart", action="store_true", help="discard the stored records")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    import relevancy
    from relevancy.evaluation.runner import _jsonable
    from relevancy.evaluation.statistics import intervals_json

    methods = [m.strip() for m in args.methods.split(",")] if args.methods else relevancy.available_methods()
    results = args.results or args.work / "report"
    runs, rows = {}, {}
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        runs[task] = run_task(task, args, methods)
        rows[task] = summarise(runs[task], methods, args.resamples)
    results.mkdir(parents=True, exist_ok=True)
    (results / "ground_truth.md").write_text(markdown(runs, rows, methods, args), encoding="utf-8")
    summary = {
        "command": shlex.join(["python", "benchmarks/ground_truth.py", *args.argv]), "methods": methods, "reference": REFERENCE,
        "tasks": {task: {"model": run["info"], "ablation": run["ablation"], "items": run["items"], "seconds": run["seconds"],
                         "rows": intervals_json(rows[task])} for task, run in runs.items()},
    }
    (results / "ground_truth.json").write_text(json.dumps(_jsonable(summary), indent=1) + "\n", encoding="utf-8")
    print((results / "ground_truth.md").read_text())


if __name__ == "__main__":
    main()

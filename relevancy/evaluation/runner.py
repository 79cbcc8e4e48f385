"""Run methods through the paper's tests on a data set, resumably, and tabulate them side by side.

Each (method, test, item) result is one line of ``out_dir/items.jsonl``, appended window by window:
a run that was stopped resumes without recomputing finished items, and a key is never written
twice. Tables and plots are always rebuilt from that file, so a resumed run and an uninterrupted
one give the same results.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..adapters.structure import describe
from ..batching import DEFAULT_WINDOW, batches, windows
from ..distributed.options import RayOptions
from ..engine import attribute
from ..methods import get_method
from . import metrics
from .data import Dataset, encode, from_hf, label_index, max_length
from .perturbation import (
    ImageRemoval,
    TokenRemoval,
    faithfulness_scores,
    normaliser,
    perturbation_curves,
    pixel_maps,
    predict,
)

TESTS = ("perturbation", "faithfulness", "rationale", "segmentation", "specificity")
ITEMS = "items.jsonl"
META = "meta.json"


# -- the record store ----------------------------------------------------------------------------
class ItemStore:
    """``items.jsonl`` keyed by (method, test, id), with the settings that give records their meaning
    in ``meta.json`` (a folder with other settings is refused rather than mixed)."""

    def __init__(self, folder: Path, meta: dict, restart: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path, meta_path = folder / ITEMS, folder / META
        if not restart and self.path.exists() and meta_path.exists():
            saved = json.loads(meta_path.read_text(encoding="utf-8"))
            differing = {k: (saved.get(k), v) for k, v in meta.items() if saved.get(k) != v}
            if differing:
                details = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differing.items())
                raise ValueError(f"{folder} holds results with other settings ({details}); use another --out (out_dir), or --restart (restart=True), which discards them")
        else:
            self.path.write_text("", encoding="utf-8")
        meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
        self.records = self._read()
        self.keys = {key(record) for record in self.records}

    def _read(self) -> list[dict]:
        """Complete lines only, each key once: a run killed mid-write leaves a broken last line,
        which is dropped (its item is recomputed)."""
        records, clean, seen = [], [], set()
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if line.endswith("\n") and key(record) not in seen:
                seen.add(key(record))
                records.append(record)
                clean.append(line)
        self.path.write_text("".join(clean), encoding="utf-8")
        return records

    def append(self, records: list[dict]) -> None:
        new = [r for r in records if key(r) not in self.keys]
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(_jsonable(r)) + "\n" for r in new))
        self.records.extend(new)
        self.keys.update(key(r) for r in new)


def key(record: dict) -> tuple[str, str, str]:
    return record["method"], record["test"], record["id"]


# -- one batch -----------------------------------------------------------------------------------
@dataclass
class Batch:
    """A batch ready for every test: model inputs, how to remove parts of them, and the labels."""

    items: list
    inputs: dict
    removal: object
    labels: torch.Tensor
    word_ids: list | None = None
    cut: list | None = None
    masks: list | None = None
    class_masks: list | None = None


class Evaluator:
    """Prepares batches for one model and runs the tests on them."""

    def __init__(self, model, processor, *, target: str, text_removal: str, to_inputs: Callable | None) -> None:
        self.model = model
        self.processor = processor
        self.structure = describe(model)
        self.target = target
        self.text_removal = text_removal
        self.to_inputs = to_inputs or self._default_normaliser()

    def _default_normaliser(self):
        channels = self.structure.num_channels or 3
        mean = getattr(self.processor, "image_mean", None) or [0.5] * channels
        std = getattr(self.processor, "image_std", None) or [0.5] * channels
        return normaliser(mean, std, dtype=self.model.dtype)

    def batch(self, items: list, labels: list[int]) -> Batch:
        labels = torch.tensor(labels)
        if self.structure.modality == "text":
            if self.processor is None:
                raise ValueError("evaluating a text model needs its tokenizer: pass it as the processor")
            encoded = encode(self.processor, items, max_length(self.processor, self.model))
            removal = TokenRemoval(encoded.inputs, self.processor, self.text_removal)
            return Batch(items, encoded.inputs, removal, labels, word_ids=encoded.word_ids, cut=encoded.cut)
        loaded = [item.load(self.structure.image_size, self.structure.num_channels or 3) for item in items]
        images = torch.stack([torch.from_numpy(image).permute(2, 0, 1) for image, _, _ in loaded])
        removal = ImageRemoval(images, self.to_inputs)
        return Batch(items, removal.original(), removal, labels, masks=[m for _, m, _ in loaded], class_masks=[c for _, _, c in loaded])

    def lengths(self, items: list) -> list[int] | None:
        """Token counts of text items (for length-bucketed batches); None for images, which are all one size."""
        if self.structure.modality != "text" or self.processor is None:
            return None
        if all(item.words is not None for item in items):
            encoded = self.processor([item.words for item in items], is_split_into_words=True)
        else:
            encoded = self.processor([item.text for item in items])
        return [len(ids) for ids in encoded["input_ids"]]

    def explain(self, method: str, batch: Batch, target):
        """``relevancy.attribute`` on the model's device, brought back to the CPU where batches are built."""
        device = next(self.model.parameters()).device
        inputs = {name: value.to(device) for name, value in batch.inputs.items()}
        target = target.to(device) if isinstance(target, torch.Tensor) else target
        attribution = attribute(self.model, inputs, method, target, structure=self.structure)
        attribution.scores = attribution.scores.cpu()
        attribution.target_classes = attribution.target_classes.cpu()
        return attribution

    def run(self, method: str, batch: Batch, tests: list[str]) -> list[dict]:
        attribution = self.explain(method, batch, batch.labels if self.target == "true" else None)
        base = predict(self.model, batch.inputs)
        classes = attribution.target_classes
        scores = pixel_maps(attribution, self.structure) if self.structure.modality == "image" else attribution.scores
        results = {test: getattr(self, f"_{test}")(method, batch, scores, classes, base) for test in tests}
        records = []
        for index, item in enumerate(batch.items):
            common = {
                "label": int(batch.labels[index]),
                "target_class": int(classes[index]),
                "predicted": int(base[index].argmax()),
            }
            if batch.cut is not None:
                common["cut"] = batch.cut[index]
            for test, per_item in results.items():
                records.append({"method": method, "test": test, "id": item.id, **common, **per_item[index]})
        return records

    # each test: a list with one JSON-ready dict per item of the batch
    def _perturbation(self, method, batch, scores, classes, base) -> list[dict]:
        curves = {
            name: perturbation_curves(self.model, batch.removal, scores, batch.labels, classes, most_relevant_first=first, base_logits=base)
            for name, first in (("positive", True), ("negative", False))
        }
        return [
            {
                name: {field_: [float(getattr(r, field_)[b]) for r in readouts] for field_ in ("correct", "probability", "logit")}
                for name, readouts in curves.items()
            }
            for b in range(len(batch.items))
        ]

    def _faithfulness(self, method, batch, scores, classes, base) -> list[dict]:
        removal = batch.removal
        if isinstance(removal, TokenRemoval) and removal.mode != "delete":
            removal = TokenRemoval(batch.inputs, self.processor, "delete")  # ERASER: the text without the tokens
        return faithfulness_scores(self.model, removal, scores, batch.labels, classes, base_logits=base)

    def _rationale(self, method, batch, scores, classes, base) -> list[dict]:
        records = []
        for b, item in enumerate(batch.items):
            words = metrics.word_scores(scores[b].float().numpy(), batch.word_ids[b], len(item.words))
            result = metrics.rationale_scores(words, item.evidence)
            records.append({"prf": {str(k): list(v) for k, v in result["prf"].items()}, "auprc": result["auprc"], "words": len(item.words)})
        return records

    def _segmentation(self, method, batch, scores, classes, base) -> list[dict]:
        return [metrics.segmentation_stats(scores[b].numpy(), mask) for b, mask in enumerate(batch.masks)]

    def _specificity(self, method, batch, scores, classes, base) -> list[dict]:
        """Explain each of the two objects' classes; the share of positive relevance on its own object."""
        pairs = [sorted(c.items()) if len(c) == 2 else None for c in batch.class_masks]
        firsts = [self._class(p[0][0], item) if p else 0 for p, item in zip(pairs, batch.items)]
        seconds = [self._class(p[1][0], item) if p else 0 for p, item in zip(pairs, batch.items)]
        maps = [pixel_maps(self.explain(method, batch, torch.tensor(explained)), self.structure).numpy() for explained in (firsts, seconds)]
        records = []
        for b, pair in enumerate(pairs):
            if pair is None:
                records.append({"share": None})
                continue
            (_, first), (_, second) = pair
            shares = [metrics.class_specificity(maps[0][b], first, second), metrics.class_specificity(maps[1][b], second, first)]
            shares = [share for share in shares if not math.isnan(share)]
            records.append({"share": float(np.mean(shares)) if shares else None})
        return records

    def _class(self, label, item) -> int:
        return label_index(label, self.structure.labels, f"{item.where} (object mask {label!r})")


def run_window(evaluator: Evaluator, method: str, items: list, labels: list[int], tests: list[str], batch_size: int, bucket: bool) -> list[dict]:
    """The records of ``items`` (item by item, in their order), from batches of similar token counts
    when ``bucket`` (less padding), else from batches in order. A local run and Ray actors both use it."""
    lengths = evaluator.lengths(items) if bucket else None
    per_item: list[list[dict]] = [[] for _ in items]
    for group in batches(lengths or [0] * len(items), batch_size, bucket=lengths is not None):
        batch = evaluator.batch([items[i] for i in group], [labels[i] for i in group])
        records = evaluator.run(method, batch, tests)  # item by item, each item's tests in turn
        for row, position in enumerate(group):
            per_item[position] = records[row * len(tests) : (row + 1) * len(tests)]
    return [record for records in per_item for record in records]


# -- results -------------------------------------------------------------------------------------
@dataclass
class Row:
    test: str
    name: str
    metric: str  # a key of metrics.HIGHER_IS_BETTER
    values: dict  # method -> value

    @property
    def arrow(self) -> str:
        return metrics.arrow(self.metric)


@dataclass
class Results:
    """The results table (rows of metrics, methods side by side), the curves behind the plots, and notes."""

    methods: list[str]
    rows: list[Row]
    curves: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    def value(self, test: str, name: str, method: str) -> float:
        for row in self.rows:
            if row.test == test and row.name == name:
                return row.values[method]
        raise KeyError(f"no row {name!r} of test {test!r}; rows: {', '.join(r.name for r in self.rows)}")

    def to_markdown(self) -> str:
        header = "| test | metric | | " + " | ".join(self.methods) + " |"
        lines = [header, "|" + "---|" * (3 + len(self.methods))]
        for row in self.rows:
            cells = " | ".join(_format(row.values.get(m)) for m in self.methods)
            lines.append(f"| {row.test} | {row.name} | {row.arrow} | {cells} |")
        notes = [f"- {k}: {v}" for k, v in self.notes.items()]
        return "\n".join(["# Evaluation", "", *lines, "", "↑ higher is better, ↓ lower is better.", "", *notes]) + "\n"

    def to_json(self) -> dict:
        return {
            "methods": self.methods,
            "rows": [{"test": r.test, "metric": r.name, "higher_is_better": metrics.HIGHER_IS_BETTER[r.metric], "values": r.values} for r in self.rows],
            "curves": self.curves,
            "notes": self.notes,
        }

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.files["markdown"] = folder / "results.md"
        self.files["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        self.files["json"] = folder / "results.json"
        self.files["json"].write_text(json.dumps(_jsonable(self.to_json()), indent=2), encoding="utf-8")
        self.files["csv"] = folder / "results.csv"
        with self.files["csv"].open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["test", "metric", "direction", *self.methods])
            for row in self.rows:
                writer.writerow([row.test, row.name, row.arrow, *(_format(row.values.get(m)) for m in self.methods)])
        self.files.update(_plots(self.curves, folder))


def aggregate(records: list[dict], methods: list[str], tests: list[str]) -> Results:
    """Results from item records: the data set's value of every metric, per method."""
    rows, curves, notes = [], {}, {}
    by = {(m, t): [r for r in records if r["method"] == m and r["test"] == t] for m in methods for t in tests}
    for test in tests:
        per_method = {m: _summarise(test, by[(m, test)]) for m in methods if by[(m, test)]}
        for m, (method_rows, method_curves) in per_method.items():
            for name, metric, value in method_rows:
                row = next((r for r in rows if r.test == test and r.name == name), None)
                if row is None:
                    row = Row(test, name, metric, {})
                    rows.append(row)
                row.values[m] = value
            if method_curves:
                curves.setdefault(test, {})[m] = method_curves
        notes[f"{test} items"] = {m: len(by[(m, test)]) for m in methods}
    cut = {r["id"]: r["cut"] for r in records if "cut" in r}
    if cut:
        notes["truncation"] = (
            f"{sum(1 for c in cut.values() if c)} of {len(cut)} texts were truncated to the model's length; "
            f"{sum(cut.values())} words (tokens for plain text) were cut and not seen by the model "
            "(rationale scores still count their evidence: they are never chosen)"
        )
    return Results(methods, rows, curves, notes)


def _summarise(test: str, records: list[dict]):
    """(rows [(name, metric, value)], curves) of one method on one test."""
    return {
        "perturbation": _summarise_perturbation,
        "faithfulness": _summarise_faithfulness,
        "rationale": _summarise_rationale,
        "segmentation": _summarise_segmentation,
        "specificity": _summarise_specificity,
    }[test](records)


def _summarise_perturbation(records):
    rows, curves = [], {"fractions": list(metrics.PERTURBATION_FRACTIONS)}
    for direction in ("positive", "negative"):
        for field_, quantity in (("correct", "accuracy"), ("probability", "probability"), ("logit", "logit")):
            curve = np.mean([r[direction][field_] for r in records], axis=0)
            curves[f"{direction}_{quantity}"] = curve.tolist()
            rows.append((f"{direction} AUC ({quantity})", f"perturbation_auc_{direction}", metrics.perturbation_auc(curve)))
    return rows, curves


def _summarise_faithfulness(records):
    return [
        ("comprehensiveness (AOPC)", "comprehensiveness", float(np.mean([r["comprehensiveness"] for r in records]))),
        ("sufficiency (AOPC)", "sufficiency", float(np.mean([r["sufficiency"] for r in records]))),
    ], None


def _summarise_rationale(records):
    ks = sorted(int(k) for k in records[0]["prf"])
    prf = np.array([[r["prf"][str(k)] for k in ks] for r in records])  # (docs, ks, 3)
    macro = prf.mean(0)
    rows = [(f"token F1@{k}", "token_f1", float(macro[i, 2])) for i, k in enumerate(ks)]
    aps = [r["auprc"] for r in records if r["auprc"] is not None and not math.isnan(r["auprc"])]
    rows.append(("AUPRC", "auprc", float(np.mean(aps)) if aps else math.nan))
    curves = {"k": ks, "precision": macro[:, 0].tolist(), "recall": macro[:, 1].tolist(), "f1": macro[:, 2].tolist()}
    return rows, curves


def _summarise_segmentation(records):
    accumulator = metrics.SegmentationAccumulator()
    for record in records:
        accumulator.add_stats({**record, "ap": math.nan if record["ap"] is None else record["ap"]})
    result = accumulator.result()
    names = {"pixel_accuracy": "pixel accuracy (%)", "miou": "mIoU (%)", "map": "mAP (%)", "iou_foreground": "IoU foreground (%)", "iou_background": "IoU background (%)"}
    return [(label, metric, 100 * result[metric]) for metric, label in names.items()], None


def _summarise_specificity(records):
    shares = [r["share"] for r in records if r["share"] is not None]
    return [("share on own object", "class_specificity", float(np.mean(shares)) if shares else math.nan)], None


def _plots(curves: dict, folder: Path) -> dict:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    files = {}
    if "perturbation" in curves:
        figure = Figure(figsize=(6, 4))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for index, (method, curve) in enumerate(curves["perturbation"].items()):
            colour = f"C{index}"
            axes.plot(curve["fractions"], curve["positive_accuracy"], "-o", color=colour, label=f"{method} positive")
            axes.plot(curve["fractions"], curve["negative_accuracy"], "--s", color=colour, label=f"{method} negative")
        axes.set(xlabel="fraction of the input removed", ylabel="accuracy", title="Perturbation (positive ↓, negative ↑)")
        axes.legend(fontsize="small")
        files["perturbation_plot"] = folder / "perturbation.png"
        figure.savefig(files["perturbation_plot"], dpi=120, bbox_inches="tight")
    if "rationale" in curves:
        figure = Figure(figsize=(6, 4))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for method, curve in curves["rationale"].items():
            axes.plot(curve["k"], curve["f1"], "-o", label=method)
        axes.set(xlabel="k (top words)", ylabel="token F1", title="Agreement with human rationales")
        axes.legend(fontsize="small")
        files["token_f1_plot"] = folder / "token_f1.png"
        figure.savefig(files["token_f1_plot"], dpi=120, bbox_inches="tight")
    return files


# -- the entry point -----------------------------------------------------------------------------
def evaluate(
    model,
    processor,
    dataset,
    methods: list[str],
    tests: list[str],
    *,
    out_dir,
    batch_size: int = 8,
    limit: int | None = None,
    target: str = "predicted",
    text_removal: str = "mask",
    label_map: dict | None = None,
    to_inputs: Callable | None = None,
    restart: bool = False,
    progress: bool = True,
    length_window: int = DEFAULT_WINDOW,
    ray: RayOptions | str | bool | None = None,
) -> Results:
    """Run every method through every test on ``dataset`` (a ``data.Dataset`` or an HF ``datasets``
    object) and write items.jsonl, results.md/.csv/.json and plots to ``out_dir``.

    ``target``: explain the "predicted" class or the "true" one. ``text_removal``: "mask" or
    "delete" tokens in the perturbation test (faithfulness always deletes, as ERASER).
    ``to_inputs`` maps [0, 1] images to model inputs (default: the processor's mean/std).
    ``length_window``: texts are batched by token count within windows of this many (0: in order).
    ``ray``: run the tests on a Ray cluster (True, "host:port" or ``RayOptions``; see ``audit``).
    """
    if target not in ("predicted", "true"):
        raise ValueError(f"unknown target {target!r}: use 'predicted' or 'true'")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if length_window < 0:
        raise ValueError("length_window must be >= 0 (0: batches in the data's order)")
    ray = RayOptions.parse(ray)
    dataset = (dataset if isinstance(dataset, Dataset) else from_hf(dataset)).head(limit)
    methods = [get_method(m).name for m in methods]
    evaluator = Evaluator(model, processor, target=target, text_removal=text_removal, to_inputs=to_inputs)
    _check_tests(tests, dataset, evaluator.structure)
    labels = [label_index(item.label, evaluator.structure.labels, item.where, label_map) for item in dataset.items]
    meta = {"model": _fingerprint(model), "data": dataset.source, "target": target, "text_removal": text_removal}
    store = ItemStore(Path(out_dir), meta, restart=restart)
    pending = {
        method: [i for i, item in enumerate(dataset.items) if any((method, t, item.id) not in store.keys for t in tests)]
        for method in methods
    }
    if ray is None:
        with tqdm(total=len(methods) * len(dataset), desc="evaluate", unit="item", disable=not progress) as bar:
            for method in methods:
                bar.update(len(dataset) - len(pending[method]))
                for span in windows(len(pending[method]), length_window or batch_size):
                    chosen = [pending[method][i] for i in span]
                    items, item_labels = [dataset.items[i] for i in chosen], [labels[i] for i in chosen]
                    store.append(run_window(evaluator, method, items, item_labels, tests, batch_size, length_window > 0))
                    bar.update(len(chosen))
    else:
        from ..distributed.ray_backend import evaluate_on_ray  # Ray is imported only when asked for

        jobs = [(method, dataset.items[i], labels[i]) for method in methods for i in pending[method]]
        options = {"target": target, "text_removal": text_removal, "to_inputs": to_inputs}
        evaluate_on_ray(model, processor, options, jobs, store, list(tests), batch_size, length_window, ray, progress)
    position = {item.id: index for index, item in enumerate(dataset.items)}
    # in the data set's order, whatever order the records were written in (windows, resumes, Ray)
    records = sorted((r for r in store.records if r["id"] in position), key=lambda r: position[r["id"]])
    results = aggregate(records, methods, list(tests))
    results.write(Path(out_dir))
    return results


def _check_tests(tests, dataset: Dataset, structure) -> None:
    if not tests:
        raise ValueError(f"no tests chosen; choose from {', '.join(TESTS)}")
    for test in tests:
        if test not in TESTS:
            raise ValueError(f"unknown test {test!r}; choose from {', '.join(TESTS)}")
    if dataset.modality != structure.modality:
        raise ValueError(f"the data set holds {dataset.modality} but the model reads {structure.modality}")
    needs = {
        "rationale": (dataset.has_evidence, "human rationales for every text (an ERASER folder)"),
        "segmentation": (dataset.has_masks, "an object mask for every image (masks/<name>.png)"),
        "specificity": (dataset.has_class_masks, "two-object images with masks/<name>/<label>.png per object"),
    }
    for test in tests:
        if test in needs and not needs[test][0]:
            raise ValueError(f"the {test} test needs {needs[test][1]}; {dataset.source} has none — drop it from the tests")


def _fingerprint(model) -> str:
    """Enough to tell two models apart when resuming: class, origin, size and a weight checksum."""
    parameters = list(model.parameters())
    checksum = sum(float(p.detach().double().sum()) for p in parameters)
    origin = getattr(getattr(model, "config", None), "_name_or_path", "")
    return f"{type(model).__name__}:{origin}:{sum(p.numel() for p in parameters)}:{checksum:.6g}"


def _format(value) -> str:
    """Empty for no value; four decimals for fractions, two for percentages and AUCs."""
    if value is None or math.isnan(value):
        return ""
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"


def _jsonable(value):
    """NaN is not JSON: written as null."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value

"""Every method of the engine on the two Fashion-MNIST scenes models: segmentation (pixel accuracy,
mIoU, mAP against the item's own silhouette), perturbation AUC (positive and negative), and class
specificity on two-item images; plus maps of the DINOv2 model on scikit-image's natural images.

    python scripts/make_fashion_scenes.py && python scripts/train_image_models.py --threads 1
    python benchmarks/image_evaluation.py --threads 1

Runs go through ``relevancy.evaluate`` (resumable: item records in ~/.cache/relevancy/image-evaluation);
tables, JSON and small plots are written to benchmarks/results/image_evaluation*.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
CACHE = Path.home() / ".cache" / "relevancy"
#: The paper's ViT-B figures on ImageNet (Chefer et al. 2021, Tables 2-3, as in ../shared/METHOD.md):
#: a different data set and model, shown beside ours for orientation only.
PAPER = {
    "segmentation": {
        "transformer_attribution": {"pixel_accuracy": 79.70, "map": 86.03, "miou": 61.95},
        "rollout": {"pixel_accuracy": 73.54, "map": 84.76, "miou": 55.42},
        "partial_lrp": {"pixel_accuracy": 76.31, "map": 84.67, "miou": 57.94},
    },
    "perturbation": {  # predicted class, accuracy AUC: (negative, positive)
        "transformer_attribution": (54.16, 17.03), "rollout": (53.1, 20.05), "raw_attention": (45.55, 23.99),
        "attention_gradcam": (41.52, 34.06), "full_lrp": (43.49, 41.94), "partial_lrp": (50.49, 19.64),
    },
}
#: (column, test, row name in the runner's results) of the summary tables.
COLUMNS = [
    ("pixel acc (%) ↑", "segmentation", "pixel accuracy (%)", True),
    ("mIoU (%) ↑", "segmentation", "mIoU (%)", True),
    ("mAP (%) ↑", "segmentation", "mAP (%)", True),
    ("pos. AUC acc ↓", "perturbation", "positive AUC (accuracy)", False),
    ("neg. AUC acc ↑", "perturbation", "negative AUC (accuracy)", True),
    ("pos. AUC prob ↓", "perturbation", "positive AUC (probability)", False),
    ("neg. AUC prob ↑", "perturbation", "negative AUC (probability)", True),
    ("specificity ↑", "specificity", "share on own object", True),
]


def run_model(name: str, folder: Path, data: Path, methods: list[str], images: int, pairs: int, work: Path, batch_size: int) -> dict:
    """Both evaluations of one model; per-image records come back for error bars."""
    from relevancy.adapters.loading import load
    from relevancy.evaluation import evaluate, load_image_folder

    model, processor = load(str(folder))
    results, timings = {}, {}
    for split, tests, limit in (("test", ["segmentation", "perturbation"], images), ("test_pairs", ["specificity"], pairs)):
        records_dir, started = work / name / split, time.time()
        before = _lines(records_dir / "items.jsonl")
        results[split] = evaluate(model, processor, load_image_folder(data / split), methods, tests,
                                  out_dir=records_dir, batch_size=batch_size, limit=limit)
        # compute time is kept beside the records, so that a resumed or re-tabulated run reports it whole
        clock = records_dir / "seconds.json"
        spent = json.loads(clock.read_text()) if clock.is_file() else 0.0
        if _lines(records_dir / "items.jsonl") != before:
            spent += time.time() - started
            clock.write_text(json.dumps(spent))
        timings[split] = spent
    records = [json.loads(line) for split in ("test", "test_pairs") for line in (work / name / split / "items.jsonl").read_text().splitlines()]
    wanted = {split: {item.id for item in load_image_folder(data / split).items[:limit]} for split, limit in (("test", images), ("test_pairs", pairs))}
    records = [r for r in records if r["id"] in wanted["test_pairs" if r["test"] == "specificity" else "test"]]
    metrics = json.loads((folder / "metrics.json").read_text())
    # a map with no information ranks pixels at random: its expected AP is the mask's share of the pixels
    coverage = float(np.mean([item.load()[1].mean() for item in load_image_folder(data / "test").items[:images]]))
    return {"results": results, "records": records, "seconds": timings, "metrics": metrics, "mask_coverage": coverage,
            "classes": len(model.config.id2label), "input": model.config.image_size, "patch": model.config.patch_size}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def table(model_run: dict, methods: list[str]) -> dict:
    """{method: {column: value}} from the runner's results."""
    values = {m: {} for m in methods}
    for column, test, row, _ in COLUMNS:
        split = "test_pairs" if test == "specificity" else "test"
        for method in methods:
            values[method][column] = model_run["results"][split].value(test, row, method)
    return values


#: Per-image quantities: (name, scale, higher is better).
PER_IMAGE = (("ap", 100.0, True), ("share", 1.0, True), ("pos_prob_auc", 1.0, False), ("neg_prob_auc", 1.0, True))


def per_image(records: list[dict], methods: list[str]) -> dict:
    """Per method: mean and standard error of the per-image AP (%), specificity share and the
    explained class's probability AUCs, and the share of images on which transformer_attribution
    does better than the method (paired; lower is better for the positive AUC)."""
    from relevancy.evaluation.metrics import perturbation_auc

    out = {}
    series = {}
    for method in methods:
        mine = [r for r in records if r["method"] == method]
        series[method] = {
            "ap": {r["id"]: r["ap"] for r in mine if r["test"] == "segmentation" and r["ap"] is not None},
            "share": {r["id"]: r["share"] for r in mine if r["test"] == "specificity" and r["share"] is not None},
            "pos_prob_auc": {r["id"]: perturbation_auc(r["positive"]["probability"]) for r in mine if r["test"] == "perturbation"},
            "neg_prob_auc": {r["id"]: perturbation_auc(r["negative"]["probability"]) for r in mine if r["test"] == "perturbation"},
        }
    for method in methods:
        entry = {}
        for quantity, scale, up in PER_IMAGE:
            values = np.array(list(series[method][quantity].values())) * scale
            entry[quantity] = {"mean": float(values.mean()) if values.size else math.nan,
                               "se": float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else math.nan, "n": int(values.size)}
            ours = series["transformer_attribution"][quantity] if "transformer_attribution" in series else {}
            theirs = series[method][quantity]
            common = sorted(set(ours) & set(theirs))
            if method != "transformer_attribution" and common:
                entry[quantity]["ta_wins"] = float(np.mean([ours[i] > theirs[i] if up else ours[i] < theirs[i] for i in common]))
        out[method] = entry
    return out


def intervals(records: list[dict], methods: list[str], resamples: int) -> list:
    """Bootstrap intervals over images of every table row, and paired differences from transformer_attribution."""
    from relevancy.evaluation.statistics import table_intervals

    return table_intervals(records, methods, ["segmentation", "perturbation", "specificity"], resamples=resamples)


def accuracy_on(records: list[dict], test: str) -> float:
    seen = {r["id"]: r["predicted"] == r["label"] for r in records if r["test"] == test}
    return float(np.mean(list(seen.values()))) if seen else math.nan


def _threads(count: int) -> str:
    return "one thread" if count == 1 else f"{count} threads"


def training_note(metrics: dict) -> str:
    """How a model was trained, from its metrics.json (empty for the frozen DINOv2 with a linear head)."""
    if metrics.get("train_blocks"):
        return (f"Fine-tuned: {metrics['epochs']} epochs on {metrics['train_images']} standard scenes (lr {metrics['lr']:g}, "
                f"head {metrics['head_lr']:g}, no augmentation), selected on {metrics['val_images']} held-out training scenes "
                f"(best epoch {metrics['best_epoch']}, val {100 * metrics['best_val_accuracy']:.1f} %), "
                f"{metrics['train_minutes']:.0f} min on {_threads(metrics.get('threads', 1))}. ")
    if "easy_epochs" not in metrics:
        return ""
    curriculum = (f"{metrics['easy_epochs']} epochs on {metrics['easy_images']} easy-variant scenes (larger items, milder clutter), then "
                  if metrics["easy_epochs"] else "")
    return (f"Trained from scratch (width {metrics['config']['width']}, depth {metrics['config']['depth']}): {curriculum}"
            f"{metrics['epochs']} epochs on {metrics['train_images']} standard scenes, selected on {metrics['val_images']} "
            f"(best epoch {metrics['best_epoch']}), {metrics['train_minutes']:.0f} min on one thread. ")


def fmt(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


#: The models' order in the report.
MODELS = ("vit", "dinov2")


def earlier_sections(results: Path, names: list[str]) -> dict:
    """{model: (Markdown section, JSON entry)} of the models an earlier report holds and this run does
    not evaluate, so that re-running one model keeps the other's results (marked as carried over)."""
    report, summary = results / "image_evaluation.md", results / "image_evaluation.json"
    if not (report.is_file() and summary.is_file()):
        return {}
    earlier = json.loads(summary.read_text())
    lines = report.read_text().splitlines()
    kept = {}
    for name in [n for n in MODELS if n not in names and n in earlier.get("models", {})]:
        start = next((i for i, line in enumerate(lines) if line.startswith(f"## {name}:")), None)
        if start is None:
            continue
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        entry = earlier["models"][name]
        entry.setdefault("command", earlier["command"])
        section = [line for line in lines[start:end] if not line.startswith("*Carried over")]
        note = f"*Carried over unchanged from the earlier run `{entry['command']}`; this run did not evaluate this model.*"
        kept[name] = ("\n".join([section[0], "", note, *section[1:]]).rstrip() + "\n", entry)
    return kept


def markdown(runs: dict, methods: list[str], args, samples: list[str], kept: dict) -> str:
    lines = ["# Image evaluation: Fashion-MNIST scenes", "",
             f"Command: `python benchmarks/image_evaluation.py {' '.join(args.argv)}` ({_threads(args.threads)}; models: {', '.join(runs)}). Data: "
             "`scripts/make_fashion_scenes.py` (standard variant: 112 px scenes, Fashion-MNIST test items on clutter; mask = the item's "
             "silhouette). Each model reads the scenes at its own input size: the evaluation resizes image (bilinear) and mask "
             "(nearest) to it and upsamples the patch-grid maps to it, so a model's segmentation is scored at its input size. Maps explain the predicted class; perturbation removes pixels (set to 0 in [0, 1] space), "
             "AUC over 0-90 % as the paper (accuracy against the true label, and the explained class's probability); "
             "specificity = share of positive map mass on the explained class's item out of both items, explaining each "
             "of the two classes in turn (0.5 = no preference). Default method options (transformer_attribution start_layer 0, "
             "integrated_gradients 20 steps). Best value per column in bold.", ""]
    for name in [n for n in MODELS if n in runs or n in kept]:
        if name in kept:
            lines += [kept[name][0]]
            continue
        run = runs[name]
        values = table(run, methods)
        m = run["metrics"]
        grid = run["input"] // run["patch"]
        lines += [f"## {name}: {m['model']}", "", f"Input {run['input']} px, {run['patch']} px patches ({grid}x{grid} grid). " + training_note(m) +
                  f"Test accuracy {100 * m['test_accuracy']:.1f} % on {m['test_images']} test scenes "
                  f"(on the {args.counts[name][0]} evaluated: {100 * accuracy_on(run['records'], 'segmentation'):.1f} %). "
                  f"Images: {args.counts[name][0]} single-item, {args.counts[name][1]} two-item. "
                  f"Wall time: {run['seconds']['test'] / 60:.1f} + {run['seconds']['test_pairs'] / 60:.1f} min. "
                  f"The item covers {100 * run['mask_coverage']:.1f} % of the pixels on average: the mAP of a map that "
                  "carries no information. A class-agnostic map (rollout, raw attention) has specificity 0.5 by construction.", ""]
        if m["test_accuracy"] < 2 / run["classes"]:
            lines += [f"**This model is near chance ({run['classes']} classes): its maps cannot follow a decision it does not make. "
                      "Read its rows as a control, not as evidence for or against any method.**", ""]
        header = "| method | " + " | ".join(c for c, *_ in COLUMNS) + " |"
        lines += [header, "|---|" + "---:|" * len(COLUMNS)]
        best = {c: (max if up else min)(values[mm][c] for mm in methods) for c, _, _, up in COLUMNS}
        for method in methods:
            cells = [f"**{fmt(values[method][c])}**" if values[method][c] == best[c] else fmt(values[method][c]) for c, *_ in COLUMNS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        stats = run["per_image"]
        lines += ["", "Per image (mean ± standard error; 'TA wins' = share of images where transformer_attribution does better, "
                  "paired; ties count as not winning; pos./neg. AUC prob = the explained class's probability AUC of each image):", "",
                  "| method | AP (%) ↑ | TA wins | specificity share ↑ | TA wins | pos. AUC prob ↓ | TA wins | neg. AUC prob ↑ | TA wins |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for method in methods:
            cells = []
            for quantity, *_ in PER_IMAGE:
                value = stats[method][quantity]
                spread = f"{value['mean']:.3f} ± {value['se']:.3f}" if quantity == "share" else f"{fmt(value['mean'])} ± {fmt(value['se'])}"
                cells += [spread, fmt(value.get("ta_wins"))]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        from relevancy.evaluation.statistics import intervals_markdown

        lines += ["", f"95 % confidence intervals (bootstrap over images, {args.resamples} resamples; each row recomputed on the "
                  "resampled images as the table computes it, the same draws for every method) and paired differences:", "",
                  intervals_markdown(run["intervals"], methods, "transformer_attribution", digits=3)]
        lines += ["", "Where transformer_attribution does **not** beat a baseline (equal or worse; point estimates — "
                  "see the paired intervals above for which differences are significant):", ""]
        ta = values.get("transformer_attribution")
        if ta:
            for column, _, _, up in COLUMNS:
                beaten_by = [mm for mm in methods if mm != "transformer_attribution" and
                             (values[mm][column] >= ta[column] if up else values[mm][column] <= ta[column])]
                lines.append(f"- {column}: {', '.join(beaten_by) if beaten_by else 'none — it beats every baseline'}")
        lines += ["", f"![perturbation curves](image_evaluation_perturbation_{name}.png)", f"![maps](image_evaluation_maps_{name}.png)", ""]
    ours = table(runs["dinov2"], methods) if "dinov2" in runs else None
    lines += ["## The paper's figures beside ours (paper: ImageNet, ViT-B; ours: DINOv2 on the scenes; another data set and model)", "",
              "Paper: Chefer et al. 2021, segmentation on ImageNet-Segmentation and perturbation of the predicted class "
              "(accuracy AUC, %) on the ImageNet validation set" + ("; ours: the DINOv2 table above." if ours else "."), ""]
    pairs = [("seg. pixel acc", "pixel_accuracy", "pixel acc (%) ↑"), ("seg. mAP", "map", "mAP (%) ↑"), ("seg. mIoU", "miou", "mIoU (%) ↑"),
             ("pert. neg AUC", 0, "neg. AUC acc ↑"), ("pert. pos AUC", 1, "pos. AUC acc ↓")]
    lines += ["| method | " + " | ".join(f"{title} paper | ours" if ours else title for title, *_ in pairs) + " |",
              "|---|" + "---:|" * (len(pairs) * (2 if ours else 1))]
    for method in methods:
        seg, pert = PAPER["segmentation"].get(method, {}), PAPER["perturbation"].get(method)
        if not (seg or pert or ours):
            continue
        cells = []
        for _, key, column in pairs:
            cells.append(fmt(seg.get(key)) if isinstance(key, str) else (fmt(pert[key]) if pert else ""))
            if ours:
                cells.append(fmt(ours[method][column]))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if samples:
        lines += ["", "## DINOv2 on natural images (scikit-image samples)", "",
                  f"The DINOv2 model with its Fashion-MNIST head, fed {args.samples_size} px crops (its trained weights; the "
                  "pretrained position table interpolated to the finer grid as the backbone does). Panels: image | transformer_attribution for the "
                  "predicted Fashion-MNIST class | attention rollout | last-layer attention (both class-agnostic). The head knows "
                  "only clothing classes, so the class map shows what in a natural image pushes towards that clothing class, "
                  "not an object the class names; the rollout and raw-attention views show where the backbone looks regardless "
                  "of any class.", ""]
        lines += [f"- {title}: ![{Path(path).stem}]({Path(path).name})" for path, title in samples]
    return "\n".join(lines) + "\n"


# -- plots -----------------------------------------------------------------------------------------
def figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_perturbation(name: str, run: dict, methods: list[str], path: Path) -> None:
    curves = run["results"]["test"].curves["perturbation"]
    fig = figure(9, 3.4)
    for index, direction in enumerate(("positive", "negative")):
        axes = fig.add_subplot(1, 2, index + 1)
        for colour, method in enumerate(methods):
            style = "-" if method == "transformer_attribution" else "--"
            axes.plot(curves[method]["fractions"], curves[method][f"{direction}_accuracy"], style, color=f"C{colour}", label=method,
                      linewidth=2.5 if method == "transformer_attribution" else 1)
        axes.set(title=f"{name}: {direction} ({'lower' if direction == 'positive' else 'higher'} is better)",
                 xlabel="fraction of pixels removed", ylabel="accuracy")
    axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.subplots_adjust(wspace=0.3)
    fig.savefig(path, dpi=80, bbox_inches="tight")


def plot_maps(model_folder: Path, data: Path, methods: list[str], path: Path, count: int = 3) -> None:
    """A few test scenes: the image, its mask, and every method's map for the predicted class."""
    from relevancy import attribute
    from relevancy.adapters.loading import load
    from relevancy.adapters.structure import describe
    from relevancy.evaluation import load_image_folder
    from relevancy.evaluation.perturbation import normaliser, pixel_maps
    from relevancy.viz.colors import colour, normalise

    model, processor = load(str(model_folder))
    structure = describe(model)
    items = load_image_folder(data / "test").items[:count]
    loaded = [item.load(structure.image_size) for item in items]
    images = torch.stack([torch.from_numpy(image).permute(2, 0, 1) for image, _, _ in loaded])
    inputs = normaliser(processor.image_mean, processor.image_std)(images)
    fig = figure(1.2 * (len(methods) + 2), 1.35 * count)
    maps = {m: pixel_maps(attribute(model, inputs, m), structure).numpy() for m in methods}
    for row, (image, mask, _) in enumerate(loaded):
        panels = [("image", (image * 255).astype(np.uint8)), ("mask", np.repeat(mask[..., None] * 255, 3, -1).astype(np.uint8))]
        panels += [(m, colour(normalise(maps[m][row], False), False)) for m in methods]  # the map itself: clutter hides overlays
        for column, (title, picture) in enumerate(panels):
            axes = fig.add_subplot(count, len(panels), row * len(panels) + column + 1)
            axes.imshow(picture)
            axes.set_axis_off()
            if row == 0:
                axes.set_title(title.replace("_", "\n", 1), fontsize=6)
    fig.savefig(path, dpi=70, bbox_inches="tight")


def natural_samples(model_folder: Path, size: int, out: Path) -> list[str]:
    """DINOv2 on cat, coffee, astronaut: the predicted Fashion-MNIST class's map (transformer_attribution)
    and two class-agnostic views (attention rollout, last-layer attention), at ``size`` px."""
    from skimage import data as samples
    from transformers import AutoModel

    from relevancy import attribute
    from relevancy.adapters.loading import load
    from relevancy.adapters.structure import describe
    from relevancy.evaluation.perturbation import normaliser, pixel_maps
    from relevancy.viz import overlay, save_png

    import importlib.util

    spec = importlib.util.spec_from_file_location("train_image_models", HERE.parent / "scripts" / "train_image_models.py")
    training = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(training)

    trained, processor = load(str(model_folder))
    backbone = AutoModel.from_pretrained(training.DINOV2).eval()
    # the trained weights (fine-tuned blocks included), but the pretrained position table, interpolated
    # for the finer grid as the backbone does: the trained model stores it already shrunk to its 8x8 grid
    weights = {k: v for k, v in trained.dinov2.state_dict().items() if k != "embeddings.position_embeddings"}
    backbone.load_state_dict({**backbone.state_dict(), **weights})
    classes = [trained.config.id2label[i] for i in range(trained.config.num_labels)]
    model = training.classifier_model(backbone, size, classes)
    model.classifier.load_state_dict(trained.classifier.state_dict())
    structure = describe(model)
    written = []
    for name in ("chelsea", "coffee", "astronaut"):
        from PIL import Image

        picture = Image.fromarray(getattr(samples, name)())
        side = min(picture.size)
        left, top = (picture.size[0] - side) // 2, (picture.size[1] - side) // 2
        image = np.asarray(picture.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255
        inputs = normaliser(processor.image_mean, processor.image_std)(torch.from_numpy(image).permute(2, 0, 1)[None])
        panels = [image]
        titles = []
        for method in ("transformer_attribution", "rollout", "raw_attention"):
            attribution = attribute(model, inputs, method)
            panels.append(overlay(image, pixel_maps(attribution, structure)[0].numpy(), signed=False) / 255.0)
            if method == "transformer_attribution":
                probabilities = attribution.logits.softmax(-1)[0]
                predicted = int(probabilities.argmax())
                titles.append(f"{classes[predicted]} p={float(probabilities[predicted]):.2f}")
        strip = (np.concatenate(panels, axis=1) * 255).round().astype(np.uint8)
        path = out / f"dinov2_samples_{name}.png"
        save_png(path, strip)
        written.append((str(path), f"{name}: predicted {titles[0]}"))
        print(f"{name}: predicted {titles[0]} -> {path} (image | transformer_attribution | rollout | raw_attention)")
    return written


def main(argv=None) -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=CACHE / "fashion-scenes")
    parser.add_argument("--models-dir", type=Path, default=CACHE / "fashion-models")
    parser.add_argument("--models", default="vit,dinov2")
    parser.add_argument("--methods", default=None, help="comma-separated (default: every method of the engine)")
    parser.add_argument("--vit-images", type=int, default=200)
    parser.add_argument("--vit-pairs", type=int, default=100)
    parser.add_argument("--dinov2-images", type=int, default=60)
    parser.add_argument("--dinov2-pairs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--work", type=Path, default=CACHE / "image-evaluation", help="resumable item records")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--samples-size", type=int, default=224, help="input size for the natural-image maps (0: skip them)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the confidence intervals")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)

    import relevancy

    methods = args.methods.split(",") if args.methods else relevancy.available_methods()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    args.counts = {"vit": (args.vit_images, args.vit_pairs), "dinov2": (args.dinov2_images, args.dinov2_pairs)}
    args.results.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name in names:
        folder = args.models_dir / name
        if not (folder / "metrics.json").is_file():
            raise FileNotFoundError(f"no trained model at {folder}: run scripts/train_image_models.py --models {name}")
        runs[name] = run_model(name, folder, args.data, methods, *args.counts[name], args.work, args.batch_size)
        runs[name]["per_image"] = per_image(runs[name]["records"], methods)
        runs[name]["intervals"] = intervals(runs[name]["records"], methods, args.resamples)
        plot_perturbation(name, runs[name], methods, args.results / f"image_evaluation_perturbation_{name}.png")
        plot_maps(folder, args.data, methods, args.results / f"image_evaluation_maps_{name}.png")
    samples = natural_samples(args.models_dir / "dinov2", args.samples_size, args.results) if args.samples_size and "dinov2" in names else []
    kept = earlier_sections(args.results, names)
    (args.results / "image_evaluation.md").write_text(markdown(runs, methods, args, samples, kept), encoding="utf-8")
    from relevancy.evaluation.statistics import intervals_json

    summary = {
        "command": "python benchmarks/image_evaluation.py " + " ".join(args.argv),
        "methods": methods,
        "models": {
            name: {
                "command": "python benchmarks/image_evaluation.py " + " ".join(args.argv),
                "training": run["metrics"], "counts": {"images": args.counts[name][0], "pairs": args.counts[name][1]},
                "accuracy_on_evaluated": accuracy_on(run["records"], "segmentation"), "seconds": run["seconds"],
                "mask_coverage": run["mask_coverage"],
                "table": table(run, methods), "per_image": run["per_image"], "intervals": intervals_json(run["intervals"]),
                "results": {split: result.to_json() for split, result in run["results"].items()},
            }
            for name, run in runs.items()
        } | {name: entry for name, (_, entry) in kept.items()},
        "paper": PAPER,
        "samples": {Path(path).name: title for path, title in samples},
    }
    from relevancy.evaluation.runner import _jsonable

    (args.results / "image_evaluation.json").write_text(json.dumps(_jsonable(summary), indent=1), encoding="utf-8")
    print((args.results / "image_evaluation.md").read_text())


if __name__ == "__main__":
    main()

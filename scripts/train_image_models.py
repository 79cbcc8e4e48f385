"""Train the two image models of the Fashion-MNIST scenes benchmark (scripts/make_fashion_scenes.py).

  vit     a small HF ``ViTForImageClassification`` trained from scratch on downscaled scenes (default
          64 px, 8 px patches = 8x8 grid), optionally first on the easy scene variant (a curriculum:
          ``make_fashion_scenes.py --variant easy``), then on the standard scenes;
  dinov2  the real pretrained DINOv2-S/14 (../shared/models/dinov2-small), frozen, with a linear head
          trained on its features, saved as an HF ``Dinov2ForImageClassification`` (its classifier reads
          the CLS token concatenated with the mean patch token, which the engine's readout handles).

Both are selected on a held-out tenth of train/ and scored on test/. Outputs (model, image processor,
metrics.json) go to ~/.cache/relevancy/fashion-models/<name>/.

    python scripts/train_image_models.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path.home() / ".cache" / "relevancy" / "fashion-scenes"
DEFAULT_EASY = Path.home() / ".cache" / "relevancy" / "fashion-scenes-easy"
DEFAULT_OUT = Path.home() / ".cache" / "relevancy" / "fashion-models"
DINOV2 = ROOT.parent / "shared" / "models" / "dinov2-small"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def load_split(folder: Path, classes: list[str], limit: int | None = None, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, H, W) uint8, labels (N,)) of an image folder, through the library's loader;
    resized to ``size`` px the way the evaluation resizes (PIL bilinear), when given."""
    from PIL import Image

    from relevancy.evaluation import load_image_folder

    def read(path):
        image = Image.open(path).convert("RGB")
        return np.asarray(image if size is None or image.size == (size, size) else image.resize((size, size), Image.BILINEAR))

    items = load_image_folder(folder).items[:limit]
    images = np.stack([read(item.image_path) for item in tqdm(items, desc=f"read {folder.name}", unit="image")])
    labels = torch.tensor([classes.index(item.label) for item in items])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    mean_t, std_t = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t


def split_validation(images, labels, fraction: float = 0.1):
    cut = len(labels) - int(len(labels) * fraction)
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


@torch.no_grad()
def accuracy(model, images, labels, mean, std, batch_size: int = 64) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(pixel_values=normalise(images[start : start + batch_size], mean, std)).logits
        correct += int((logits.argmax(-1) == labels[start : start + batch_size]).sum())
    return correct / len(labels)


def save(model, mean, std, size: int, folder: Path, metrics: dict, quiet: bool = False) -> None:
    from transformers import ViTImageProcessor

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    # the processor records the model's normalisation, which the evaluation reuses
    ViTImageProcessor(size={"height": size, "width": size}, image_mean=mean, image_std=std).save_pretrained(folder)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    if not quiet:
        print(json.dumps(metrics, indent=2))


# -- the ViT from scratch ------------------------------------------------------------------------
def train_vit(args, classes, train, val, test, easy=None) -> None:
    """AdamW with linear warmup and one cosine decay over all steps; left-right flips. With ``easy``
    (images, labels of the easy variant), the first ``--vit-easy-epochs`` epochs train on it: from
    scratch, the model does not find the small item in full clutter (it stays at chance), but it
    learns on large items on mild clutter and then carries over. Selected on the standard val split."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(args.seed)
    size = train[0].shape[-1]
    config = ViTConfig(
        image_size=size, patch_size=args.vit_patch, hidden_size=args.vit_width, num_hidden_layers=args.vit_depth,
        num_attention_heads=args.vit_heads, intermediate_size=4 * args.vit_width, num_labels=len(classes),
        id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)},
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = ViTForImageClassification(config)
    mean = std = [0.5, 0.5, 0.5]
    stages = ([("easy", easy, args.vit_easy_epochs)] if easy is not None and args.vit_easy_epochs else []) + [("standard", train, args.vit_epochs)]
    total = sum(math.ceil(len(data[1]) / args.batch_size) * epochs for _, data, epochs in stages)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.vit_lr, weight_decay=0.05)
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    generator = torch.Generator().manual_seed(args.seed)
    best, best_state, history, started = -1.0, None, [], time.time()
    epochs = sum(e for *_, e in stages)

    def describe(test_accuracy):
        return {
            "model": "ViTForImageClassification from scratch",
            "config": {"width": args.vit_width, "depth": args.vit_depth, "heads": args.vit_heads, "patch": args.vit_patch, "image": size},
            "train_images": len(train[1]), "easy_images": len(easy[1]) if easy is not None and args.vit_easy_epochs else 0,
            "val_images": len(val[1]), "test_images": len(test[1]), "easy_epochs": args.vit_easy_epochs if easy is not None else 0,
            "epochs": args.vit_epochs, "batch_size": args.batch_size, "lr": args.vit_lr, "seed": args.seed, "threads": args.threads,
            "best_val_accuracy": best, "best_epoch": max(history, key=lambda h: h["val_accuracy"])["epoch"],
            "test_accuracy": test_accuracy, "history": history, "train_minutes": (time.time() - started) / 60,
        }

    for stage, (images, labels), stage_epochs in stages:
        steps_per_epoch = math.ceil(len(labels) / args.batch_size)
        for _ in range(stage_epochs):
            model.train()
            order = torch.randperm(len(labels), generator=generator)
            bar = tqdm(range(steps_per_epoch), desc=f"vit {stage} epoch {len(history) + 1}/{epochs}", unit="step")
            seen = losses = hits = 0
            for step in bar:
                index = order[step * args.batch_size : (step + 1) * args.batch_size]
                batch = normalise(images[index], mean, std)
                flip = torch.rand(len(index), generator=generator) < 0.5  # left-right flips: the only augmentation
                batch[flip] = batch[flip].flip(-1)
                logits = model(pixel_values=batch).logits
                loss = torch.nn.functional.cross_entropy(logits, labels[index], label_smoothing=0.1)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                seen, losses, hits = seen + len(index), losses + loss.item() * len(index), hits + int((logits.argmax(-1) == labels[index]).sum())
                bar.set_postfix(loss=f"{losses / seen:.3f}", acc=f"{hits / seen:.3f}")
            val_accuracy = accuracy(model, *val, mean, std)
            history.append({"epoch": len(history) + 1, "stage": stage, "train_loss": losses / seen, "train_accuracy": hits / seen,
                            "val_accuracy": val_accuracy, "minutes": (time.time() - started) / 60})
            print(history[-1], flush=True)
            if val_accuracy > best:
                best, best_state = val_accuracy, {k: v.clone() for k, v in model.state_dict().items()}
                # an interrupted run still leaves its best model so far (test accuracy not yet measured)
                save(model, mean, std, size, args.out / "vit", {**describe(None), "complete": False}, quiet=True)
    model.load_state_dict(best_state)
    model.eval()
    save(model, mean, std, size, args.out / "vit", {**describe(accuracy(model, *test, mean, std)), "complete": True})


# -- DINOv2 with a trained head --------------------------------------------------------------------
@torch.no_grad()
def dinov2_features(backbone, images, batch_size: int, desc: str) -> torch.Tensor:
    """(N, 768): the classifier input of Dinov2ForImageClassification, [CLS, mean of patch tokens]."""
    features = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch"):
        hidden = backbone(pixel_values=normalise(images[start : start + batch_size], IMAGENET_MEAN, IMAGENET_STD)).last_hidden_state
        features.append(torch.cat([hidden[:, 0], hidden[:, 1:].mean(1)], dim=-1))
    return torch.cat(features)


def classifier_model(backbone, size: int, classes: list[str]):
    """A Dinov2ForImageClassification for ``size`` px inputs holding the pretrained backbone. The
    position table is stored already interpolated to the input's grid (exactly what the backbone
    computes on the fly for that size), so the config's image_size is the size the model reads."""
    from transformers import Dinov2Config, Dinov2ForImageClassification

    config = Dinov2Config(**{**backbone.config.to_dict(), "image_size": size, "num_labels": len(classes),
                             "id2label": dict(enumerate(classes)), "label2id": {c: i for i, c in enumerate(classes)}})
    config.architectures = ["Dinov2ForImageClassification"]
    model = Dinov2ForImageClassification(config)
    state = backbone.state_dict()
    grid = size // backbone.config.patch_size
    with torch.no_grad():
        placeholder = torch.zeros(1, grid * grid + 1, backbone.config.hidden_size)
        state["embeddings.position_embeddings"] = backbone.embeddings.interpolate_pos_encoding(placeholder, size, size)
    model.dinov2.load_state_dict(state)
    return model.eval()


def train_dinov2(args, classes, train, val, test) -> None:
    from transformers import AutoModel

    if not args.dinov2.is_dir():
        raise FileNotFoundError(f"DINOv2 is not at {args.dinov2}: pass --dinov2 DIR (a transformers Dinov2Model folder)")
    if args.dinov2_train_blocks:
        return finetune_dinov2(args, classes, train, val, test)
    torch.manual_seed(args.seed)
    started = time.time()
    backbone = AutoModel.from_pretrained(args.dinov2).eval()
    size = train[0].shape[-1]
    cache = args.out / "dinov2-features.pt"
    key = {"train": len(train[1]), "val": len(val[1]), "test": len(test[1]), "size": size, "data": str(args.data)}
    if cache.is_file() and torch.load(cache)["key"] == key:
        features = torch.load(cache)["features"]
    else:
        features = {name: dinov2_features(backbone, split[0], args.batch_size, f"dinov2 features {name}") for name, split in
                    (("train", train), ("val", val), ("test", test))}
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "features": features}, cache)
    feature_minutes = (time.time() - started) / 60
    mean, std = features["train"].mean(0), features["train"].std(0) + 1e-6
    # a linear head on standardised features; the standardisation is folded into the weights afterwards
    head = torch.nn.Linear(features["train"].shape[1], len(classes))
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.head_lr, weight_decay=args.head_weight_decay)
    x, y = (features["train"] - mean) / std, train[1]
    generator = torch.Generator().manual_seed(args.seed)
    best, best_state, history = -1.0, None, []
    for epoch in tqdm(range(args.head_epochs), desc="dinov2 head", unit="epoch"):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 256):
            index = order[start : start + 256]
            loss = torch.nn.functional.cross_entropy(head(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_accuracy = float((head((features["val"] - mean) / std).argmax(-1) == val[1]).float().mean())
        history.append({"epoch": epoch + 1, "val_accuracy": val_accuracy})
        if val_accuracy > best:
            best, best_state = val_accuracy, {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    model = classifier_model(backbone, size, classes)
    with torch.no_grad():
        model.classifier.weight.copy_(head.weight / std)
        model.classifier.bias.copy_(head.bias - (head.weight / std) @ mean)
        # the saved model must compute what the head was selected on
        check = model(pixel_values=normalise(test[0][:8], IMAGENET_MEAN, IMAGENET_STD)).logits
        expected = head((features["test"][:8] - mean) / std)
        if not torch.allclose(check, expected, atol=1e-3):
            raise RuntimeError(f"the assembled model differs from the trained head by {(check - expected).abs().max():.2e}")
    metrics = {
        "model": "DINOv2-S/14 (frozen, ../shared/models/dinov2-small) + linear head on [CLS, mean patch]",
        "image": size, "grid": size // 14, "train_images": len(train[1]), "val_images": len(val[1]), "test_images": len(test[1]),
        "head_epochs": args.head_epochs, "head_lr": args.head_lr, "head_weight_decay": args.head_weight_decay, "seed": args.seed,
        "threads": args.threads, "best_val_accuracy": best, "best_epoch": max(history, key=lambda h: h["val_accuracy"])["epoch"],
        "test_accuracy": float((head((features["test"] - mean) / std).argmax(-1) == test[1]).float().mean()),
        "feature_minutes": feature_minutes, "train_minutes": (time.time() - started) / 60,
    }
    save(model, IMAGENET_MEAN, IMAGENET_STD, size, args.out / "dinov2", metrics)



# -- DINOv2 with its last blocks fine-tuned ---------------------------------------------------------
def upper_logits(model, hidden: torch.Tensor, first: int) -> torch.Tensor:
    """Dinov2ForImageClassification's forward from the input of block ``first`` on (the same
    modules in the same order, so the saved model computes exactly this)."""
    for layer in model.dinov2.encoder.layer[first:]:
        hidden = layer(hidden)
    sequence = model.dinov2.layernorm(hidden)
    return model.classifier(torch.cat([sequence[:, 0], sequence[:, 1:].mean(1)], dim=-1))


@torch.no_grad()
def lower_hidden(model, images: torch.Tensor, first: int, batch_size: int, desc: str) -> torch.Tensor:
    """(N, tokens, width): the input of block ``first``, computed once because the blocks below it stay frozen."""
    outputs = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch"):
        hidden = model.dinov2.embeddings(normalise(images[start : start + batch_size], IMAGENET_MEAN, IMAGENET_STD))
        for layer in model.dinov2.encoder.layer[:first]:
            hidden = layer(hidden)
        outputs.append(hidden)
    return torch.cat(outputs)


@torch.no_grad()
def cached_accuracy(model, hidden, labels, first: int, batch_size: int = 128) -> float:
    model.eval()
    hits = sum(int((upper_logits(model, hidden[s : s + batch_size], first).argmax(-1) == labels[s : s + batch_size]).sum())
               for s in range(0, len(labels), batch_size))
    return hits / len(labels)


def finetune_dinov2(args, classes, train, val, test) -> None:
    """The last ``--dinov2-train-blocks`` blocks, the final LayerNorm and a fresh head trained (AdamW,
    warmup + cosine, label smoothing); the frozen lower blocks' outputs are cached once, so an epoch
    costs only the trained blocks. No augmentation: a flipped image would need its own cache. With
    ``--bf16`` the training steps run under bfloat16 autocast (about 2x faster on CPUs with AVX-512
    BF16); the weights stay float32, and selection and test accuracy use the float32 model.
    Selected on the held-out tenth of train; a checkpoint after every epoch makes the run resumable."""
    from transformers import AutoModel, Dinov2ForImageClassification

    torch.manual_seed(args.seed)
    started = time.time()
    size = train[0].shape[-1]
    model = classifier_model(AutoModel.from_pretrained(args.dinov2), size, classes)
    depth = len(model.dinov2.encoder.layer)
    if not 0 < args.dinov2_train_blocks <= depth:
        raise ValueError(f"--dinov2-train-blocks must be between 1 and {depth}, got {args.dinov2_train_blocks}")
    first = depth - args.dinov2_train_blocks
    work = args.out / f"dinov2-finetune-{args.dinov2_train_blocks}"
    work.mkdir(parents=True, exist_ok=True)
    key = {"train": len(train[1]), "val": len(val[1]), "test": len(test[1]), "size": size, "data": str(args.data), "first": first}
    cache = work / "lower-hidden.pt"
    if cache.is_file() and torch.load(cache)["key"] == key:
        hidden = torch.load(cache)["hidden"]
    else:
        hidden = {name: lower_hidden(model, split[0], first, args.batch_size, f"blocks 1-{first} {name}")
                  for name, split in (("train", train), ("val", val), ("test", test))}
        torch.save({"key": key, "hidden": hidden}, cache)
    cache_minutes = (time.time() - started) / 60

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trained = [*model.dinov2.encoder.layer[first:], model.dinov2.layernorm, model.classifier]
    for module in trained:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    head = list(model.classifier.parameters())
    body = [p for module in trained[:-1] for p in module.parameters()]
    optimizer = torch.optim.AdamW([{"params": body, "lr": args.dinov2_lr}, {"params": head, "lr": args.head_lr}], weight_decay=0.05)
    steps_per_epoch = math.ceil(len(train[1]) / args.batch_size)
    total = steps_per_epoch * args.dinov2_epochs
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    generator = torch.Generator().manual_seed(args.seed)
    best, best_state, history, epoch = -1.0, None, [], 0
    checkpoint_file = work / "checkpoint.pt"
    settings = {**key, "epochs": args.dinov2_epochs, "lr": args.dinov2_lr, "head_lr": args.head_lr, "batch_size": args.batch_size, "bf16": args.bf16}
    if checkpoint_file.is_file():
        checkpoint = torch.load(checkpoint_file, weights_only=False)
        if checkpoint["key"] != settings:
            raise ValueError(f"{checkpoint_file} is from another configuration: delete it to start over")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["schedule"])
        generator.set_state(checkpoint["generator"])
        best, best_state, history, epoch = checkpoint["best"], checkpoint["best_state"], checkpoint["history"], checkpoint["epoch"]
        print(f"resumed after epoch {epoch}", flush=True)
    for epoch in range(epoch, args.dinov2_epochs):
        epoch_started = time.time()
        for module in trained:
            module.train()
        order = torch.randperm(len(train[1]), generator=generator)
        bar = tqdm(range(steps_per_epoch), desc=f"dinov2 blocks {first + 1}-{depth} epoch {epoch + 1}/{args.dinov2_epochs}", unit="step")
        seen = losses = hits = 0
        for step in bar:
            index = order[step * args.batch_size : (step + 1) * args.batch_size]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = upper_logits(model, hidden["train"][index], first).float()
            loss = torch.nn.functional.cross_entropy(logits, train[1][index], label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(body + head, 1.0)
            optimizer.step()
            schedule.step()
            seen, losses, hits = seen + len(index), losses + loss.item() * len(index), hits + int((logits.argmax(-1) == train[1][index]).sum())
            bar.set_postfix(loss=f"{losses / seen:.3f}", acc=f"{hits / seen:.3f}")
        val_accuracy = cached_accuracy(model, hidden["val"], val[1], first)
        history.append({"epoch": epoch + 1, "train_loss": losses / seen, "train_accuracy": hits / seen, "val_accuracy": val_accuracy,
                        "epoch_minutes": (time.time() - epoch_started) / 60})
        print(history[-1], flush=True)
        if val_accuracy > best:
            best, best_state = val_accuracy, {k: v.clone() for k, v in model.state_dict().items()}
            # an interrupted run still leaves its best model so far (test accuracy not yet measured)
            save(model, IMAGENET_MEAN, IMAGENET_STD, size, args.out / "dinov2",
                 {"complete": False, "train_blocks": args.dinov2_train_blocks, "best_val_accuracy": best, "history": history}, quiet=True)
        torch.save({"key": settings,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "generator": generator.get_state(), "best": best, "best_state": best_state, "history": history,
                    "epoch": epoch + 1}, checkpoint_file)
    model.load_state_dict(best_state)
    model.requires_grad_(False)
    model.eval()
    folder = args.out / "dinov2"
    metrics = {
        "model": f"DINOv2-S/14 (../shared/models/dinov2-small), blocks {first + 1}-{depth} + final LayerNorm + a fresh head "
                 f"[CLS, mean patch] fine-tuned, blocks 1-{first} frozen",
        "image": size, "grid": size // 14, "train_images": len(train[1]), "val_images": len(val[1]), "test_images": len(test[1]),
        "train_blocks": args.dinov2_train_blocks, "epochs": args.dinov2_epochs, "batch_size": args.batch_size,
        "lr": args.dinov2_lr, "head_lr": args.head_lr, "weight_decay": 0.05, "label_smoothing": 0.1, "augmentation": None,
        "bf16_training": args.bf16,
        "seed": args.seed, "threads": args.threads, "best_val_accuracy": best,
        "best_epoch": max(history, key=lambda h: h["val_accuracy"])["epoch"],
        "test_accuracy": cached_accuracy(model, hidden["test"], test[1], first), "history": history,
        "cache_minutes": cache_minutes, "train_minutes": (time.time() - started) / 60,
    }
    save(model, IMAGENET_MEAN, IMAGENET_STD, size, folder, metrics)
    # the saved model, loaded the plain way, must compute what was selected and scored
    reloaded = Dinov2ForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        check = reloaded(pixel_values=normalise(test[0][:16], IMAGENET_MEAN, IMAGENET_STD)).logits
        expected = upper_logits(model, hidden["test"][:16], first)
    if not torch.allclose(check, expected, atol=1e-4):
        raise RuntimeError(f"the saved model differs from the trained one by {(check - expected).abs().max():.2e}")

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="output of make_fashion_scenes.py")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--models", default="vit,dinov2", help="comma-separated: vit, dinov2")
    parser.add_argument("--dinov2", type=Path, default=DINOV2, help="the pretrained Dinov2Model folder")
    parser.add_argument("--train-limit", type=int, default=None, help="use the first N training images (before the validation cut)")
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--dinov2-train-limit", type=int, default=None, help="fewer training images for DINOv2's feature pass")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--vit-size", type=int, default=64, help="the ViT's input side: scenes are downscaled to it (bilinear, as the evaluation does)")
    parser.add_argument("--vit-patch", type=int, default=8)
    parser.add_argument("--vit-width", type=int, default=128)
    parser.add_argument("--vit-depth", type=int, default=4)
    parser.add_argument("--vit-heads", type=int, default=4)
    parser.add_argument("--vit-epochs", type=int, default=10, help="epochs on the standard scenes")
    parser.add_argument("--vit-lr", type=float, default=1e-3)
    parser.add_argument("--vit-easy-data", type=Path, default=DEFAULT_EASY, help="make_fashion_scenes.py --variant easy output (curriculum)")
    parser.add_argument("--vit-easy-epochs", type=int, default=0, help="epochs on the easy scenes first (0: no curriculum)")
    parser.add_argument("--vit-easy-limit", type=int, default=None, help="use the first N easy training images")
    parser.add_argument("--head-epochs", type=int, default=100)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--head-weight-decay", type=float, default=1e-2)
    parser.add_argument("--dinov2-train-blocks", type=int, default=0,
                        help="fine-tune DINOv2's last K blocks, final LayerNorm and head (0: frozen backbone, linear head)")
    parser.add_argument("--dinov2-epochs", type=int, default=3, help="epochs of the fine-tuning")
    parser.add_argument("--dinov2-lr", type=float, default=1e-4, help="learning rate of the fine-tuned blocks (the head uses --head-lr)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the fine-tuning steps (weights stay float32)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    classes = json.loads((args.data / "meta.json").read_text())["classes"]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in models:
        if name not in ("vit", "dinov2"):
            raise ValueError(f"unknown model {name!r}: choose vit and/or dinov2")
    if "vit" in models:
        easy = None
        if args.vit_easy_epochs:
            if not (args.vit_easy_data / "meta.json").is_file():
                raise FileNotFoundError(f"no easy scenes at {args.vit_easy_data}: run scripts/make_fashion_scenes.py --variant easy "
                                        f"--out {args.vit_easy_data}, or pass --vit-easy-epochs 0")
            easy = load_split(args.vit_easy_data / "train", classes, args.vit_easy_limit, args.vit_size)
        images, labels = load_split(args.data / "train", classes, args.train_limit, args.vit_size)
        test = load_split(args.data / "test", classes, args.test_limit, args.vit_size)
        train_vit(args, classes, *split_validation(images, labels), test, easy)
    if "dinov2" in models:
        images, labels = load_split(args.data / "train", classes, args.dinov2_train_limit or args.train_limit)
        test = load_split(args.data / "test", classes, args.test_limit)
        train_dinov2(args, classes, *split_validation(images, labels), test)


if __name__ == "__main__":
    main()

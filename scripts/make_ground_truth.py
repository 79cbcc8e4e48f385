"""Ground-truth tasks (CLEVR-XAI spirit): the evidence for each label is known by construction, and
two tiny Transformers trained from scratch on them (seeded, CPU, one thread, a few minutes each).

text   Documents of 20-40 distractor words drawn uniformly from 200 made-up words (they carry no
       label information), with 2-3 trigger words of the label's class planted at random positions
       and, in half of the documents, 1 trigger word of another class (the contrast class; a
       minority, so the label is the class with the most triggers). 4 classes, 4 triggers each.
       Model: a 2-layer BERT (width 64) with a word-level tokenizer.
image  56 px scenes on black, a 2x2 grid of 28 px slots: one Fashion-MNIST item of a decisive class
       (trouser, bag, ankle boot) decides the label; 2 distractor items of other classes (t-shirt,
       pullover, coat, shirt), the same for every label, carry no label information. Each item fills a
       random slot at its own 28 px resolution; one slot stays empty.
       Model: a 4-layer ViT (width 128, 7 px patches, 8x8 grid: 4x4 patches per slot), trained on fresh
       scenes every epoch.

Every example is a *spec* (its parts and their roles: evidence, contrast, distractor), rendered
with any subset of the roles, so the ablations (evidence removed, distractors removed) show the
same examples without those parts. Test sets are regenerated from the seeds in ``info.json``.

    python scripts/make_ground_truth.py --task text --threads 1    # ~2 min
    python scripts/make_ground_truth.py --task image --fresh-image --image-epochs 15 --image-width 128 --threads 1   # ~26 min (Fashion-MNIST: apt-get install dataset-fashion-mnist)

Models go to benchmarks/ground_truth_models/<task>/ (small enough to commit; the benchmark,
benchmarks/ground_truth.py, reads them from there).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "benchmarks" / "ground_truth_models"
FASHION = Path("/usr/share/datasets/fashion-mnist")
ROLES = ("evidence", "contrast", "distractor")
#: Seeds of the three splits of each task (train, validation, test): separate streams.
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}

# -- text ----------------------------------------------------------------------------------------
TEXT_CLASSES = ("red", "green", "blue", "gold")
TRIGGERS = {
    "red": ("crimson", "scarlet", "ruby", "cherry"),
    "green": ("emerald", "lime", "olive", "jade"),
    "blue": ("azure", "navy", "cobalt", "sapphire"),
    "gold": ("amber", "honey", "saffron", "brass"),
}
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TEXT_MAX_LENGTH = 64


def distractor_words(count: int = 200) -> list[str]:
    """Made-up consonant-vowel words (no meaning, no class): 'baki', 'bako', …"""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    words = [c1 + v1 + c2 + v2 for c1 in consonants for v1 in vowels for c2 in consonants for v2 in vowels]
    return words[:: len(words) // count][:count]


@dataclass
class Document:
    words: list[str]
    roles: list[str]  # per word: evidence, contrast or distractor
    label: int
    contrast: int | None  # the class of the one contrast trigger, if planted

    def render(self, keep=ROLES) -> tuple[str, list[str]]:
        """The text with only the words of roles in ``keep``, and those words' roles."""
        kept = [(w, r) for w, r in zip(self.words, self.roles) if r in keep]
        return " ".join(w for w, _ in kept), [r for _, r in kept]


def make_documents(count: int, seed: int | list[int]) -> list[Document]:
    rng = np.random.default_rng(seed)
    vocabulary = distractor_words()
    documents = []
    for _ in range(count):
        label = int(rng.integers(len(TEXT_CLASSES)))
        planted = [(str(rng.choice(TRIGGERS[TEXT_CLASSES[label]])), "evidence") for _ in range(int(rng.integers(2, 4)))]
        contrast = None
        if rng.random() < 0.5:
            contrast = int(rng.choice([c for c in range(len(TEXT_CLASSES)) if c != label]))
            planted.append((str(rng.choice(TRIGGERS[TEXT_CLASSES[contrast]])), "contrast"))
        words = [(str(w), "distractor") for w in rng.choice(vocabulary, int(rng.integers(20, 41)))]
        for word in planted:  # each at a uniformly random position among the words so far
            words.insert(int(rng.integers(len(words) + 1)), word)
        documents.append(Document([w for w, _ in words], [r for _, r in words], label, contrast))
    return documents


def text_tokenizer():
    """A word-level tokenizer over the task's vocabulary, with BERT's special tokens and template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocabulary = [*SPECIALS, *(w for c in TEXT_CLASSES for w in TRIGGERS[c]), *distractor_words()]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocabulary)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocabulary.index("[CLS]")), ("[SEP]", vocabulary.index("[SEP]"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=TEXT_MAX_LENGTH,
    )


def text_model(tokenizer, seed: int):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=TEXT_MAX_LENGTH, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        id2label=dict(enumerate(TEXT_CLASSES)), label2id={c: i for i, c in enumerate(TEXT_CLASSES)},
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertForSequenceClassification(config)


def text_inputs(tokenizer, texts: list[str]) -> dict:
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


# -- image ---------------------------------------------------------------------------------------
FASHION_CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
IMAGE_CLASSES = ("trouser", "bag", "ankle_boot")
DISTRACTOR_CLASSES = ("tshirt", "pullover", "coat", "shirt")
IMAGE_SIZE, PATCH, ITEM_SIZE = 56, 7, 28
#: A 2x2 grid of item-sized slots (top, left): every item lies on exactly 4x4 patches, at Fashion-MNIST's own
#: resolution. Free placement (items 18-24 px at any offset) capped the model at 97.65 %: a ViT this small
#: from scratch did not learn to recognise items across every sub-patch offset and scale.
SLOTS = [(top, left) for top in (0, ITEM_SIZE) for left in (0, ITEM_SIZE)]
DISTRACTORS_PER_SCENE = 2


@dataclass
class Scene:
    items: list[dict]  # {pixels (28, 28) uint8, role, top, left, brightness}
    label: int

    def render(self, keep=ROLES) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(image (H, W, 3) uint8, {role: mask (H, W) bool}) with only the items of roles in ``keep``."""
        canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        masks = {role: np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool) for role in ROLES}
        for item in self.items:
            if item["role"] not in keep:
                continue
            pixels = item["pixels"].astype(np.float32) / 255.0
            silhouette = pixels > 0.1
            box = slice(item["top"], item["top"] + ITEM_SIZE), slice(item["left"], item["left"] + ITEM_SIZE)
            canvas[box][silhouette] = pixels[silhouette] * item["brightness"]
            masks[item["role"]][box] |= silhouette
        image = (canvas * 255).round().astype(np.uint8)
        return np.repeat(image[..., None], 3, axis=2), masks


@functools.lru_cache(maxsize=2)  # fresh training scenes every epoch read the same items
def read_fashion(split: str, folder: Path = FASHION) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    paths = folder / f"{prefix}-images-idx3-ubyte.gz", folder / f"{prefix}-labels-idx1-ubyte.gz"
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"{path} is missing: install Fashion-MNIST with `apt-get install -y dataset-fashion-mnist`")
    with gzip.open(paths[0]) as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(paths[1]) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    return images, labels


def make_scenes(count: int, seed: int | list[int], source: str, distractors: int = DISTRACTORS_PER_SCENE) -> list[Scene]:
    """Scenes from Fashion-MNIST's ``source`` split (train items for training and validation, test
    items for the test set), each item in its own random slot of the 2x2 grid."""
    if not 0 <= distractors < len(SLOTS):
        raise ValueError(f"a scene has {len(SLOTS)} slots: distractors must be 0..{len(SLOTS) - 1}, got {distractors}")
    images, labels = read_fashion(source)
    by_class = {name: np.flatnonzero(labels == FASHION_CLASSES.index(name)) for name in (*IMAGE_CLASSES, *DISTRACTOR_CLASSES)}
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(count):
        label = int(rng.integers(len(IMAGE_CLASSES)))
        kinds = [(IMAGE_CLASSES[label], "evidence")] + [
            (str(rng.choice(DISTRACTOR_CLASSES)), "distractor") for _ in range(distractors)
        ]
        slots = rng.permutation(len(SLOTS))[: len(kinds)]
        items = [
            {"pixels": images[rng.choice(by_class[name])], "role": role, "top": SLOTS[slot][0],
             "left": SLOTS[slot][1], "brightness": float(rng.uniform(0.6, 1.0))}
            for (name, role), slot in zip(kinds, slots)
        ]
        scenes.append(Scene(items, label))
    return scenes


def image_model(seed: int, width: int = 64, depth: int = 4):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=IMAGE_SIZE, patch_size=PATCH, hidden_size=width, num_hidden_layers=depth, num_attention_heads=4,
        intermediate_size=2 * width, num_labels=len(IMAGE_CLASSES), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        id2label=dict(enumerate(IMAGE_CLASSES)), label2id={c: i for i, c in enumerate(IMAGE_CLASSES)},
    )
    return ViTForImageClassification(config)


IMAGE_MEAN = IMAGE_STD = [0.5, 0.5, 0.5]


def image_inputs(images: np.ndarray) -> dict:
    """(N, H, W, 3) uint8 -> pixel_values normalised as the saved image processor does."""
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return {"pixel_values": (pixels - 0.5) / 0.5}


# -- the two tasks behind one interface ----------------------------------------------------------
def examples(task: str, split: str, count: int, distractors: int = DISTRACTORS_PER_SCENE, draw: int = 0):
    """The examples of a split (``distractors``: items per scene besides the decisive one; images only).
    ``draw`` > 0 gives another sample of the same split's stream (fresh training examples per epoch);
    draw 0 is the split's fixed set."""
    seed = SPLIT_SEEDS[split] if task == "text" else 100 + SPLIT_SEEDS[split]
    seed = [seed, draw] if draw else seed
    if task == "text":
        return make_documents(count, seed)
    return make_scenes(count, seed, "test" if split == "test" else "train", distractors)


def render_inputs(task: str, processor, batch, keep=ROLES) -> dict:
    if task == "text":
        return text_inputs(processor, [example.render(keep)[0] for example in batch])
    return image_inputs(np.stack([example.render(keep)[0] for example in batch]))


@torch.no_grad()
def accuracy(task: str, model, processor, data, keep=ROLES, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        batch = data[start : start + batch_size]
        logits = model(**render_inputs(task, processor, batch, keep)).logits
        correct += int((logits.argmax(-1) == torch.tensor([e.label for e in batch])).sum())
    return correct / len(data)


def train(task: str, args) -> dict:
    started = time.time()
    processor = text_tokenizer() if task == "text" else None
    model = text_model(processor, args.seed) if task == "text" else image_model(args.seed, args.image_width, args.image_depth)
    counts = {"text": (args.text_train, 1000, args.text_test), "image": (args.image_train, 1000, args.image_test)}[task]
    distractors = args.image_distractors
    fresh = args.fresh_image if task == "image" else False
    val_data = examples(task, "val", counts[1], distractors)
    epochs = args.text_epochs if task == "text" else args.image_epochs
    steps = epochs * math.ceil(counts[0] / args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    generator = torch.Generator().manual_seed(args.seed)
    history, best, best_state = [], -1.0, None
    for epoch in range(epochs):
        if epoch == 0 or fresh:  # a fixed training set is rendered once; fresh ones are drawn every epoch
            train_data = examples(task, "train", counts[0], distractors, draw=epoch if fresh else 0)
            inputs = render_inputs(task, processor, train_data)
            labels = torch.tensor([e.label for e in train_data])
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        losses = 0.0
        for start in range(0, len(labels), args.batch_size):
            index = order[start : start + args.batch_size]
            batch = {name: value[index] for name, value in inputs.items()}
            loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels[index])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses += loss.item() * len(index)
        val = accuracy(task, model, processor, val_data)
        history.append({"epoch": epoch + 1, "loss": round(losses / len(labels), 5), "val_accuracy": val, "minutes": round((time.time() - started) / 60, 2)})
        print(task, history[-1], flush=True)
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    test_data = examples(task, "test", counts[2], distractors)
    info = {
        "task": task, "seed": args.seed, **({"distractors": distractors} if task == "image" else {}), "split_seeds": SPLIT_SEEDS, "train": counts[0], "fresh_train_per_epoch": fresh, "val": counts[1], "test": counts[2],
        "epochs": epochs, "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads, "history": history,
        "best_epoch": max(history, key=lambda h: h["val_accuracy"])["epoch"], "val_accuracy": best,
        "test_accuracy": accuracy(task, model, processor, test_data),
        # the ablation check: the same test examples without their evidence (all planted parts) or distractors
        "test_accuracy_without_evidence": accuracy(task, model, processor, test_data, keep=("distractor",)),
        "test_accuracy_without_distractors": accuracy(task, model, processor, test_data, keep=("evidence", "contrast")),
        "chance": 1 / len(model.config.id2label), "train_minutes": round((time.time() - started) / 60, 2),
        "command": shlex.join(["python", *sys.argv]), "torch": torch.__version__,
    }
    folder = args.out / task
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if task == "text":
        processor.save_pretrained(folder)
    else:
        from transformers import ViTImageProcessor

        ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=IMAGE_MEAN, image_std=IMAGE_STD,
                          do_resize=False).save_pretrained(folder)
    (folder / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=2))
    return info


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("text", "image", "both"), default="both")
    parser.add_argument("--out", type=Path, default=MODELS)
    parser.add_argument("--text-train", type=int, default=20000)
    parser.add_argument("--text-test", type=int, default=2000)
    parser.add_argument("--text-epochs", type=int, default=6)
    parser.add_argument("--image-train", type=int, default=24000)
    parser.add_argument("--image-test", type=int, default=2000)
    parser.add_argument("--image-epochs", type=int, default=15)
    parser.add_argument("--fresh-image", action="store_true",
                        help="draw --image-train new training scenes every epoch (seeded per epoch) instead of one fixed set")
    parser.add_argument("--image-width", type=int, default=64, help="the image ViT's width (MLP: twice that; 4 heads)")
    parser.add_argument("--image-depth", type=int, default=4, help="the image ViT's blocks")
    parser.add_argument("--image-distractors", type=int, default=DISTRACTORS_PER_SCENE, help="distractor items per scene")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for task in ("text", "image") if args.task == "both" else (args.task,):
        train(task, args)


if __name__ == "__main__":
    main()

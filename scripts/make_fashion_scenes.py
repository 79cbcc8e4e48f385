"""Build the Fashion-MNIST scenes benchmark: real Fashion-MNIST items pasted at random positions and
scales onto cluttered backgrounds, each with its own pixel-exact silhouette as the object mask.

Splits, in the image-folder layout ``relevancy.evaluation.load_image_folder`` reads
(``images/<name>.png``, ``masks/<name>.png``, ``labels.csv``):
  train/       one item per image, items from Fashion-MNIST's training set;
  test/        one item per image, items from Fashion-MNIST's test set (segmentation, perturbation);
  test_pairs/  two items of different classes per image, ``masks/<name>/<class>.png`` per item
               (class specificity); ``labels.csv`` gives the first item's class.

    apt-get install -y dataset-fashion-mnist
    python scripts/make_fashion_scenes.py            # -> ~/.cache/relevancy/fashion-scenes
    python scripts/make_fashion_scenes.py --variant easy --out ~/.cache/relevancy/fashion-scenes-easy

``--variant easy`` draws larger items on milder clutter (a curriculum stage for a model trained from
scratch); the default ``standard`` variant is unchanged, and with the same seed and counts it
reproduces the same images. Raising ``--train`` only appends images: the first ones, test/ and
test_pairs/ stay the same.

The mask is exactly the set of pixels the item was painted on (resized item intensity > 10 %), so
segmentation scores measure the map against the object itself, not against a box.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm.auto import tqdm

SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT = Path.home() / ".cache" / "relevancy" / "fashion-scenes"
#: Fashion-MNIST's classes, as file-name-safe labels (they name the per-object mask files).
CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
THRESHOLD = 0.1  # an item pixel belongs to the silhouette above this intensity
#: Scene variants: item sizes as fractions of the image side (one-item, two-item images), the
#: clutter's colour spread around mid-grey (1 = values 40..215) and its number of shapes.
VARIANTS = {
    "standard": {"single": (0.32, 0.6), "double": (0.3, 0.45), "contrast": 1.0, "shapes": (4, 8)},
    "easy": {"single": (0.5, 0.8), "double": (0.36, 0.48), "contrast": 0.5, "shapes": (1, 4)},
}


def read_fashion_mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)) from the IDX files of the Debian package."""
    prefix = "train" if split == "train" else "t10k"
    images_file, labels_file = folder / f"{prefix}-images-idx3-ubyte.gz", folder / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images_file, labels_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: install Fashion-MNIST with `apt-get install -y dataset-fashion-mnist` or pass --source")
    with gzip.open(images_file) as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels_file) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    return images, labels


def background(rng: np.random.Generator, size: int, contrast: float = 1.0, shapes: tuple[int, int] = (4, 8)) -> Image.Image:
    """Clutter: smooth colour noise plus random rectangles, ellipses and strokes in random colours
    (mid-range values, so that items of any tint still stand out to a model trained from scratch)."""
    low, high = round(128 - 88 * contrast), round(128 + 88 * contrast)
    coarse = rng.integers(low, high, (size // 14 + 1, size // 14 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(shapes[0], shapes[1] + 1))):
        colour = tuple(int(c) for c in rng.integers(low, high, 3))
        x0, y0 = (int(v) for v in rng.integers(-size // 4, size, 2))
        w, h = (int(v) for v in rng.integers(size // 16, size // 3, 2))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.line([x0, y0, x0 + w, y0 + h], fill=colour, width=int(rng.integers(1, 5)))
    return image.filter(ImageFilter.GaussianBlur(1.0))


def paste(canvas: np.ndarray, item: np.ndarray, scale: int, top: int, left: int, rng: np.random.Generator) -> np.ndarray:
    """Paint a resized, tinted item onto ``canvas`` (H, W, 3 float) in place; return its mask (H, W)."""
    resized = np.asarray(Image.fromarray(item).resize((scale, scale), Image.BILINEAR), dtype=np.float32) / 255.0
    silhouette = resized > THRESHOLD
    tint = rng.uniform(0.35, 1.0, 3).astype(np.float32)
    mask = np.zeros(canvas.shape[:2], dtype=bool)
    mask[top : top + scale, left : left + scale] = silhouette
    shade = (0.25 + 0.75 * resized[silhouette])[:, None] * tint  # the item's own texture, in one colour
    canvas[mask] = shade * 255.0
    return mask


def scene(rng, size: int, items: list[np.ndarray], scales: tuple[int, int], contrast: float = 1.0, shapes: tuple[int, int] = (4, 8)):
    """One image with the given items at random positions/scales, items not overlapping (retries)."""
    for _attempt in range(100):
        canvas = np.asarray(background(rng, size, contrast, shapes), dtype=np.float32).copy()
        masks = []
        for item in items:
            scale = int(rng.integers(scales[0], scales[1] + 1))
            top, left = (int(v) for v in rng.integers(0, size - scale + 1, 2))
            masks.append(paste(canvas, item, scale, top, left, rng))
        union = np.sum(masks, axis=0)
        if union.max() <= 1 and all(m.sum() >= 20 for m in masks):  # no overlap, each item visible
            return canvas.round().clip(0, 255).astype(np.uint8), masks
    raise RuntimeError("could not place the items without overlap: use larger --size or smaller scales")


def write_split(folder: Path, rng, images, labels, count: int, size: int, scales, two: bool, desc: str, variant: str = "standard") -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    rows = ["name,label"]
    by_class = [np.flatnonzero(labels == c) for c in range(len(CLASSES))]
    for index in tqdm(range(count), desc=desc, unit="image"):
        name = f"{index:06d}"
        classes = rng.choice(len(CLASSES), 2, replace=False) if two else [int(rng.integers(len(CLASSES)))]
        chosen = [images[rng.choice(by_class[c])] for c in classes]
        pixels, masks = scene(rng, size, chosen, scales, VARIANTS[variant]["contrast"], VARIANTS[variant]["shapes"])
        Image.fromarray(pixels).save(folder / "images" / f"{name}.png")
        if two:
            (folder / "masks" / name).mkdir(exist_ok=True)
            for c, mask in zip(classes, masks):
                Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / name / f"{CLASSES[c]}.png")
        else:
            Image.fromarray(masks[0].astype(np.uint8) * 255).save(folder / "masks" / f"{name}.png")
        rows.append(f"{name},{CLASSES[classes[0]]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder of the Fashion-MNIST IDX .gz files")
    parser.add_argument("--size", type=int, default=112, help="image side in pixels (112 = 8x8 patches of 14 for DINOv2)")
    parser.add_argument("--train", type=int, default=10000, help="one-item training images")
    parser.add_argument("--test", type=int, default=2000, help="one-item test images")
    parser.add_argument("--pairs", type=int, default=500, help="two-item test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="standard",
                        help="standard (36..67 px items in a 112 px image, full clutter) or easy (56..90 px items, milder clutter)")
    args = parser.parse_args(argv)

    variant = VARIANTS[args.variant]
    single = tuple(round(args.size * f) for f in variant["single"])
    double = tuple(round(args.size * f) for f in variant["double"])
    train_images, train_labels = read_fashion_mnist(args.source, "train")
    test_images, test_labels = read_fashion_mnist(args.source, "test")
    # separate streams per split, so changing one split's count leaves the others' images unchanged
    seeds = np.random.SeedSequence(args.seed).spawn(3)
    splits = (
        ("train", train_images, train_labels, args.train, single, False),
        ("test", test_images, test_labels, args.test, single, False),
        ("test_pairs", test_images, test_labels, args.pairs, double, True),
    )
    for seed, (name, images, labels, count, scales, two) in zip(seeds, splits):
        write_split(args.out / name, np.random.default_rng(seed), images, labels, count, args.size, scales, two, name, args.variant)
    meta = {"classes": list(CLASSES), "size": args.size, "seed": args.seed, "variant": args.variant, "single_scales": single, "pair_scales": double,
            "counts": {"train": args.train, "test": args.test, "test_pairs": args.pairs}, "source": str(args.source)}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

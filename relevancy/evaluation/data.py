"""Evaluation data: ERASER folders, labelled text files (CSV/TSV/JSONL), HF ``datasets`` objects,
and image folders with object masks.

Every item remembers where it came from (``where``: file and line), so that any later error about
it can name the place to fix. Images are read lazily, one batch at a time.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..data_checks import SkippedRow, read_parquet_rows, read_utf8, text_problem, warn_skipped

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class TextItem:
    id: str
    text: str
    label: object  # a class index or a label name, as written in the data
    where: str
    words: list[str] | None = None  # the data's own tokens (ERASER), which evidence indexes
    evidence: np.ndarray | None = None  # (len(words),) bool: inside some human rationale


@dataclass
class ImageItem:
    id: str
    image_path: Path
    mask_path: Path | None
    label: object
    where: str
    class_masks: dict = field(default_factory=dict)  # label -> mask path, for two-object images

    def load(self, size: tuple[int, int] | None = None, channels: int = 3):
        """(image (H, W, channels) float in [0, 1], mask (H, W) bool, {label: mask}), resized to
        ``size`` (bilinear for the image, nearest for masks) when given. Without its own mask, a
        two-object image's mask is the union of its objects'."""
        from PIL import Image

        image = Image.open(self.image_path).convert("RGB" if channels == 3 else "L")
        masks = {"": self.mask_path, **self.class_masks}
        loaded = {}
        for key, path in masks.items():
            if path is None:
                continue
            mask = Image.open(path).convert("L")
            if mask.size != image.size:
                raise ValueError(
                    f"the image {self.image_path} is {image.size[0]}x{image.size[1]} pixels but its mask {path} is "
                    f"{mask.size[0]}x{mask.size[1]}: masks must have their image's size"
                )
            if size is not None:
                mask = mask.resize((size[1], size[0]), Image.NEAREST)
            loaded[key] = np.asarray(mask) > 0
        if size is not None:
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        pixels = pixels if pixels.ndim == 3 else pixels[..., None]
        mask = loaded.pop("", None)
        if mask is None and loaded:
            mask = np.logical_or.reduce(list(loaded.values()))
        return pixels, mask, loaded


@dataclass
class Dataset:
    items: list
    modality: str  # "text" or "image"
    source: str
    skipped: list[SkippedRow] = field(default_factory=list)  # rows without usable text, left out

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_evidence(self) -> bool:
        """Every item has human rationales (the rationale test)."""
        return all(getattr(item, "evidence", None) is not None for item in self.items)

    @property
    def has_masks(self) -> bool:
        """Every image has an object mask (the segmentation test)."""
        return all(getattr(item, "mask_path", None) or getattr(item, "class_masks", None) for item in self.items)

    @property
    def has_class_masks(self) -> bool:
        """Some image shows two objects with a mask each (the class-specificity test)."""
        return any(len(getattr(item, "class_masks", {})) == 2 for item in self.items)

    def head(self, limit: int | None) -> "Dataset":
        return self if limit is None else Dataset(self.items[:limit], self.modality, self.source, self.skipped)

    def balanced_sample(self, limit: int | None, seed: int = 0) -> tuple["Dataset", str]:
        """At most ``limit`` items, as equal per label as the data allow (labels take turns; within a
        label a seeded random order), kept in file order; and a sentence saying which. Files often
        list one class first (ERASER: all negatives), so the first N items would be one class."""
        if limit is None or limit >= len(self.items):
            return self, f"all {len(self.items)} items"
        if limit < 1:
            raise ValueError(f"the limit must be at least 1, got {limit}")
        rng = np.random.default_rng(seed)
        by_label: dict[str, list[int]] = {}
        for index, item in enumerate(self.items):
            by_label.setdefault(str(item.label), []).append(index)
        queues = {label: list(rng.permutation(indices)) for label, indices in sorted(by_label.items())}
        chosen: list[int] = []
        while len(chosen) < limit:
            for queue in queues.values():
                if queue and len(chosen) < limit:
                    chosen.append(int(queue.pop(0)))
        chosen.sort()
        counts = {label: sum(str(self.items[i].label) == label for i in chosen) for label in queues}
        description = (f"a class-balanced random subset (seed {seed}) of {limit} of {len(self.items)} items: "
                       + ", ".join(f"{label} {count}" for label, count in counts.items()))
        return Dataset([self.items[i] for i in chosen], self.modality, self.source, self.skipped), description


def load_dataset(path, format: str, *, split: str | None = None, text_column: str = "text", label_column: str = "label") -> Dataset:
    """A Dataset from ``path`` in ``format``: "eraser", "csv" (also .tsv), "jsonl", "parquet" or "images"."""
    loaders = {
        "eraser": lambda: load_eraser(path, split or "val"),
        "csv": lambda: load_text_file(path, text_column=text_column, label_column=label_column),
        "jsonl": lambda: load_text_file(path, text_column=text_column, label_column=label_column),
        "parquet": lambda: load_text_file(path, text_column=text_column, label_column=label_column),
        "images": lambda: load_image_folder(path),
    }
    if format not in loaders:
        raise ValueError(f"unknown data format {format!r}; choose one of {', '.join(loaders)}")
    return loaders[format]()


# -- ERASER ---------------------------------------------------------------------------------------
def load_eraser(folder, split: str = "val") -> Dataset:
    """An ERASER folder (``docs/<id>`` or ``docs/<id>.txt``, ``<split>.jsonl``), any split.

    Documents are pre-tokenised: their whitespace tokens are the words that evidence spans index
    (``start_token``..``end_token``, end exclusive). Each span's ``text`` must equal those words
    joined by spaces, or the data and the documents disagree and the rationale scores would be wrong.
    Empty documents are left out, listed in ``skipped`` and in one warning.
    """
    folder = Path(folder)
    if not (folder / "docs").is_dir():
        raise FileNotFoundError(f"no ERASER folder at {folder}: it needs docs/<id>.txt and <split>.jsonl")
    split_file = folder / f"{split}.jsonl"
    if not split_file.is_file():
        found = ", ".join(sorted(p.stem for p in folder.glob("*.jsonl"))) or "none"
        raise FileNotFoundError(f"no split {split!r} in {folder}: {split_file} is missing (splits there: {found})")
    items, skipped = [], []
    for number, row in _json_lines(split_file):
        where = f"{split_file}:{number}"
        docid = row.get("annotation_id") or row.get("docid")
        if not docid:
            raise ValueError(f"{where} has no 'annotation_id': every ERASER line names its document")
        words = _eraser_words(folder, docid, where)
        evidence = np.zeros(len(words), dtype=bool)
        for group in row.get("evidences") or []:
            for span in group:
                _check_span(span, docid, words, where)
                evidence[span["start_token"] : span["end_token"]] = True
        if "classification" not in row:
            raise ValueError(f"{where} has no 'classification': the label of the document is needed")
        problem = text_problem(" ".join(words))
        if problem:
            skipped.append(SkippedRow(str(docid), where, problem))
            continue
        items.append(TextItem(str(docid), " ".join(words), row["classification"], where, words, evidence))
    if not items and not skipped:
        raise ValueError(f"the split file {split_file} has no documents: choose a split with data")
    warn_skipped(skipped, str(split_file), len(items))
    return Dataset(items, "text", f"{folder} ({split})", skipped)


def _eraser_words(folder: Path, docid: str, where: str) -> list[str]:
    for candidate in (folder / "docs" / docid, folder / "docs" / f"{docid}.txt"):
        if candidate.is_file():
            return read_utf8(candidate).split()
    raise FileNotFoundError(f"{where} refers to document {docid!r}, but {folder / 'docs' / docid} does not exist")


def _check_span(span: dict, docid: str, words: list[str], where: str) -> None:
    if span.get("docid", docid) != docid:
        raise ValueError(f"{where}: an evidence span is in document {span['docid']!r}, not in {docid!r}")
    start, end = span.get("start_token"), span.get("end_token")
    if not (isinstance(start, int) and isinstance(end, int)):
        raise ValueError(f"{where}: an evidence span needs integer 'start_token' and 'end_token'; it has {start!r}, {end!r}")
    if not 0 <= start < end <= len(words):
        raise ValueError(
            f"{where}: evidence span [{start}, {end}) is out of range for {docid!r}, which has {len(words)} tokens"
        )
    if "text" in span and span["text"] != " ".join(words[start:end]):
        raise ValueError(
            f"{where}: evidence text {span['text']!r} differs from tokens [{start}, {end}) of {docid!r}: "
            f"{' '.join(words[start:end])!r}"
        )


def _json_lines(path: Path):
    for number, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number} is not JSON: {error.msg}") from error
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number} must be a JSON object")
        yield number, row


# -- text files and HF datasets -----------------------------------------------------------------
def load_text_file(path, *, text_column: str = "text", label_column: str = "label", id_column: str | None = None) -> Dataset:
    """Labelled texts from a .csv, .tsv (GLUE style: quotes are text), .jsonl or .parquet file; rows without
    usable text are left out, listed in ``skipped`` and in one warning."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        handle = io.StringIO(read_utf8(path), newline="")
        if suffix == ".tsv":
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.DictReader(handle)
        rows = [(number, row) for number, row in enumerate(reader, 2)]  # line 1 is the header
    elif suffix in (".jsonl", ".json"):
        rows = list(_json_lines(path))
    elif suffix == ".parquet":
        rows = list(enumerate(read_parquet_rows(path), 1))  # row numbers for the skipped-row report
    else:
        raise ValueError(f"cannot read {path}: give a .csv, .tsv, .jsonl or .parquet file (or --format eraser/images)")
    return _text_dataset(rows, str(path), text_column, label_column, id_column)


def from_hf(data, *, text_column: str = "text", label_column: str = "label", id_column: str | None = None) -> Dataset:
    """Labelled texts from an HF ``datasets.Dataset`` (used only when that package is installed);
    integer labels of a ClassLabel column are turned into their names."""
    features = getattr(data, "features", None) or {}
    names = getattr(features.get(label_column), "names", None)
    rows = []
    for number, row in enumerate(data):
        row = dict(row)
        if names and isinstance(row.get(label_column), int):
            row[label_column] = names[row[label_column]]
        rows.append((number, row))
    return _text_dataset(rows, f"{type(data).__name__} object", text_column, label_column, id_column, unit="row")


def _text_dataset(rows, source: str, text_column, label_column, id_column, unit: str = "line") -> Dataset:
    items, skipped = [], []
    for number, row in rows:
        where = f"{source}:{number}" if unit == "line" else f"{source}, row {number}"
        for role, column in (("text", text_column), ("label", label_column), ("id", id_column)):
            if column is not None and column not in row:
                raise ValueError(
                    f"{where} has no {role} column {column!r}; its columns are {', '.join(map(repr, row))}. "
                    f"Name the right one (CLI: --{role}-column)"
                )
        identifier = str(row[id_column]) if id_column else str(number)
        problem = text_problem(row[text_column])
        if problem:
            skipped.append(SkippedRow(identifier, where, problem))
            continue
        items.append(TextItem(identifier, row[text_column], row[label_column], where))
    if not items and not skipped:
        raise ValueError(f"the data set {source} has no rows: nothing to evaluate")
    warn_skipped(skipped, source, len(items))
    return Dataset(items, "text", source, skipped)


# -- image folders -------------------------------------------------------------------------------
def load_image_folder(folder) -> Dataset:
    """Images with object masks: ``images/<name>.png`` and ``masks/<name>.png`` (foreground > 0).

    Classes come from ``labels.csv`` (columns ``name,label``) or, without it, from class folders
    (``images/<class>/<name>.png`` with ``masks/<class>/<name>.png``). For the class-specificity
    test a two-object image has a folder ``masks/<name>/`` holding ``<label>.png`` per object.
    """
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir} is missing: an image data set has images/<name>.png and masks/<name>.png")
    labels_file = folder / "labels.csv"
    labels = _read_labels(labels_file) if labels_file.is_file() else None
    items = []
    for path in sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        relative = path.relative_to(images_dir).with_suffix("")
        name = relative.as_posix()
        if labels is not None:
            if name not in labels:
                raise ValueError(f"{path} has no row in {labels_file}: add '{name},<label>'")
            label, where = labels[name]
        elif len(relative.parts) == 2:
            label, where = relative.parts[0], str(path)
        else:
            raise ValueError(f"no class for {path}: write {labels_file} (name,label) or put images in images/<class>/")
        mask_path = _mask_for(masks_dir, relative)
        class_masks = _class_masks(masks_dir / relative)
        _check_mask_sizes(path, [mask_path, *class_masks.values()])
        items.append(ImageItem(name, path, mask_path, label, where, class_masks))
    if not items:
        raise ValueError(f"{images_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return Dataset(items, "image", str(folder))


def _read_labels(path: Path) -> dict[str, tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
    if not reader.fieldnames or not {"name", "label"} <= set(reader.fieldnames):
        raise ValueError(f"{path} needs the columns 'name,label'; it has {reader.fieldnames}")
    return {Path(row["name"]).with_suffix("").as_posix(): (row["label"], f"{path}:{n}") for n, row in enumerate(reader, 2)}


def _mask_for(masks_dir: Path, relative: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = masks_dir / relative.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _check_mask_sizes(image_path: Path, mask_paths: list) -> None:
    """Refuse a mask whose size differs from its image's when the folder is loaded, not hours into
    a run (PIL reads only the headers here)."""
    from PIL import Image

    masks = [path for path in mask_paths if path is not None]
    if not masks:
        return
    with Image.open(image_path) as image:
        size = image.size
    for path in masks:
        with Image.open(path) as mask:
            if mask.size != size:
                raise ValueError(
                    f"the image {image_path} is {size[0]}x{size[1]} pixels but its mask {path} is "
                    f"{mask.size[0]}x{mask.size[1]}: masks must have their image's size (resize the mask with "
                    "nearest-neighbour sampling, or remove the pair)"
                )


def _class_masks(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


# -- labels --------------------------------------------------------------------------------------
def label_index(label, labels: Mapping[int, str], where: str, label_map: Mapping[str, int] | None = None) -> int:
    """The model's class index for a label from the data: an index, a name of the model's
    ``id2label`` (case-insensitive, or a unique prefix either way, e.g. NEG ~ negative), or via
    ``label_map``."""
    if label_map and str(label) in label_map:
        return int(label_map[str(label)])
    text = str(label).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if labels and index not in labels:
            raise ValueError(f"{where}: label {index} is not a class of the model (0..{len(labels) - 1})")
        return index
    lowered = text.lower()
    exact = [i for i, name in labels.items() if name.lower() == lowered]
    prefix = [i for i, name in labels.items() if name.lower().startswith(lowered) or lowered.startswith(name.lower())]
    for matches in (exact, prefix):
        if len(matches) == 1:
            return matches[0]
    known = ", ".join(f"{i}={name!r}" for i, name in sorted(labels.items())) or "none"
    raise ValueError(
        f"{where}: label {text!r} is not one of the model's labels ({known}); "
        f"map it with label_map (CLI: --label-map {text}=INDEX)"
    )


# -- tokenisation --------------------------------------------------------------------------------
@dataclass
class TextBatch:
    inputs: dict  # model inputs (batched tensors)
    word_ids: list | None  # per item: each position's word index or None (special/padding), when words are known
    cut: list[int]  # per item: words (or, without words, tokens) cut by truncation


def max_length(tokenizer, model) -> int:
    """The longest input the model reads: the tokenizer's and the position table's limit, ≤ 512."""
    limits = [512, getattr(tokenizer, "model_max_length", None), getattr(model.config, "max_position_embeddings", None)]
    return min(x for x in limits if isinstance(x, int) and x > 0)


def encode(tokenizer, items: list[TextItem], limit: int) -> TextBatch:
    """Tokenise a batch, truncated to ``limit`` tokens, recording what was cut (never silently).

    Items with words (ERASER) are tokenised as pre-split words (``is_split_into_words``), so each
    token maps to the data's word through ``word_ids()``, which needs a fast tokenizer."""
    if all(item.words is not None for item in items):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("word-level evaluation needs a fast tokenizer (word_ids()); load it with use_fast=True")
        words = [item.words for item in items]
        encoding = tokenizer(words, is_split_into_words=True, truncation=True, max_length=limit, padding=True, return_tensors="pt")
        word_ids = [encoding.word_ids(i) for i in range(len(items))]
        cut = [len(w) - (max((x for x in ids if x is not None), default=-1) + 1) for w, ids in zip(words, word_ids)]
        return TextBatch(dict(encoding), word_ids, cut)
    texts = [item.text for item in items]
    full = tokenizer(texts)["input_ids"]
    encoding = tokenizer(texts, truncation=True, max_length=limit, padding=True, return_tensors="pt")
    kept = encoding["attention_mask"].sum(-1).tolist()
    return TextBatch(dict(encoding), None, [len(ids) - k for ids, k in zip(full, kept)])

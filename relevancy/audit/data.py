"""Labelled text for the audit and for fine-tuning: CSV/TSV/JSONL files, ERASER folders, HF datasets.

Kept small and local on purpose: the audit needs only (id, text, label, rationale spans), and the
rationales are stored as character spans so that any tokenizer can map them onto its tokens.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..data_checks import SkippedRow, read_parquet_rows, read_utf8, text_problem, warn_skipped


@dataclass(frozen=True)
class TextExample:
    id: str
    text: str
    label: object  # as written in the data: a class index or a label name
    rationales: tuple[tuple[int, int], ...] | None = None  # character spans of human rationales


@dataclass
class TextDataset:
    examples: list[TextExample]
    source: str  # where the examples came from, for reports and resume checks
    label_names: list[str] | None = None  # names of integer labels (an HF ClassLabel), if known
    skipped: list[SkippedRow] = field(default_factory=list)  # rows without usable text, left out

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return iter(self.examples)

    @property
    def has_rationales(self) -> bool:
        return any(example.rationales for example in self.examples)


def load_texts(
    data,
    *,
    text_column: str = "text",
    label_column: str = "label",
    id_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> TextDataset:
    """Read labelled texts from a path (.csv, .tsv, .jsonl, .json, .parquet, an ERASER folder or split file),
    an HF ``datasets`` object, a list of mappings, or a TextDataset.

    Rows without usable text (empty, whitespace only, not a string) are left out, listed in
    ``skipped`` and in one warning; ``limit`` counts the rows kept. Raises ValueError for an empty
    data set or a missing text/label column, naming the columns found.
    """
    if isinstance(data, TextDataset):
        dataset = data
    elif isinstance(data, (str, Path)):
        dataset = _load_path(Path(data), text_column, label_column, id_column, split)
    else:
        label_names = _class_label_names(data, label_column)
        source = f"{type(data).__name__} object"
        dataset = from_records(data, text_column=text_column, label_column=label_column, id_column=id_column, source=source)
        dataset.label_names = label_names
    kept, skipped = [], []
    for example in dataset.examples:
        if limit is not None and len(kept) == limit:
            break
        problem = text_problem(example.text)
        if problem:
            skipped.append(SkippedRow(example.id, dataset.source, problem))
        else:
            kept.append(example)
    warn_skipped(skipped, dataset.source, len(kept))
    if not kept:
        raise ValueError(f"the data set {dataset.source} has no examples: nothing to audit or train on")
    dataset = TextDataset(kept, dataset.source, dataset.label_names, dataset.skipped + skipped)
    ids = [example.id for example in dataset.examples]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(
            f"document id {duplicate!r} occurs more than once in {dataset.source}; give an id column with unique values"
        )
    return dataset


def from_records(
    records: Iterable[Mapping],
    *,
    text_column: str = "text",
    label_column: str = "label",
    id_column: str | None = None,
    source: str = "records",
) -> TextDataset:
    """Examples as read; ``load_texts`` leaves out those without usable text."""
    examples = []
    for index, record in enumerate(records):
        if index == 0:
            _check_columns(record.keys(), text_column, label_column, id_column, source)
        identifier = str(record[id_column]) if id_column else f"row-{index}"
        examples.append(TextExample(identifier, record[text_column], _label_value(record[label_column])))
    return TextDataset(examples, source)


def _check_columns(columns, text_column, label_column, id_column, source) -> None:
    columns = list(columns)
    roles = (("text", text_column, "text_column"), ("label", label_column, "label_column"), ("id", id_column, "id_column"))
    for role, name, option in roles:
        if name is not None and name not in columns:
            raise ValueError(
                f"{source} has no {role} column {name!r}; its columns are {', '.join(map(repr, columns))}. "
                f"Name the right one with {option}= (CLI: --{option.replace('_', '-')})"
            )


def _label_value(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value.strip() if isinstance(value, str) else value


def _class_label_names(data, label_column) -> list[str] | None:
    features = getattr(data, "features", None)
    feature = features.get(label_column) if isinstance(features, Mapping) else None
    names = getattr(feature, "names", None)
    return list(names) if names else None


def _load_path(path: Path, text_column, label_column, id_column, split) -> TextDataset:
    if not path.exists():
        raise FileNotFoundError(f"no data at {path}")
    if path.is_dir():
        if not (path / "docs").is_dir():
            raise ValueError(f"{path} is a folder but not in the ERASER layout (docs/<id>.txt and <split>.jsonl); give a file")
        splits = sorted(p.stem for p in path.glob("*.jsonl"))
        if split is None:
            if len(splits) != 1:
                raise ValueError(f"{path} has the splits {', '.join(splits) or 'none'}: choose one with split= (CLI: --split)")
            split = splits[0]
        if split not in splits:
            raise ValueError(f"{path} has no split {split!r}; it has {', '.join(splits) or 'none'}")
        return _load_eraser(path, split)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        handle = io.StringIO(read_utf8(path), newline="")
        if suffix == ".tsv":  # GLUE-style TSV: quotes are text, not quoting
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.DictReader(handle)
        rows = list(reader)
        if not rows and reader.fieldnames:
            raise ValueError(f"the data set {path} has no examples (only a header): nothing to audit or train on")
        return from_records(rows, text_column=text_column, label_column=label_column, id_column=id_column, source=str(path))
    if suffix in (".jsonl", ".json"):
        rows = _read_json_rows(path)
        if rows and (path.parent / "docs").is_dir() and "annotation_id" in rows[0] and "evidences" in rows[0]:
            return _load_eraser(path.parent, path.stem)
        return from_records(rows, text_column=text_column, label_column=label_column, id_column=id_column, source=str(path))
    if suffix == ".parquet":
        rows = read_parquet_rows(path)
        return from_records(rows, text_column=text_column, label_column=label_column, id_column=id_column, source=str(path))
    raise ValueError(f"cannot read {path}: give a .csv, .tsv, .jsonl, .json or .parquet file, or an ERASER folder")


def _read_json_rows(path: Path) -> list[dict]:
    text = read_utf8(path)
    if path.suffix.lower() == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"{path} must hold a JSON list of objects (or use .jsonl with one object per line)")
        return rows
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number} is not JSON: {error.msg}") from error
    return rows


def _load_eraser(folder: Path, split: str) -> TextDataset:
    """ERASER: each document's whitespace tokens are joined by single spaces; evidence token spans
    become character spans of that text."""
    rows = _read_json_rows(folder / f"{split}.jsonl")
    examples = []
    for row in rows:
        docid = row["annotation_id"]
        document = folder / "docs" / docid
        if not document.exists():
            raise FileNotFoundError(f"the ERASER document {document} of {split}.jsonl is missing")
        tokens = read_utf8(document).split()
        starts, position = [], 0
        for token in tokens:
            starts.append(position)
            position += len(token) + 1
        spans = set()
        for group in row.get("evidences") or []:
            for evidence in group:
                if evidence.get("docid", docid) == docid and evidence["end_token"] > evidence["start_token"]:
                    end = evidence["end_token"] - 1
                    spans.add((starts[evidence["start_token"]], starts[end] + len(tokens[end])))
        examples.append(TextExample(docid, " ".join(tokens), row["classification"], tuple(sorted(spans))))
    return TextDataset(examples, f"{folder} ({split})")


def encode_labels(
    dataset: TextDataset, model_labels: Mapping[int, str], label_map: Mapping[str, object] | None = None
) -> list[int]:
    """The model's class index of every example.

    Names match the model's labels case-insensitively, after ``label_map`` (data label -> model
    label name or index); integers are class indices, unless their HF ClassLabel name is known.
    """
    num_classes = len(model_labels)
    by_name = {str(name).lower(): index for index, name in model_labels.items()}
    mapping = {str(k): v for k, v in (label_map or {}).items()}
    resolved, unknown = [], []
    for example in dataset.examples:
        label = example.label
        names = dataset.label_names
        if isinstance(label, int) and names and 0 <= label < len(names):
            if names[label] in mapping or names[label].lower() in by_name:  # names guard against another class order
                label = names[label]
        label = _label_value(mapping.get(str(label), label))
        if isinstance(label, int):
            if not 0 <= label < num_classes:
                raise ValueError(
                    f"label {label} of document {example.id!r} is out of range: "
                    f"the model has {num_classes} classes (0..{num_classes - 1})"
                )
            resolved.append(label)
        elif str(label).lower() in by_name:
            resolved.append(by_name[str(label).lower()])
        else:
            unknown.append(str(label))
            resolved.append(-1)
    if unknown:
        names = sorted(set(unknown))
        known = ", ".join(repr(n) for n in model_labels.values())
        hint = ",".join(f"{n}={list(model_labels.values())[min(i, num_classes - 1)]}" for i, n in enumerate(names))
        raise ValueError(
            f"the labels {', '.join(map(repr, names))} of the data are not among the model's labels ({known}); "
            f"map them with label_map (CLI: e.g. --label-map {hint})"
        )
    return resolved


def parse_label_map(text: str | None) -> dict[str, str] | None:
    """'NEG=negative,POS=positive' -> {'NEG': 'negative', 'POS': 'positive'}."""
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        if "=" not in part:
            raise ValueError(f"bad --label-map entry {part!r}: write DATA_LABEL=MODEL_LABEL, comma-separated")
        key, value = part.split("=", 1)
        mapping[key.strip()] = value.strip()
    return mapping


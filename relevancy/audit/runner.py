"""Run a relevance method over a labelled data set, one JSONL record per document, then aggregate.

Records are appended window by window (see ``relevancy.batching``), so a killed run resumes where it
stopped: documents whose id is already in ``documents.jsonl`` are skipped, and a half-written last
line is dropped. A Ray run (``relevancy.distributed``) writes the same records through the same store.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from tqdm.auto import tqdm

from ..adapters.outputs import evaluating, model_logits
from ..adapters.structure import describe
from ..engine import attribute
from ..methods import get_method
from ..batching import DEFAULT_WINDOW, batches, windows
from ..distributed.options import RayOptions
from .data import TextExample, encode_labels, load_texts
from .report import AuditReport, ShortcutResult, Thresholds
from .stats import Statistics, snippet, units

RECORDS = "documents.jsonl"
META = "meta.json"


class DocumentStore:
    """The per-document records: a JSONL file (resumable) or, without a folder, a list in memory.

    For a file, the store keeps each line's id, byte offset and length as it writes (and reads them
    once when a run resumes), so that the ids done, the data's order and chosen records never need
    the whole file parsed again: records run to tens of KB each."""

    def __init__(self, folder: Path | None, meta: dict, resume: bool = True) -> None:
        self.folder = folder
        self._memory: list[dict] = []
        self._lines: list[tuple[str, int, int]] = []  # (id, byte offset, byte length), in file order
        self._ids: set[str] = set()
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        path, meta_path = folder / RECORDS, folder / META
        if resume and path.exists() and meta_path.exists():
            saved = json.loads(meta_path.read_text())
            differing = [k for k in meta if saved.get(k) != meta[k]]
            if differing:
                details = "; ".join(f"{k}: {saved.get(k)!r} there, {meta[k]!r} now" for k in differing)
                raise ValueError(
                    f"{folder} holds an audit with other settings ({details}); "
                    "write to another folder, or start over with resume=False (CLI: --restart)"
                )
            self._index_complete_lines(path)
        else:
            path.write_bytes(b"")
        meta_path.write_text(json.dumps(meta, indent=2))

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / RECORDS

    def _index_complete_lines(self, path: Path) -> None:
        """A run killed while writing leaves a broken last line: keep only complete records."""
        spans, offset = [], 0
        with path.open("rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line) if line.endswith(b"\n") else None
                except json.JSONDecodeError:
                    record = None
                if isinstance(record, dict) and "id" in record:
                    spans.append((record["id"], offset, len(line)))
                offset += len(line)
        if sum(length for _, _, length in spans) != offset:
            self._rewrite(spans)
        else:
            self._set_index(spans)

    def _set_index(self, spans: list[tuple[str, int, int]]) -> None:
        self._lines = spans
        self._ids = {identifier for identifier, _, _ in spans}

    def _rewrite(self, spans: list[tuple[str, int, int]]) -> None:
        """The file with only the lines of ``spans``, in their order, through a temporary file."""
        temporary = self.path.with_name(RECORDS + ".rewriting")
        kept, offset = [], 0
        with self.path.open("rb") as source, temporary.open("wb") as target:
            for identifier, start, length in spans:
                source.seek(start)
                target.write(source.read(length))
                kept.append((identifier, offset, length))
                offset += length
        temporary.replace(self.path)
        self._set_index(kept)

    def done(self) -> set[str]:
        if self.folder is None:
            return {record["id"] for record in self._memory}
        return set(self._ids)

    def append(self, records: list[dict]) -> None:
        if self.folder is None:
            self._memory.extend(records)
            return
        lines = [(json.dumps(record) + "\n").encode() for record in records]
        self._write([record["id"] for record in records], b"".join(lines), [len(line) for line in lines])

    def append_serialised(self, ids: list[str], data: bytes, lengths: list[int]) -> None:
        """Records serialised elsewhere (by Ray actors): ``data`` holds one JSON line per id, ending
        in a newline, of the given byte ``lengths``. Written as they are, since parsing and
        re-serialising them would make the driver the bottleneck; ids already stored are skipped."""
        starts = [0]
        for length in lengths:
            starts.append(starts[-1] + length)
        if len(lengths) != len(ids) or starts[-1] != len(data):
            raise ValueError(f"{len(data)} bytes of records do not match their {len(ids)} ids and lengths")
        stored = self.done() if self.folder is None else self._ids
        fresh, seen = [], set()
        for k, identifier in enumerate(ids):
            if identifier not in stored and identifier not in seen:
                seen.add(identifier)
                fresh.append(k)
        if self.folder is None:
            self._memory.extend(json.loads(data[starts[k] : starts[k + 1]]) for k in fresh)
            return
        if len(fresh) < len(ids):
            data = b"".join(data[starts[k] : starts[k + 1]] for k in fresh)
            ids, lengths = [ids[k] for k in fresh], [lengths[k] for k in fresh]
        self._write(ids, data, lengths)

    def _write(self, ids: list[str], data: bytes, lengths: list[int]) -> None:
        with self.path.open("ab") as handle:
            offset = handle.tell()
            handle.write(data)
            handle.flush()
        for identifier, length in zip(ids, lengths):
            self._lines.append((identifier, offset, length))
            self._ids.add(identifier)
            offset += length

    def order_by(self, ids: list[str]) -> None:
        """Put the records in the data set's order: the report reads them in file order (which
        documents a shortcut test measures, the order of sums), and a Ray run writes them as they
        finish. Rewrites the file only when it is out of order, from the index (no record parsed)."""
        position = {identifier: index for index, identifier in enumerate(ids)}
        rank = lambda identifier: position.get(identifier, len(position))  # noqa: E731
        if self.folder is None:
            self._memory.sort(key=lambda record: rank(record["id"]))
            return
        ranks = [rank(identifier) for identifier, _, _ in self._lines]
        if all(a <= b for a, b in zip(ranks, ranks[1:])):
            return
        self._rewrite(sorted(self._lines, key=lambda span: rank(span[0])))

    def select(self, ids) -> Iterator[dict]:
        """The records of ``ids``, in file order, reading only their lines."""
        wanted = set(ids)
        if self.folder is None:
            yield from (record for record in self._memory if record["id"] in wanted)
            return
        with self.path.open("rb") as handle:
            for identifier, start, length in self._lines:
                if identifier in wanted:
                    handle.seek(start)
                    yield json.loads(handle.read(length))

    def __iter__(self):
        if self.folder is None:
            yield from self._memory
            return
        with self.path.open("rb") as handle:
            for line in handle:
                yield json.loads(line)


@dataclass
class AuditSettings:
    """How the audit runs; ``thresholds`` decide what is flagged (they apply again to a saved run)."""

    method: str = "transformer_attribution"
    target: str = "predicted"  # explain the predicted class, or "label": the true one
    batch_size: int = 16
    top_k: int = 5
    max_length: int | None = None  # longer documents are truncated (counted in the report)
    shortcut_candidates: int = 20  # items measured by removal, most total relevance first
    shortcut_documents: int = 64  # documents per candidate
    # words always measured by removal: a model trained against a map can hide a word from it,
    # and candidates chosen by relevance would then miss the word
    shortcut_words: tuple[str, ...] = ()
    # documents sorted by token count together, so that a batch pads little; 0: batches in data order
    length_window: int = DEFAULT_WINDOW
    thresholds: Thresholds = field(default_factory=Thresholds)


def audit(
    model,
    tokenizer,
    data,
    *,
    out: str | Path | None = None,
    settings: AuditSettings | None = None,
    label_map: dict | None = None,
    resume: bool = True,
    progress: bool = True,
    ray: RayOptions | str | bool | None = None,
    **load_options,
) -> AuditReport:
    """Audit ``model`` on labelled ``data`` (anything ``load_texts`` reads; ``load_options`` go to it).

    With ``out`` the records and the report (report.json/.md/.html) are written there and a
    killed run resumes. ``ray``: explain the documents on a Ray cluster instead of in this process
    (True: the cluster this machine is attached to, else a new local one; "auto": only an existing
    one; "host:port"; or a ``RayOptions``); the report is computed here from the same records.
    Returns the AuditReport.
    """
    settings = settings or AuditSettings()
    if settings.target not in ("predicted", "label"):
        raise ValueError(f"unknown target {settings.target!r}: use 'predicted' or 'label'")
    if settings.batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if settings.length_window < 0:
        raise ValueError("length_window must be >= 0 (0: batches in the data's order)")
    ray = RayOptions.parse(ray)
    dataset = load_texts(data, **load_options)
    structure = describe(model)
    if structure.modality != "text":
        raise ValueError("the audit reads text data sets: give a text classifier and its tokenizer")
    model_labels = structure.labels or {i: str(i) for i in range(model.config.num_labels)}
    labels = encode_labels(dataset, model_labels, label_map)
    max_length = settings.max_length or _max_length(model, tokenizer)
    method = get_method(settings.method)
    meta = {
        "method": method.name,
        "target": settings.target,
        "max_length": max_length,
        "model": _fingerprint(model),
        "data": dataset.source,
        "documents": len(dataset),
    }
    store = DocumentStore(Path(out) if out is not None else None, meta, resume=resume)
    done = store.done()
    pending = [(example, label) for example, label in zip(dataset.examples, labels) if example.id not in done]
    if ray is None:
        _explain(model, tokenizer, pending, store, settings, max_length, structure, progress)
    else:
        from ..distributed.ray_backend import audit_on_ray  # Ray is imported only when asked for

        audit_on_ray(model, tokenizer, pending, store, settings, max_length, ray, progress)
    store.order_by([example.id for example in dataset.examples])

    num_classes = len(model_labels)
    words, tokens = Statistics("word", num_classes, settings.top_k), Statistics("token", num_classes, settings.top_k)
    truncated = 0
    for record in store:
        words.add(record)
        tokens.add(record)
        truncated += record["truncated"]
    word_stats = words.results()
    candidates = [
        s.item for s in word_stats if s.count >= settings.thresholds.min_count and not s.special
    ][: settings.shortcut_candidates]
    counted = {s.item for s in word_stats}
    absent = [w for w in settings.shortcut_words if w not in counted]
    if absent:
        warnings.warn(f"shortcut words not among the audited words (none of the documents has them) are skipped: {', '.join(absent)}")
    candidates += [w for w in dict.fromkeys(settings.shortcut_words) if w in counted and w not in candidates]
    shortcuts = measure_shortcuts(model, tokenizer, store, candidates, settings, progress)
    rationale = None
    if words.rationale_share:
        rationale = {
            "documents": len(words.rationale_share),
            "mean_relevance_inside": sum(words.rationale_share) / len(words.rationale_share),
            "mean_fraction_of_words_inside": sum(words.rationale_fraction) / len(words.rationale_fraction),
        }
    report = AuditReport(
        meta={**meta, "top_k": settings.top_k, "truncated": truncated, "labels": model_labels,
              "class_documents": words.class_documents},
        words=word_stats,
        tokens=tokens.results(),
        shortcuts=shortcuts,
        thresholds=settings.thresholds,
        rationale=rationale,
    )
    report.attach_examples(store.select(report.example_ids()))  # reads only their lines
    if out is not None:
        report.save(out)
    return report


class DocumentExplainer:
    """Turns documents into records, a window at a time: what a local run does, and what each Ray
    actor does with the windows it is sent (so both write the same records)."""

    def __init__(self, model, tokenizer, settings: AuditSettings, max_length: int, structure=None) -> None:
        self.model, self.tokenizer, self.settings, self.max_length = model, tokenizer, settings, max_length
        self.structure = structure or describe(model)
        self.method = get_method(settings.method)
        self.uncased = _uncased(tokenizer)
        self.readout = _readout_ids(tokenizer)

    def records(self, window: list[tuple[TextExample, int]]) -> list[dict]:
        """One record per (example, class index) of ``window``, in the window's order; batches are
        formed by token count within the window (settings.length_window > 0) or in order."""
        if not window:
            return []
        tokenizer, settings = self.tokenizer, self.settings
        lengths = [len(ids) for ids in tokenizer([e.text for e, _ in window], add_special_tokens=True)["input_ids"]]
        device = next(self.model.parameters()).device
        records: list[dict | None] = [None] * len(window)
        for group in batches(lengths, settings.batch_size, bucket=settings.length_window > 0):
            chunk = [window[i] for i in group]
            encodings = tokenizer(
                [example.text for example, _ in chunk], padding=True, truncation=True, max_length=self.max_length,
                return_tensors="pt", return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)),
                return_special_tokens_mask=True,
            )
            inputs = {k: v.to(device) for k, v in encodings.items() if k not in ("offset_mapping", "special_tokens_mask")}
            target = torch.tensor([label for _, label in chunk], device=device) if settings.target == "label" else None
            result = attribute(self.model, inputs, self.method, target, structure=self.structure)
            for row, (position, (example, label)) in enumerate(zip(group, chunk)):
                records[position] = _record(
                    tokenizer, example, label, row, encodings, result, self.uncased, self.readout,
                    lengths[position] > self.max_length,
                )
        return records


def _explain(model, tokenizer, pending, store, settings, max_length, structure, progress) -> None:
    """Local run: window by window, each window's records appended in the data set's order."""
    if not pending:
        return
    explainer = DocumentExplainer(model, tokenizer, settings, max_length, structure)
    with tqdm(total=len(pending), desc="audit", unit="doc", disable=not progress) as bar:
        for span in windows(len(pending), settings.length_window or settings.batch_size):
            store.append(explainer.records([pending[i] for i in span]))
            bar.update(len(span))


def _record(tokenizer, example, label, row, encodings, result, uncased, readout, truncated) -> dict:
    mask = encodings["attention_mask"][row].bool()
    ids = encodings["input_ids"][row][mask].tolist()
    special = [bool(s) for s in encodings["special_tokens_mask"][row][mask].tolist()]
    scores = result.scores[row][mask].float().tolist()
    tokens = [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]
    excluded = [s and i in readout for s, i in zip(special, ids)]
    offsets = None
    words = []
    if "offset_mapping" in encodings:
        offsets = [tuple(map(int, pair)) for pair in encodings["offset_mapping"][row][mask].tolist()]
        word_ids = [w for w, keep in zip(encodings.word_ids(row), mask.tolist()) if keep]
        groups: dict[int, list[int]] = {}
        for position, word in enumerate(word_ids):
            if word is not None and not special[position]:
                groups.setdefault(word, []).append(position)
        for positions in groups.values():
            key = example.text[offsets[positions[0]][0] : offsets[positions[-1]][1]]
            words.append([key.lower() if uncased else key, positions])
    else:  # a slow tokenizer gives no word boundaries: every piece is its own word
        words = [[tokens[p].lower() if uncased else tokens[p], [p]] for p in range(len(tokens)) if not special[p]]
    rationale = None
    if example.rationales and offsets is not None:
        rationale = [
            not special[p] and any(offsets[p][0] < end and offsets[p][1] > begin for begin, end in example.rationales)
            for p in range(len(ids))
        ]
    probabilities = torch.softmax(result.logits[row].float(), -1)
    return {
        "id": example.id,
        "label": int(label),
        "predicted": int(probabilities.argmax()),
        "target": None if result.target_classes is None else int(result.target_classes[row]),
        "probabilities": probabilities.tolist(),
        "truncated": bool(truncated),
        "text": example.text,
        "tokens": tokens,
        "ids": ids,
        "scores": scores,
        "special": special,
        "excluded": excluded,
        "offsets": offsets,
        "words": words,
        "rationale": rationale,
    }


def word_occurrences(records, candidates: list[str], limit: int) -> dict[str, list]:
    """Per candidate word, up to ``limit`` records that contain it, in record order, as (record, the
    token positions of all its occurrences, the first occurrence's character span)."""
    wanted = set(candidates)
    found: dict[str, list] = {c: [] for c in candidates}
    for record in records:
        in_record: dict[str, tuple[list[int], tuple | None]] = {}
        for unit in units(record, "word"):
            if unit.key in wanted and len(found[unit.key]) < limit:
                positions, span = in_record.get(unit.key, ([], unit.span))
                in_record[unit.key] = (positions + unit.positions, span)
        for key, (positions, span) in in_record.items():
            found[key].append((record, positions, span))
    return found


def measure_shortcuts(
    model, tokenizer, records, candidates: list[str], settings: AuditSettings, progress: bool = True
) -> list[ShortcutResult]:
    """Replace each candidate word with the mask token (pad where there is none) in up to
    ``shortcut_documents`` documents that contain it, and measure how the prediction moves."""
    if not candidates:
        return []
    replacement = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.pad_token_id
    if replacement is None:
        raise ValueError(
            "measuring shortcuts needs a mask or pad token, and the tokenizer has neither; set shortcut_candidates=0"
        )
    jobs: dict[str, list] = {c: [] for c in candidates}
    for key, found in word_occurrences(records, candidates, settings.shortcut_documents).items():
        for record, positions, span in found:
            ids = list(record["ids"])
            for p in positions:
                ids[p] = replacement
            jobs[key].append((record["id"], ids, record["predicted"], record["probabilities"], snippet(record["text"], span)))
    flat = [(key, job) for key in candidates for job in jobs[key]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    probabilities = []
    with evaluating(model), torch.no_grad():
        batches = range(0, len(flat), settings.batch_size)
        for start in tqdm(batches, desc="shortcuts", unit="batch", disable=not progress):
            chunk = [job for _, job in flat[start : start + settings.batch_size]]
            width = max(len(job[1]) for job in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, job in enumerate(chunk):
                ids[row, : len(job[1])] = torch.tensor(job[1])
                attention[row, : len(job[1])] = 1
            logits = model_logits(model(input_ids=ids.to(device), attention_mask=attention.to(device)))
            probabilities.extend(torch.softmax(logits.float(), -1).cpu().tolist())
    results = []
    cursor = 0
    for key in candidates:
        measured = jobs[key]
        after = probabilities[cursor : cursor + len(measured)]
        cursor += len(measured)
        drops, flips, evidence = [], 0, []
        class_drops = [0.0] * len(after[0]) if after else []
        for (doc, _, predicted, before, context), new in zip(measured, after):
            drop = before[predicted] - new[predicted]
            flipped = max(range(len(new)), key=new.__getitem__) != predicted
            flips += flipped
            drops.append((drop, flipped))
            evidence.append([drop, doc, context])
            for c in range(len(new)):
                class_drops[c] += (before[c] - new[c]) / len(measured)
        affected = sum(1 for drop, flipped in drops if flipped or drop >= settings.thresholds.move)
        evidence.sort(key=lambda e: -e[0])
        results.append(
            ShortcutResult(
                item=key,
                measured=len(measured),
                flips=flips,
                affected=affected,
                mean_drop=sum(d for d, _ in drops) / len(drops) if drops else 0.0,
                class_drops=class_drops,
                evidence=evidence[:3],
            )
        )
    results.sort(key=lambda r: (-r.affected, -r.mean_drop, r.item))
    return results


def _max_length(model, tokenizer) -> int:
    config = getattr(model, "config", None)
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    limits = [int(x) for x in limits if x and x < 1_000_000]
    return min(limits) if limits else 512


def _uncased(tokenizer) -> bool:
    return tokenizer.tokenize("Hello World") == tokenizer.tokenize("hello world")


def _readout_ids(tokenizer) -> set[int]:
    """The token the classifier reads out ([CLS], else the sequence start)."""
    for name in ("cls_token_id", "bos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return {int(value)}
    return set()


def _fingerprint(model) -> str:
    """Tells one model's weights from another's, for resume checks."""
    with torch.no_grad():
        total = sum(float(p.detach().double().abs().sum()) for p in model.parameters())
        count = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__}:{count}:{total:.6e}"


__all__ = ["AuditSettings", "DocumentExplainer", "DocumentStore", "audit", "measure_shortcuts"]

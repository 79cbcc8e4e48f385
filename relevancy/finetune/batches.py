"""From labelled texts to RelevanceLoss batches, and from word lists or audits to penalised token ids."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import torch

from ..audit.data import TextDataset, encode_labels


def training_examples(dataset: TextDataset, model_labels: Mapping[int, str], label_map: Mapping | None = None) -> list[dict]:
    """``{"text", "label" (class index), "rationales"}`` per example, labels checked against the model's."""
    labels = encode_labels(dataset, model_labels, label_map)
    return [
        {"text": example.text, "label": label, "rationales": example.rationales or ()}
        for example, label in zip(dataset.examples, labels)
    ]


class RelevanceCollator:
    """Tokenises example dicts into a batch for ``RelevanceLoss``: the model's inputs, ``labels``,
    ``special_tokens_mask``, and ``rationale_mask`` from rationale character spans when any example
    has some (a fast tokenizer is needed for those: its offsets place the spans on tokens)."""

    def __init__(self, tokenizer, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, examples: list[dict]) -> dict:
        with_rationales = any(example.get("rationales") for example in examples)
        if with_rationales and not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("rationales need a fast tokenizer (its character offsets map them onto tokens)")
        encodings = self.tokenizer(
            [example["text"] for example in examples], padding=True, truncation=self.max_length is not None,
            max_length=self.max_length, return_tensors="pt", return_special_tokens_mask=True,
            return_offsets_mapping=with_rationales,
        )
        batch = {k: v for k, v in encodings.items() if k != "offset_mapping"}
        batch["labels"] = torch.tensor([int(example["label"]) for example in examples])
        if with_rationales:
            offsets = encodings["offset_mapping"]
            starts, ends = offsets[..., 0], offsets[..., 1]
            mask = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
            for row, example in enumerate(examples):
                for begin, end in example.get("rationales") or ():
                    mask[row] |= (starts[row] < end) & (ends[row] > begin)
            batch["rationale_mask"] = mask & ~batch["special_tokens_mask"].bool() & batch["attention_mask"].bool()
        return batch


def penalised_token_ids(tokenizer, words: Iterable[str]) -> list[int]:
    """Vocabulary ids of ``words`` (lower-cased too for an uncased tokenizer). Words that are no
    token of the vocabulary are named in a warning and skipped; none left is an error."""
    words = [w.strip() for w in words if w and w.strip()]
    if not words:
        raise ValueError("the word list is empty: give the tokens whose relevance to penalise")
    vocabulary = tokenizer.get_vocab()
    uncased = tokenizer.tokenize("Hello World") == tokenizer.tokenize("hello world")
    ids, missing = [], []
    for word in words:
        for candidate in (word, word.lower()) if uncased else (word,):
            if candidate in vocabulary:
                ids.append(vocabulary[candidate])
                break
        else:
            missing.append(word)
    if missing:
        message = (
            f"{len(missing)} of {len(words)} words are not tokens of the model's vocabulary and are skipped: "
            f"{', '.join(missing)}. A word the tokenizer splits into pieces is penalised through its pieces "
            "(tokenizer.tokenize(word))"
        )
        if len(missing) == len(words):
            raise ValueError(message.replace("are skipped", "nothing is left to penalise"))
        warnings.warn(message, stacklevel=2)
    return sorted(set(ids))


def audit_words(report: str | Path | Mapping, kinds: Iterable[str] = ("shortcut",)) -> list[str]:
    """The flagged words of an audit report (report.json or its dict): ``kinds`` among
    "shortcut", "over_relevant"; special tokens are left out (they are not content)."""
    if not isinstance(report, Mapping):
        path = Path(report)
        if not path.exists():
            raise FileNotFoundError(f"no audit report at {path} (relevancy audit writes report.json)")
        report = json.loads(path.read_text(encoding="utf-8"))
    flags = report.get("flags")
    if flags is None:
        raise ValueError("not an audit report: it has no 'flags' (give the report.json that relevancy audit wrote)")
    words = []
    for kind in kinds:
        if kind == "shortcut":
            found = flags.get("shortcut", [])
        elif kind == "over_relevant":
            found = flags.get("over_relevant", {}).get("word", [])
        else:
            raise ValueError(f"unknown audit flag {kind!r}: use shortcut or over_relevant")
        words += [f["item"] for f in found if not f.get("stats", {}).get("special")]
    if not words:
        raise ValueError(f"the audit flagged no {' or '.join(kinds)} words: nothing to penalise")
    return list(dict.fromkeys(words))

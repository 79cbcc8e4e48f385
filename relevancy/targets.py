"""What to explain: small callables from the model's logits to one score per sample.

The relevance pass starts from d score / d logits: a one-hot for a class (as the paper does, not
multiplied by the logit), e_a - e_b for a contrast.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


class Target:
    """Maps logits (B, C) to the explained score (B,)."""

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classes(self, logits: torch.Tensor) -> torch.Tensor | None:
        """The explained class per sample, where there is one."""
        return None

    def describe(self, labels: dict[int, str]) -> str:
        return type(self).__name__


def _label(index: int, labels: dict[int, str]) -> str:
    return labels.get(int(index), str(int(index)))


def _last(logits: torch.Tensor) -> torch.Tensor:
    """A language model's logits (B, N, V) are read at the last position: the next token."""
    return logits[:, -1] if logits.dim() == 3 else logits


class Predicted(Target):
    """The class the model predicts (the default)."""

    def __call__(self, logits):
        logits = _last(logits)
        return logits.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)

    def classes(self, logits):
        return _last(logits).argmax(-1)

    def describe(self, labels):
        return "predicted class"

    def fixed(self, logits: torch.Tensor) -> "ClassIndex":
        """This target pinned to the classes predicted from ``logits`` (the real input's): a method that
        forwards other inputs (integrated gradients' path points) still explains this prediction."""
        return _PredictedClasses(self.classes(logits.detach()))


class ClassIndex(Target):
    """A class index, or one per sample."""

    def __init__(self, index: int | Sequence[int] | torch.Tensor) -> None:
        self.index = torch.as_tensor(index)

    def _indices(self, logits):
        logits = _last(logits)
        num_classes = logits.shape[-1]
        index = self.index.to(logits.device).long()
        if index.dim() == 0:
            index = index.expand(logits.shape[0])
        elif index.shape[0] != logits.shape[0]:
            raise ValueError(f"{index.shape[0]} target classes given for a batch of {logits.shape[0]}")
        bad = (index < 0) | (index >= num_classes)
        if bad.any():
            raise ValueError(
                f"target class {index[bad][0].item()} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
            )
        return index

    def __call__(self, logits):
        return _last(logits).gather(-1, self._indices(logits).unsqueeze(-1)).squeeze(-1)

    def classes(self, logits):
        return self._indices(logits)

    def describe(self, labels):
        if self.index.dim() == 0:
            return _label(self.index.item(), labels)
        return "the given classes"


class _PredictedClasses(ClassIndex):
    def describe(self, labels):
        return "predicted class"


class Contrast(Target):
    """Evidence for class ``a`` against class ``b``: logit_a - logit_b."""

    def __init__(self, a: int, b: int) -> None:
        self.a, self.b = ClassIndex(a), ClassIndex(b)

    def __call__(self, logits):
        return self.a(logits) - self.b(logits)

    def classes(self, logits):
        return self.a.classes(logits)

    def describe(self, labels):
        return f"{self.a.describe(labels)} vs {self.b.describe(labels)}"


class TokenAt(Target):
    """A language model's logit for ``token`` at sequence ``position`` (the token that follows it)."""

    def __init__(self, token: int, position: int) -> None:
        self.token = int(token)
        self.position = int(position)

    def __call__(self, logits):
        if logits.dim() != 3:
            raise ValueError("TokenAt targets need a language model's (batch, positions, vocabulary) logits")
        if not 0 <= self.token < logits.shape[-1]:
            raise ValueError(f"token id {self.token} is out of range: the vocabulary has {logits.shape[-1]} tokens")
        return logits[:, self.position, self.token]

    def classes(self, logits):
        return torch.full((logits.shape[0],), self.token, device=logits.device)

    def describe(self, labels):
        return f"token {self.token} after position {self.position}"


class Function(Target):
    """Any callable from logits to (B,) scores."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.function = function

    def __call__(self, logits):
        return self.function(logits)

    def describe(self, labels):
        return getattr(self.function, "__name__", "a custom target")


def as_target(spec, label_index: Callable[[str], int]) -> Target:
    """Read a target from what a user writes: None, 3, "positive", "positive vs negative", (a, b)."""
    if spec is None:
        return Predicted()
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ValueError("empty target: give a class index, a label name or 'a vs b'")
        if " vs " in text:
            a, b = (part.strip() for part in text.split(" vs ", 1))
            return Contrast(_index(a, label_index), _index(b, label_index))
        return ClassIndex(_index(text, label_index))
    if isinstance(spec, tuple) and len(spec) == 2:
        return Contrast(_index(spec[0], label_index), _index(spec[1], label_index))
    if isinstance(spec, (int, list, torch.Tensor)) and not isinstance(spec, bool):
        return ClassIndex(spec)
    if callable(spec):
        return Function(spec)
    raise TypeError(f"cannot use {spec!r} as a target: give None, a class index, a label name, 'a vs b' or a callable")


def _index(value, label_index) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.lstrip("-").isdigit():
        return int(text)
    return label_index(text)

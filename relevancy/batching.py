"""Length-bucketed batching for text jobs: a batch is padded to its longest document, so documents of
similar length are batched together. Sorting happens within windows of consecutive documents only,
which keeps memory flat on large data sets and lets each window's outputs be written back in the
input's order (resume and reports read the records in that order)."""

from __future__ import annotations

from typing import Iterator, Sequence

DEFAULT_WINDOW = 1024  # documents sorted together; batches never span two windows


def windows(count: int, window: int) -> Iterator[range]:
    """Consecutive ranges of at most ``window`` positions (one range for ``window`` <= 0)."""
    step = window if window > 0 else max(count, 1)
    for start in range(0, count, step):
        yield range(start, min(start + step, count))


def batches(lengths: Sequence[int], batch_size: int, bucket: bool = True) -> list[list[int]]:
    """Positions ``0..len(lengths)-1`` in batches of ``batch_size``: shortest first when ``bucket``
    (ties keep their input order), else in input order."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if bucket else list(range(len(lengths)))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def padded_tokens(lengths: Sequence[int], groups: list[list[int]]) -> int:
    """Tokens the model processes when each group is padded to its longest member."""
    return sum(len(group) * max(lengths[i] for i in group) for group in groups if group)


__all__ = ["DEFAULT_WINDOW", "batches", "padded_tokens", "windows"]

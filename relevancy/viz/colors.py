"""Colour maps in numpy: diverging for signed relevance, sequential for non-negative maps."""

from __future__ import annotations

import numpy as np

_DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]], dtype=float)
_SEQUENTIAL = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=float)


def normalise(scores, signed: bool) -> np.ndarray:
    """Signed: divide by max |s| (0 stays white). Unsigned: min-max to [0, 1]. Constant maps give 0."""
    scores = np.nan_to_num(np.asarray(scores, dtype=float))
    if signed:
        scale = np.abs(scores).max() if scores.size else 0.0
        return scores / scale if scale > 0 else np.zeros_like(scores)
    low, high = (scores.min(), scores.max()) if scores.size else (0.0, 0.0)
    return (scores - low) / (high - low) if high > low else np.zeros_like(scores)


def colour(values: np.ndarray, signed: bool) -> np.ndarray:
    """uint8 RGB for normalised values (signed in [-1, 1], unsigned in [0, 1])."""
    table = _DIVERGING if signed else _SEQUENTIAL
    position = (np.clip(values, -1, 1) + 1) / 2 if signed else np.clip(values, 0, 1)
    scaled = position * (len(table) - 1)
    low = np.floor(scaled).astype(int).clip(0, len(table) - 2)
    fraction = (scaled - low)[..., None]
    return (table[low] * (1 - fraction) + table[low + 1] * fraction).round().astype(np.uint8)

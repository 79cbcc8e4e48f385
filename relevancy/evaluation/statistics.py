"""Error bars for evaluation tables: percentile-bootstrap confidence intervals over items (documents,
images), and paired comparisons of two methods on the same items.

A data set's value of a metric is a statistic of its items (a mean, or e.g. the AUC of a mean
curve). Resampling the items with replacement and recomputing the statistic gives its sampling
distribution; the 2.5 and 97.5 percentiles bound the 95 % interval. A paired comparison resamples
the *same* items for both methods and bounds the difference, so the items' shared difficulty
cancels; the difference is significant only when its interval excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A statistic on all items and its bootstrap interval (NaN bounds when there are no items)."""

    estimate: float
    low: float
    high: float
    n: int

    def excludes(self, value: float = 0.0) -> bool:
        return not math.isnan(self.low) and (value < self.low or value > self.high)

    def format(self, digits: int = 4) -> str:
        if math.isnan(self.estimate):
            return ""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class Comparison:
    """``a − b`` on the same items: the difference, its interval, and whether the interval excludes 0."""

    difference: Interval

    @property
    def significant(self) -> bool:
        return self.difference.excludes(0.0)


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n) item indices drawn with replacement (one row per bootstrap sample)."""
    if n < 1:
        raise ValueError("no items to resample")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
              seed: int = 0) -> Interval:
    """Percentile-bootstrap interval of ``statistic(indices)`` over ``n`` items; ``statistic`` takes an
    index array (all items: ``np.arange(n)``) and returns the data set's value on those items."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    estimate = float(statistic(np.arange(n)))
    samples = np.array([statistic(rows) for rows in resample_indices(n, resamples, seed)], dtype=np.float64)
    return _percentile_interval(estimate, samples, n, (1 - confidence) / 2 * 100)


def mean_interval(values: Sequence[float], **options) -> Interval:
    """Interval of the mean of per-item values (NaN items, where the metric is undefined, left out)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return bootstrap(lambda rows: values[rows].mean(), values.size, **options)


def paired_difference(a: Sequence[float], b: Sequence[float], **options) -> Comparison:
    """mean(a) − mean(b) over the items where both are defined, resampled in pairs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must be per item and aligned: {a.size} and {b.size} values")
    both = ~np.isnan(a) & ~np.isnan(b)
    differences = a[both] - b[both]
    return Comparison(bootstrap(lambda rows: differences[rows].mean(), differences.size, **options))


def paired_statistic_difference(statistic_a: Callable[[np.ndarray], float], statistic_b: Callable[[np.ndarray], float], n: int,
                                **options) -> Comparison:
    """statistic_a − statistic_b on the same resampled items, for statistics that are not plain means
    (e.g. the AUC of a mean perturbation curve); both index the same ``n`` aligned items."""
    return Comparison(bootstrap(lambda rows: statistic_a(rows) - statistic_b(rows), n, **options))


# -- whole results tables ------------------------------------------------------------------------
@dataclass
class RowIntervals:
    """One table row's intervals per method and, per other method, its paired difference from the
    reference method (method − reference; the row's direction says which sign is better)."""

    test: str
    name: str
    higher_is_better: bool
    intervals: dict  # method -> Interval
    versus_reference: dict  # method -> Comparison


def table_intervals(records: list[dict], methods: list[str], tests: list[str], *, reference: str | None = "transformer_attribution",
                    resamples: int = 1000, confidence: float = CONFIDENCE, seed: int = 0) -> list[RowIntervals]:
    """Bootstrap intervals for every row that ``runner.aggregate`` builds from item ``records``: per
    test, the items every method has a record for are resampled (the same draws for all methods, so
    differences are paired) and each row is recomputed exactly as the table computes it."""
    from .metrics import HIGHER_IS_BETTER
    from .runner import _summarise

    rows: list[RowIntervals] = []
    tail = (1 - confidence) / 2 * 100
    for test in tests:
        present = [m for m in methods if any(r["method"] == m and r["test"] == test for r in records)]
        if not present:
            continue
        by_method = {m: {r["id"]: r for r in records if r["method"] == m and r["test"] == test} for m in present}
        ids = sorted(set.intersection(*(set(v) for v in by_method.values())))
        if not ids:
            continue
        aligned = {m: [by_method[m][i] for i in ids] for m in present}

        def values(rows_index) -> dict:
            out = {}
            for m in present:
                for name, metric, value in _summarise(test, [aligned[m][i] for i in rows_index])[0]:
                    out[(name, metric, m)] = value
            return out

        full = values(np.arange(len(ids)))
        draws = [values(rows_index) for rows_index in resample_indices(len(ids), resamples, seed)]
        names = list(dict.fromkeys((name, metric) for name, metric, _ in full))
        for name, metric in names:
            intervals, versus = {}, {}
            for m in present:
                samples = np.array([d[(name, metric, m)] for d in draws], dtype=np.float64)
                intervals[m] = _percentile_interval(full[(name, metric, m)], samples, len(ids), tail)
                if reference in present and m != reference:
                    reference_samples = np.array([d[(name, metric, reference)] for d in draws], dtype=np.float64)
                    estimate = full[(name, metric, m)] - full[(name, metric, reference)]
                    versus[m] = Comparison(_percentile_interval(estimate, samples - reference_samples, len(ids), tail))
            rows.append(RowIntervals(test, name, HIGHER_IS_BETTER[metric], intervals, versus))
    return rows


def _percentile_interval(estimate: float, samples: np.ndarray, n: int, tail: float) -> Interval:
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return Interval(float(estimate), math.nan, math.nan, n)
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), n)


def intervals_markdown(rows: list[RowIntervals], methods: list[str], reference: str | None = "transformer_attribution",
                       digits: int = 4, row_label: str = "test") -> str:
    """Two Markdown tables: each row's value [95 % CI] per method, and each method's paired difference
    from the reference [95 % CI], bold where the interval excludes 0 (then marked better or worse in
    the row's direction)."""
    shown = [m for m in methods if any(m in r.intervals for r in rows)]
    lines = [f"| {row_label} | metric | | " + " | ".join(shown) + " |", "|---|---|---|" + "---|" * len(shown)]
    for row in rows:
        cells = [row.intervals[m].format(digits) if m in row.intervals else "" for m in shown]
        lines.append(f"| {row.test} | {row.name} | {'↑' if row.higher_is_better else '↓'} | " + " | ".join(cells) + " |")
    others = [m for m in shown if any(m in r.versus_reference for r in rows)]
    if reference and any(r.versus_reference for r in rows):
        lines += ["", f"Paired difference, method − {reference} [95 % CI]; **bold**: the interval excludes 0 "
                  "(better / worse in the row's direction):", "",
                  f"| {row_label} | metric | | " + " | ".join(others) + " |", "|---|---|---|" + "---|" * len(others)]
        for row in rows:
            cells = []
            for m in others:
                comparison = row.versus_reference.get(m)
                if comparison is None or math.isnan(comparison.difference.estimate):
                    cells.append("")
                    continue
                text = comparison.difference.format(digits)
                if comparison.significant:
                    better = (comparison.difference.estimate > 0) == row.higher_is_better
                    text = f"**{text}** {'better' if better else 'worse'}"
                cells.append(text)
            lines.append(f"| {row.test} | {row.name} | {'↑' if row.higher_is_better else '↓'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def intervals_json(rows: list[RowIntervals]) -> list[dict]:
    """JSON-ready form of ``table_intervals``' rows (NaN as None)."""
    def interval(value: Interval) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in
                {"estimate": value.estimate, "low": value.low, "high": value.high, "n": value.n}.items()}

    return [
        {
            "test": row.test, "metric": row.name, "higher_is_better": row.higher_is_better,
            "intervals": {m: interval(v) for m, v in row.intervals.items()},
            "versus_reference": {m: {**interval(c.difference), "significant": c.significant} for m, c in row.versus_reference.items()},
        }
        for row in rows
    ]

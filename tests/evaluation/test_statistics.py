"""Bootstrap intervals and paired comparisons against hand cases and sampling theory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from relevancy.evaluation import metrics
from relevancy.evaluation.runner import aggregate
from relevancy.evaluation.statistics import (
    bootstrap,
    intervals_markdown,
    mean_interval,
    paired_difference,
    paired_statistic_difference,
    resample_indices,
    table_intervals,
)


def test_constant_values_have_a_point_interval():
    interval = mean_interval([0.3] * 20)
    assert (interval.estimate, interval.low, interval.high, interval.n) == pytest.approx((0.3, 0.3, 0.3, 20))


def test_nan_items_are_left_out():
    interval = mean_interval([1.0, math.nan, 3.0])
    assert interval.n == 2 and interval.estimate == 2.0 and 1.0 <= interval.low <= interval.high <= 3.0


def test_no_items_give_nan():
    interval = mean_interval([])
    assert interval.n == 0 and math.isnan(interval.estimate) and not interval.excludes(0.0)


def test_the_interval_of_a_mean_has_the_normal_theory_width():
    # n = 400 draws: the 95 % interval of the mean is about ±1.96 s / sqrt(n) around the sample mean
    values = np.random.default_rng(1).normal(2.0, 3.0, 400)
    interval = mean_interval(values, resamples=4000)
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.high - interval.low == pytest.approx(2 * half_width, rel=0.1)
    assert (interval.low + interval.high) / 2 == pytest.approx(values.mean(), abs=0.1 * half_width)


def test_the_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    covered = [mean_interval(rng.normal(0.0, 1.0, 60), resamples=400, seed=s).excludes(0.0) is False for s in range(200)]
    assert 0.88 <= np.mean(covered) <= 0.99


def test_resampling_is_seeded_and_with_replacement():
    draws = resample_indices(5, resamples=50, seed=3)
    assert draws.shape == (50, 5) and draws.min() >= 0 and draws.max() <= 4
    assert np.array_equal(draws, resample_indices(5, resamples=50, seed=3))
    assert any(len(set(row)) < 5 for row in draws)  # some item drawn twice


def test_a_constant_shift_is_a_significant_difference():
    b = np.random.default_rng(4).normal(0, 1, 30)
    comparison = paired_difference(b + 0.1, b)
    assert comparison.difference.estimate == pytest.approx(0.1)
    assert comparison.difference.low == pytest.approx(0.1) and comparison.difference.high == pytest.approx(0.1)
    assert comparison.significant
    assert not paired_difference(b, b).significant


def test_pairing_removes_the_items_shared_difficulty():
    # items differ a lot (sd 10); method a is 0.3 better on every item, up to small noise (sd 0.1):
    # unpaired intervals overlap, the paired difference is clearly above 0
    rng = np.random.default_rng(5)
    difficulty = rng.normal(0, 10, 50)
    a, b = difficulty + 0.3 + rng.normal(0, 0.1, 50), difficulty + rng.normal(0, 0.1, 50)
    ia, ib = mean_interval(a), mean_interval(b)
    assert ia.low < ib.high  # the separate intervals cannot tell them apart
    comparison = paired_difference(a, b)
    assert comparison.significant and comparison.difference.low > 0.2


def test_no_difference_is_rarely_significant():
    rng = np.random.default_rng(6)
    significant = [paired_difference(rng.normal(0, 1, 40), rng.normal(0, 1, 40), resamples=400, seed=s).significant for s in range(100)]
    assert np.mean(significant) <= 0.12


def test_paired_values_must_align():
    with pytest.raises(ValueError, match="aligned"):
        paired_difference([1.0, 2.0], [1.0])


def test_a_statistic_that_is_not_a_mean():
    # the AUC of a mean curve: the estimate is the full data's, each draw recomputes the curve
    curves = np.random.default_rng(7).random((30, len(metrics.PERTURBATION_FRACTIONS)))
    interval = bootstrap(lambda rows: metrics.perturbation_auc(curves[rows].mean(0)), len(curves))
    assert interval.estimate == pytest.approx(np.trapezoid(curves.mean(0), metrics.PERTURBATION_FRACTIONS) * 100)
    assert interval.low < interval.estimate < interval.high
    same = paired_statistic_difference(lambda r: curves[r].mean(), lambda r: curves[r].mean(), len(curves))
    assert same.difference.low == same.difference.high == 0.0 and not same.significant


def _records(method: str, values, curves) -> list[dict]:
    records = []
    for i, (value, curve) in enumerate(zip(values, curves)):
        records.append({"method": method, "test": "faithfulness", "id": f"d{i:02d}", "comprehensiveness": float(value), "sufficiency": 0.0})
        records.append({"method": method, "test": "perturbation", "id": f"d{i:02d}",
                        **{d: {"correct": list(curve), "probability": list(curve), "logit": list(curve)} for d in ("positive", "negative")}})
    return records


def test_table_intervals_recompute_each_row_as_the_table_does():
    rng = np.random.default_rng(8)
    n, steps = 25, len(metrics.PERTURBATION_FRACTIONS)
    ta_values, other_values = rng.random(n), rng.random(n) + 0.5
    ta_curves, other_curves = rng.random((n, steps)), rng.random((n, steps))
    records = _records("transformer_attribution", ta_values, ta_curves) + _records("rollout", other_values, other_curves)
    methods, tests = ["transformer_attribution", "rollout"], ["faithfulness", "perturbation"]
    rows = table_intervals(records, methods, tests, resamples=500)
    table = aggregate(records, methods, tests)
    for row in rows:
        for method, interval in row.intervals.items():
            assert interval.estimate == pytest.approx(table.value(row.test, row.name, method))
            assert interval.n == n
    by_name = {row.name: row for row in rows}
    # a mean row: the same draws as mean_interval of the per-item values (same seed, same n)
    comprehensiveness = by_name["comprehensiveness (AOPC)"]
    assert comprehensiveness.intervals["rollout"] == mean_interval(other_values, resamples=500)
    assert comprehensiveness.versus_reference["rollout"].significant  # 0.5 better on average, n = 25
    expected = paired_difference(other_values, ta_values, resamples=500).difference
    versus = comprehensiveness.versus_reference["rollout"].difference  # mean(a) - mean(b) there, mean(a - b) here
    assert (versus.estimate, versus.low, versus.high) == pytest.approx((expected.estimate, expected.low, expected.high), abs=1e-12)
    # an AUC-of-the-mean-curve row, recomputed independently
    positive = by_name["positive AUC (accuracy)"]
    expected = bootstrap(lambda r: np.trapezoid(other_curves[r].mean(0), metrics.PERTURBATION_FRACTIONS) * 100, n, resamples=500)
    assert positive.intervals["rollout"].low == pytest.approx(expected.low)
    assert positive.intervals["rollout"].high == pytest.approx(expected.high)
    markdown = intervals_markdown(rows, methods)
    assert "**" in markdown and "better" in markdown and "rollout" in markdown


def test_table_intervals_pair_only_items_every_method_has():
    rng = np.random.default_rng(9)
    records = _records("transformer_attribution", rng.random(10), rng.random((10, 10))) + _records("rollout", rng.random(6), rng.random((6, 10)))
    rows = table_intervals(records, ["transformer_attribution", "rollout"], ["faithfulness"], resamples=100)
    assert {interval.n for row in rows for interval in row.intervals.values()} == {6}

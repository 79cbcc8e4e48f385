"""Every metric against hand-computed cases: a perfect map, an inverted map, a constant map, ties."""

import math

import numpy as np
import pytest

from relevancy.evaluation import metrics
from relevancy.evaluation.metrics import (
    SegmentationAccumulator,
    average_precision,
    class_specificity,
    comprehensiveness,
    perturbation_auc,
    rationale_scores,
    ranking,
    segmentation_stats,
    sufficiency,
    top_fraction_count,
    top_k_prf,
    word_scores,
)


def test_every_table_metric_has_a_direction():
    assert metrics.arrow("perturbation_auc_positive") == "↓"
    assert metrics.arrow("perturbation_auc_negative") == "↑"
    assert metrics.arrow("sufficiency") == "↓"
    assert metrics.arrow("comprehensiveness") == "↑"
    with pytest.raises(KeyError, match="HIGHER_IS_BETTER"):
        metrics.arrow("unknown")


def test_ranking_breaks_ties_by_position_in_both_directions():
    assert ranking([1, 1, 0]).tolist() == [0, 1, 2]
    assert ranking([1, 1, 0], most_relevant_first=False).tolist() == [2, 0, 1]
    assert ranking([[0, 0, 0]]).tolist() == [[0, 1, 2]]


# -- perturbation AUC -------------------------------------------------------------------------------
def test_perturbation_auc_is_the_trapezoid_over_0_to_0_9_times_100():
    assert perturbation_auc([1.0] * 10) == pytest.approx(90.0)  # never fails: the maximum
    assert perturbation_auc([1.0] + [0.0] * 9) == pytest.approx(5.0)  # fails at the first step
    x = np.arange(10) / 10
    assert perturbation_auc(1 - x) == pytest.approx(100 * (0.9 - 0.9**2 / 2))  # exact for a line
    assert perturbation_auc([0.5, 0.5], fractions=[0.0, 0.5]) == pytest.approx(25.0)


def test_perturbation_auc_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one value per fraction"):
        perturbation_auc([1.0] * 9)
    with pytest.raises(ValueError, match="increase"):
        perturbation_auc([1, 1], fractions=[0.5, 0.1])


# -- average precision ------------------------------------------------------------------------------
def test_average_precision_perfect_inverted_constant():
    labels = [1, 1, 0, 0]
    assert average_precision([3, 2, 1, 0], labels) == pytest.approx(1.0)
    # inverted: positives at ranks 3 and 4 -> 0.5 * 1/3 + 0.5 * 2/4
    assert average_precision([0, 1, 2, 3], labels) == pytest.approx(0.5 / 3 + 0.25)
    # constant: one threshold, precision = prevalence
    assert average_precision([7, 7, 7, 7], labels) == pytest.approx(0.5)


def test_average_precision_groups_ties_into_one_threshold():
    # threshold 2: no hit; threshold 1: both positives among the top 3
    assert average_precision([2, 1, 1], [0, 1, 1]) == pytest.approx(2 / 3)
    # the order inside a tie does not matter
    assert average_precision([1, 1, 0, 0], [1, 0, 1, 0]) == average_precision([1, 1, 0, 0], [0, 1, 0, 1]) == pytest.approx(0.5)
    # -inf scores (words cut by truncation) tie with each other, at the bottom
    assert average_precision([1, -np.inf, -np.inf], [0, 1, 1]) == pytest.approx(2 / 3)


def test_average_precision_without_positives_is_nan():
    assert math.isnan(average_precision([1, 2], [0, 0]))


# -- segmentation -------------------------------------------------------------------------------------
MASK = np.array([[1, 0], [0, 0]], dtype=bool)


def test_segmentation_perfect_map():
    stats = segmentation_stats(np.array([[5.0, 1.0], [1.0, 1.0]]), MASK)
    assert stats == {"correct": 4, "pixels": 4, "intersection": [3, 1], "union": [3, 1], "ap": pytest.approx(1.0)}


def test_segmentation_inverted_map():
    stats = segmentation_stats(1.0 - MASK, MASK)
    assert stats["correct"] == 0
    assert stats["intersection"] == [0, 0] and stats["union"] == [4, 4]
    assert stats["ap"] == pytest.approx(0.25)  # the positive comes after a three-way tie


def test_segmentation_constant_map_has_no_foreground():
    stats = segmentation_stats(np.full((2, 2), 3.0), MASK)
    assert stats["correct"] == 3
    assert stats["intersection"] == [3, 0] and stats["union"] == [4, 1]
    assert stats["ap"] == pytest.approx(0.25)


def test_segmentation_accumulates_over_the_data_set():
    accumulator = SegmentationAccumulator()
    accumulator.add(np.array([[5.0, 1.0], [1.0, 1.0]]), MASK)
    accumulator.add(np.full((2, 2), 3.0), MASK)
    accumulator.add(np.eye(2), np.zeros((2, 2), dtype=bool))  # no foreground: no AP
    result = accumulator.result()
    # pixels: 4 + 3 + (2: the map's diagonal is foreground, the mask has none)
    assert result["pixel_accuracy"] == pytest.approx(9 / 12)
    assert result["iou_background"] == pytest.approx((3 + 3 + 2) / (3 + 4 + 4))
    assert result["iou_foreground"] == pytest.approx((1 + 0 + 0) / (1 + 1 + 2))
    assert result["miou"] == pytest.approx((result["iou_background"] + result["iou_foreground"]) / 2)
    assert result["map"] == pytest.approx((1.0 + 0.25) / 2)
    assert accumulator.images_without_foreground == 1


def test_segmentation_errors():
    with pytest.raises(ValueError, match="upsample"):
        segmentation_stats(np.zeros((2, 2)), np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="no image"):
        SegmentationAccumulator().result()


# -- rationales -----------------------------------------------------------------------------------------
def test_word_score_is_the_max_over_its_pieces():
    scores = word_scores([9, 1, 3, 2, 9], [None, 0, 0, 1, None], 3)
    assert scores.tolist() == [3, 2, -np.inf]  # word 2 was cut: it has no token


def test_top_k_prf_perfect_inverted_constant():
    evidence = [1, 1, 0, 0, 0]
    assert top_k_prf([5, 4, 3, 2, 1], evidence, 2) == pytest.approx((1.0, 1.0, 1.0))
    assert top_k_prf([1, 2, 3, 4, 5], evidence, 2) == pytest.approx((0.0, 0.0, 0.0))
    # constant: ties go to the earliest words
    assert top_k_prf([0, 0, 0, 0, 0], evidence, 2) == pytest.approx((1.0, 1.0, 1.0))
    assert top_k_prf([0, 0, 0, 0, 0], evidence[::-1], 2) == pytest.approx((0.0, 0.0, 0.0))
    # k = 3 with a perfect map: P = 2/3, R = 1, F1 = 0.8
    assert top_k_prf([5, 4, 3, 2, 1], evidence, 3) == pytest.approx((2 / 3, 1.0, 0.8))


def test_top_k_never_takes_words_cut_by_truncation():
    precision, recall, f1 = top_k_prf([1.0, -np.inf, -np.inf], [1, 1, 0], 5)
    assert (precision, recall, f1) == pytest.approx((1.0, 0.5, 2 / 3))


def test_rationale_scores_for_each_k_and_auprc():
    scores = np.arange(100, 0, -1, dtype=float)
    evidence = np.zeros(100, dtype=bool)
    evidence[:10] = True
    result = rationale_scores(scores, evidence)
    assert sorted(result["prf"]) == list(range(5, 85, 5))
    assert result["prf"][10] == pytest.approx((1.0, 1.0, 1.0))
    assert result["prf"][5] == pytest.approx((1.0, 0.5, 2 / 3))
    assert result["prf"][20][2] == pytest.approx(2 * 0.5 / 1.5)
    assert result["auprc"] == pytest.approx(1.0)
    assert rationale_scores(-scores, evidence)["auprc"] < 0.2


# -- faithfulness -------------------------------------------------------------------------------------------
def test_comprehensiveness_and_sufficiency_are_aopc():
    assert comprehensiveness(0.9, [0.8, 0.5, 0.4, 0.2, 0.1]) == pytest.approx(0.5)
    assert sufficiency(0.9, [0.9] * 5) == pytest.approx(0.0)
    assert sufficiency(0.9, [0.4] * 5) == pytest.approx(0.5)


def test_top_fraction_count_rounds_up_to_at_least_one():
    assert [top_fraction_count(10, f) for f in metrics.ERASER_BINS] == [1, 1, 1, 2, 5]
    assert top_fraction_count(200, 0.05) == 10
    assert top_fraction_count(3, 0.5) == 2
    assert top_fraction_count(0, 0.5) == 0


# -- class specificity -----------------------------------------------------------------------------------------
def test_class_specificity():
    own = np.array([[1, 1], [0, 0]], dtype=bool)
    other = ~own
    assert class_specificity(np.array([[1.0, 2.0], [0.0, 0.0]]), own, other) == pytest.approx(1.0)  # perfect
    assert class_specificity(np.array([[0.0, 0.0], [1.0, 2.0]]), own, other) == pytest.approx(0.0)  # inverted
    assert class_specificity(np.full((2, 2), 0.3), own, other) == pytest.approx(0.5)  # constant
    assert class_specificity(np.array([[1.0, -5.0], [-1.0, 1.0]]), own, other) == pytest.approx(0.5)  # negatives ignored
    assert math.isnan(class_specificity(-np.ones((2, 2)), own, other))

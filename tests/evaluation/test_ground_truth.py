"""The ground-truth metrics against hand computations, and score_maps on the committed text task model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from relevancy.evaluation.ground_truth import evidence_scores, precision_at_k, relevance_mass, score_maps

TEXT_MODEL = Path(__file__).resolve().parents[2] / "benchmarks" / "ground_truth_models" / "text"


def test_precision_at_k_by_hand():
    # top 2 of (0.9, 0.1, 0.8, 0.3) are units 0 and 2; only unit 0 is evidence
    assert precision_at_k([0.9, 0.1, 0.8, 0.3], [1, 0, 0, 1]) == 0.5
    assert precision_at_k([0.9, 0.1, 0.8, 0.3], [1, 0, 1, 0]) == 1.0
    assert precision_at_k([0.9, 0.1, 0.8, 0.3], [1, 0, 0, 1], k=4) == 0.5
    assert precision_at_k([0.9, 0.1, 0.8, 0.3], [0, 1, 0, 0], k=1) == 0.0


def test_precision_at_k_ties_take_the_earlier_unit():
    # a constant map has no information: the first k units are taken, whatever the evidence
    assert precision_at_k([1.0, 1.0, 1.0, 1.0], [0, 0, 1, 1]) == 0.0
    assert precision_at_k([1.0, 1.0, 1.0, 1.0], [1, 1, 0, 0]) == 1.0


def test_signed_maps_rank_negative_evidence_last():
    # the evidence scored strongly against the class is not "found" by a large |score|
    assert precision_at_k([-5.0, 0.1, 0.2], [1, 0, 0]) == 0.0


def test_relevance_mass_counts_positive_relevance_only():
    # positive parts (2, 0, 1, 1): 2 of 4 on the evidence
    assert relevance_mass([2.0, -1.0, 1.0, 1.0], [1, 1, 0, 0]) == 0.5
    assert relevance_mass([0.0, 3.0], [0, 1]) == 1.0
    assert math.isnan(relevance_mass([-1.0, -2.0], [0, 1]))  # supports nothing
    assert math.isnan(relevance_mass([1.0, 2.0], [0, 0]))  # no evidence


def test_evidence_scores_by_hand():
    # ranking 0.9 (e), 0.8, 0.7 (e), 0.6: AP = 1/1 * 1/2 + 2/3 * 1/2
    result = evidence_scores([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    assert result["auprc"] == pytest.approx(0.5 + 1 / 3)
    assert result["precision_at_k"] == 0.5
    assert result["mass"] == pytest.approx(1.6 / 3.0)


def test_units_leave_out_positions():
    # without unit 0 (a [CLS] holding most of the mass), the evidence holds all of the rest
    scores, evidence, units = [10.0, 1.0, 0.0, 0.0], [0, 1, 0, 0], [0, 1, 1, 1]
    assert evidence_scores(scores, evidence)["mass"] == pytest.approx(1 / 11)
    assert evidence_scores(scores, evidence, units) == {"precision_at_k": 1.0, "auprc": 1.0, "mass": 1.0}


def test_undefined_metrics_are_nan():
    result = evidence_scores([0.3, 0.2], [0, 0])
    assert all(math.isnan(v) for v in result.values())


@pytest.mark.parametrize(
    ("scores", "evidence", "units", "message"),
    [
        ([1.0, 2.0], [1, 0, 0], None, "one evidence flag per map unit"),
        ([1.0, math.nan], [1, 0], None, "NaN or infinite"),
        ([1.0, 2.0], [1, 0], [0, 1], "outside the scored units"),
    ],
)
def test_bad_input_is_named(scores, evidence, units, message):
    with pytest.raises(ValueError, match=message):
        evidence_scores(scores, evidence, units)


def test_k_out_of_range_is_refused():
    with pytest.raises(ValueError, match="k must be between 1 and the number of units"):
        precision_at_k([1.0, 2.0], [1, 0], k=3)


@pytest.fixture(scope="module")
def text_task_model():
    if not (TEXT_MODEL / "config.json").is_file():
        pytest.skip(f"no ground-truth text model at {TEXT_MODEL}: run scripts/make_ground_truth.py --task text")
    from relevancy.adapters.loading import load

    return load(str(TEXT_MODEL))


def test_score_maps_matches_the_maps_scored_by_hand(text_task_model):
    """score_maps = relevancy.attribute + evidence_scores over the non-special tokens, per target."""
    import relevancy

    model, tokenizer = text_task_model
    texts = ["bako crimson dumi ruby navy kepa", "azure lame cobalt sapphire rubo honey"]
    inputs = dict(tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True))
    words = [text.split() for text in texts]
    triggers = {"red": {"crimson", "ruby"}, "blue": {"azure", "cobalt", "sapphire", "navy"}, "gold": {"honey"}}

    def mask(classes):  # (B, T): word i is token i + 1 ([CLS] first)
        out = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
        for b, (ws, name) in enumerate(zip(words, classes)):
            for i, w in enumerate(ws):
                out[b, i + 1] = w in triggers[name]
        return out

    labels = model.config.label2id
    targets = [None, torch.tensor([labels["blue"], labels["gold"]])]
    evidence = [mask(["red", "blue"]), mask(["blue", "gold"])]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    results = score_maps(model, inputs, "transformer_attribution", targets, evidence)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model_inputs = {k: v for k, v in inputs.items() if k != "special_tokens_mask"}
    units = model_inputs["attention_mask"].bool() & ~inputs["special_tokens_mask"].bool()
    for target, masks, per_item in zip(targets, evidence, results):
        attribution = relevancy.attribute(model, model_inputs, "transformer_attribution", target)
        for b in range(len(texts)):
            expected = evidence_scores(attribution.scores[b].numpy(), masks[b].numpy(), units[b].numpy())
            assert per_item[b]["precision_at_k"] == expected["precision_at_k"]
            assert per_item[b]["auprc"] == pytest.approx(expected["auprc"])
            assert per_item[b]["mass"] == pytest.approx(expected["mass"])
            assert per_item[b]["target_class"] == int(attribution.target_classes[b])
    assert [r["predicted"] for r in results[0]] == [labels["red"], labels["blue"]]  # the trained model reads the triggers


def test_score_maps_refuses_evidence_of_another_shape(text_task_model):
    model, tokenizer = text_task_model
    inputs = dict(tokenizer(["crimson bako"], return_tensors="pt"))
    with pytest.raises(ValueError, match="one flag per map unit"):
        score_maps(model, inputs, "rollout", [None], [np.zeros((1, 7), dtype=bool)])
    with pytest.raises(ValueError, match="one \\(B, units\\) mask per target"):
        score_maps(model, inputs, "rollout", [None, 0], [np.zeros((1, 4), dtype=bool)])

"""The probe's detectors catch what they claim to: a call that explains other logits, leaves the
model changed, gives NaN, or fails with a raw error (relevancy.attribute replaced by faulty ones)."""

from __future__ import annotations

import pytest
import torch

import relevancy
from relevancy.adapters.structure import describe
from relevancy.engine import Run
from relevancy.rules.base import Pass
from relevancy.targets import as_target
from relevancy.tracing import RelevanceScope, UnsupportedOperationError

from .probe import category, conservation, passes, probe_call
from .zoo import FAMILIES


@pytest.fixture(scope="module")
def bert():
    return FAMILIES["bert"].build()


def _faulty(monkeypatch, fault):
    real = relevancy.attribute

    def attribute(model, inputs, method):
        return fault(model, real(model, inputs, method))

    monkeypatch.setattr(relevancy, "attribute", attribute)


def test_a_correct_call_passes(bert):
    record = probe_call(*bert, "input_x_gradient")
    assert category(record) == "ok" and passes(record) == []


def test_other_logits_are_wrong_logits(bert, monkeypatch):
    def shifted(model, attribution):
        attribution.logits = attribution.logits + 1e-3
        return attribution

    _faulty(monkeypatch, shifted)
    record = probe_call(*bert, "input_x_gradient")
    assert record["status"] == "WRONG-LOGITS" and category(record) == "wrong"
    assert record["logits_difference"] > 0


def test_a_hook_left_behind_is_not_restored(bert, monkeypatch):
    handles = []

    def hooked(model, attribution):
        handles.append(model.bert.encoder.register_forward_hook(lambda *args: None))
        return attribution

    _faulty(monkeypatch, hooked)
    try:
        record = probe_call(*bert, "input_x_gradient")
    finally:
        handles[0].remove()
    assert record["restoration"] == ["module hooks changed"] and category(record) == "ok!"


def test_a_changed_weight_is_not_restored(bert, monkeypatch):
    model, inputs = FAMILIES["bert"].build()

    def edited(model, attribution):
        with torch.no_grad():
            model.classifier.bias.add_(1.0)
        return attribution

    _faulty(monkeypatch, edited)
    record = probe_call(model, inputs, "input_x_gradient")
    assert "state: classifier.bias changed" in record["restoration"]
    assert record["plain_logits_changed"]


def test_nan_scores_are_found(bert, monkeypatch):
    def poisoned(model, attribution):
        attribution.scores = attribution.scores * float("nan")
        return attribution

    _faulty(monkeypatch, poisoned)
    record = probe_call(*bert, "input_x_gradient")
    assert record["finite"] is False and "NaN/inf in the scores or logits" in passes(record)


@pytest.mark.parametrize(
    "error, clear",
    [(UnsupportedOperationError("no rule for `op`"), True), (TypeError("unsupported operand type(s)"), False),
     (RuntimeError("size mismatch"), False)],
)
def test_only_relevancy_errors_are_clear_refusals(bert, monkeypatch, error, clear):
    def raising(model, inputs, method):
        raise error  # raised here, in a test: not relevancy's code, except for relevancy's own class

    monkeypatch.setattr(relevancy, "attribute", raising)
    record = probe_call(*bert, "input_x_gradient")
    assert record["status"] == f"error: {type(error).__name__}: {error}"
    assert record["clear"] is clear


def test_a_value_error_raised_by_relevancy_is_clear(bert):
    model, inputs = bert
    empty = {**inputs, "attention_mask": inputs["attention_mask"] * torch.tensor([[1], [0]])}  # second text all padding
    record = probe_call(model, empty, "input_x_gradient")
    assert record["status"].startswith("error: ValueError: empty text") and record["clear"]


def test_conservation_reads_the_boundaries_the_relevance_pass_reaches():
    """The totals it reports at block 0 are those of a relevance pass run to block 0 directly."""
    model, inputs = FAMILIES["vit"].build()
    report = conservation(model, inputs)
    structure = describe(model)
    with RelevanceScope(model, rules=True, observers=[]) as scope:
        run = Run(model, structure, inputs, as_target(None, structure.label_index), scope)
        run.forward()
        at_block_0 = run.backward(Pass.RELEVANCE, to="blocks").sum((1, 2))
        run.release()
    assert report["boundaries"]["0"] == pytest.approx(at_block_0.tolist(), rel=1e-6)
    assert sorted(report["boundaries"], key=int) == [str(i) for i in range(len(structure.blocks) + 1)]
    assert report["seed_deviation"] < 1e-5  # the classifier head keeps the seed's total of 1

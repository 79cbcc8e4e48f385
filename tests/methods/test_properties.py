"""Properties every model and method must have: conservation, batch = one by one, finite maps."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import relevancy
from relevancy.adapters.structure import describe
from relevancy.engine import Run
from relevancy.rules.base import Pass
from relevancy.targets import ClassIndex
from relevancy.tracing import RelevanceScope
from tests.models import ALL_KINDS, build, inputs_for

METHODS = relevancy.available_methods()


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta", "vit", "deit"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_relevance_is_conserved_at_every_block_boundary(kind, attention):
    model = build(kind, attn_implementation=attention)
    inputs = inputs_for(model)
    with RelevanceScope(model) as scope:
        run = Run(model, describe(model), inputs, ClassIndex(1), scope)
        run.forward()
        run.backward(Pass.RELEVANCE)
        boundaries = run.boundaries[Pass.RELEVANCE]
    assert sorted(boundaries) == [0, 1, 2, 3]  # inputs of the three blocks and the output of the last
    start = run.seed.sum(-1)  # one-hot: 1 per sample
    for index, relevance in boundaries.items():
        torch.testing.assert_close(relevance.sum(-1), start, rtol=1e-3, atol=1e-3, msg=f"boundary {index}")


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_one_at_a_time(kind, method):
    # float64: LRP maps amplify float32 rounding (padded vs unpadded attention kernels) past 1e-4
    model = build(kind, dtype=torch.float64)
    inputs = inputs_for(model, batch=3)
    batched = relevancy.attribute(model, inputs, method, target=1)
    for index in range(3):
        single_inputs = {key: value[index : index + 1] for key, value in inputs.items()}
        if "attention_mask" in single_inputs:  # drop the padding: a single input is not padded
            length = int(single_inputs["attention_mask"].sum())
            single_inputs = {key: value[:, :length] for key, value in single_inputs.items()}
        single = relevancy.attribute(model, single_inputs, method, target=1)
        n = single.scores.shape[1]
        expected = single.scores[0]
        got = batched.scores[index, :n] if batched.kind == "tokens" else batched.scores[index]
        scale = expected.abs().max().clamp_min(1e-12)
        assert ((got - expected).abs().max() / scale) < 1e-6, (method, index)
        if batched.kind == "tokens":
            assert batched.scores[index, n:].abs().max() == 0 if n < batched.scores.shape[1] else True


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(ALL_KINDS),
    seed=st.integers(0, 10_000),
    method=st.sampled_from(METHODS),
    target=st.integers(0, 2),
)
def test_maps_are_finite(kind, seed, method, target):
    model = build(kind, seed=seed % 7)
    inputs = inputs_for(model, seed=seed)
    result = relevancy.attribute(model, inputs, method, target=target)
    assert torch.isfinite(result.scores).all()


def test_transformer_attribution_is_class_specific_on_random_model():
    model = build("vit", seed=3)
    inputs = inputs_for(model, batch=1)
    maps = [relevancy.attribute(model, inputs, "transformer_attribution", target=c).scores for c in range(3)]
    assert not torch.allclose(maps[0], maps[1])


def test_differentiable_maps_have_parameter_gradients():
    model = build("bert")
    inputs = inputs_for(model)
    for method in ("transformer_attribution", "gradient_x_attention"):
        result = relevancy.attribute(model, inputs, method, target=1, differentiable=True)
        assert result.scores.requires_grad
        weight = model.bert.encoder.layer[0].attention.self.query.weight
        (gradient,) = torch.autograd.grad(result.scores[:, 1:].sum(), weight)
        assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0

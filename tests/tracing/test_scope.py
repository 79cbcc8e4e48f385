"""The model comes back exactly as it was, errors included; bad input gets a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import relevancy
from relevancy.tracing import UnsupportedOperationError
from tests.models import ALL_KINDS, assert_unchanged, build, inputs_for, snapshot


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_every_method_leaves_the_model_as_it_was(kind, attention):
    model = build(kind, attn_implementation=attention)
    model.train()  # a model in training mode must come back in training mode
    next(model.parameters()).requires_grad_(False)  # a frozen parameter must stay frozen
    model.zero_grad()
    before = snapshot(model)
    for method in relevancy.available_methods():
        relevancy.attribute(model, inputs_for(model), method, target=1)
        assert_unchanged(model, before)


class _ExpLayer(nn.Module):
    def forward(self, x):
        return torch.exp(x)


def test_unsupported_operation_names_the_module_and_restores_the_model():
    model = build("bert")
    intermediate = model.bert.encoder.layer[1].intermediate
    original = intermediate.intermediate_act_fn
    intermediate.intermediate_act_fn = _ExpLayer()
    before = snapshot(model)
    with pytest.raises(UnsupportedOperationError) as error:
        relevancy.attribute(model, inputs_for(model), "transformer_attribution", target=1)
    assert "exp" in str(error.value) and "encoder.layer.1.intermediate.intermediate_act_fn" in str(error.value)
    assert "_ExpLayer" in str(error.value)
    assert_unchanged(model, before)
    intermediate.intermediate_act_fn = original


def test_gradient_methods_need_no_rules_for_unknown_operations():
    model = build("bert")
    model.bert.encoder.layer[1].intermediate.intermediate_act_fn = _ExpLayer()
    result = relevancy.attribute(model, inputs_for(model), "gradient_x_attention", target=1)
    assert torch.isfinite(result.scores).all()


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"input_ids": torch.zeros(1, 0, dtype=torch.long)}, "empty text"),
        ({"input_ids": torch.ones(1, 3, dtype=torch.long), "attention_mask": torch.zeros(1, 3, dtype=torch.long)}, "empty text"),
        ({"input_ids": torch.ones(3, dtype=torch.long)}, "shape"),
        ([1, 2, 3], "dict"),
    ],
)
def test_bad_text_input(inputs, message):
    model = build("bert")
    before = snapshot(model)
    with pytest.raises((ValueError, TypeError), match=message):
        relevancy.attribute(model, inputs, "transformer_attribution")
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "pixels, message",
    [(torch.randn(1, 3, 48, 48), "expects \\(32, 32\\)"), (torch.randn(1, 1, 32, 32), "1 channels"), (torch.randn(3, 32, 32), "shape")],
)
def test_bad_image_input(pixels, message):
    model = build("vit")
    with pytest.raises(ValueError, match=message):
        relevancy.attribute(model, {"pixel_values": pixels}, "transformer_attribution")


@pytest.mark.parametrize(
    "target, message", [(7, "out of range"), (-1, "out of range"), ("joyful", "unknown label 'joyful'"), ("", "empty target")]
)
def test_bad_target(target, message):
    model = build("bert")
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        relevancy.attribute(model, inputs_for(model), "transformer_attribution", target=target)
    assert_unchanged(model, before)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'lrp2'.*transformer_attribution"):
        relevancy.attribute(build("bert"), inputs_for(build("bert")), "lrp2")


def test_model_without_head_is_refused():
    model = build("vit").vit
    with pytest.raises(TypeError, match="no logits"):
        relevancy.attribute(model, {"pixel_values": torch.randn(1, 3, 32, 32)}, "rollout")


def test_targets_by_label_and_contrast():
    model = build("bert")
    inputs = inputs_for(model)
    by_name = relevancy.attribute(model, inputs, "transformer_attribution", target="positive")
    by_index = relevancy.attribute(model, inputs, "transformer_attribution", target=2)
    torch.testing.assert_close(by_name.scores, by_index.scores)
    contrast = relevancy.attribute(model, inputs, "full_lrp", target="positive vs negative")
    plain = relevancy.attribute(model, inputs, "full_lrp", target="positive")
    assert contrast.target_classes.tolist() == [2, 2]
    assert not torch.allclose(contrast.scores, plain.scores)


def test_linear_rule_reuses_the_forward_only_where_it_equals_x_w():
    """addmm with beta/alpha != 1 must not reuse its output as x W^T + bias: the relevance through it
    equals the alpha=1, beta=0 rule computed from scratch (which ignores bias and scales)."""
    from relevancy.rules.base import Pass
    from relevancy.rules.linear import AlphaBetaLinear
    from relevancy.tracing import RelevanceScope

    torch.manual_seed(0)
    x, weight, bias = torch.randn(5, 4, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    relevance = torch.rand(5, 3, dtype=torch.float64)
    expected, _ = AlphaBetaLinear().relevance(relevance, x, weight.t())
    for options in ({}, {"beta": 0.5, "alpha": 2.0}):
        with RelevanceScope(torch.nn.Identity()) as scope:
            leaf = x.clone().requires_grad_(True)
            with scope.tracing():
                output = torch.addmm(bias, scope.mark_input(leaf), weight, **options)
            scope.set_pass(Pass.RELEVANCE)
            (ours,) = torch.autograd.grad(output, leaf, relevance)
        assert torch.allclose(ours, expected, atol=1e-12), options

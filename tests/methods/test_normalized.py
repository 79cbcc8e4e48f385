"""``Attribution.normalized()``: the readout's own entry and padding at 0, each sample scaled to
max |score| = 1; with the special tokens left out, the values the terminal and HTML views show."""

from __future__ import annotations

import re

import pytest
import torch

import relevancy
from relevancy.targets import TokenAt
from tests.generation.test_llm import build as build_llm
from tests.models import build, inputs_for


def _expected(scores: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    kept = scores.masked_fill(zero, 0.0)
    return kept / kept.abs().flatten(1).amax(1).view(-1, *[1] * (kept.dim() - 1))


@pytest.mark.parametrize("method", ["transformer_attribution", "rollout", "input_x_gradient"])
def test_classifier_maps_leave_out_the_cls_entry_and_padding(method):
    model = build("bert")
    inputs = inputs_for(model, batch=2)  # the second sample is padded
    result = relevancy.attribute(model, inputs, method)
    assert result.readout.tolist() == [[True] + [False] * 6] * 2  # BERT reads [CLS]
    padding = inputs["attention_mask"] == 0
    zero = padding | result.readout
    torch.testing.assert_close(result.normalized(), _expected(result.scores, zero))
    normalized = result.normalized()
    assert (normalized[zero] == 0).all() and torch.allclose(normalized.abs().amax(1), torch.ones(2))


def test_leave_out_zeroes_more_positions_before_scaling():
    model = build("bert")
    inputs = inputs_for(model, batch=2)
    result = relevancy.attribute(model, inputs, "rollout")
    last_real = torch.zeros(2, 7, dtype=torch.bool)
    last_real[0, 6] = last_real[1, 4] = True
    zero = (inputs["attention_mask"] == 0) | result.readout | last_real
    torch.testing.assert_close(result.normalized(leave_out=last_real), _expected(result.scores, zero))


def test_causal_lm_reads_the_target_position():
    model = build_llm("llama")
    ids = torch.tensor([[5, 17, 42, 8, 99, 23, 61]])
    predicted = relevancy.attribute(model, {"input_ids": ids}, "transformer_attribution")
    assert predicted.readout[0].nonzero().flatten().tolist() == [6]
    at_three = relevancy.attribute(model, {"input_ids": ids}, "transformer_attribution", TokenAt(11, 3))
    assert at_three.readout[0].nonzero().flatten().tolist() == [3]
    torch.testing.assert_close(at_three.normalized(), _expected(at_three.scores, at_three.readout))


@pytest.mark.parametrize("kind, readout", [("vit", [0]), ("deit", [0, 1])])
def test_image_token_maps_leave_out_class_and_distillation_tokens(kind, readout):
    model = build(kind)
    result = relevancy.attribute(model, inputs_for(model, batch=1), "transformer_attribution")
    assert result.readout[0].nonzero().flatten().tolist() == readout
    torch.testing.assert_close(result.normalized(), _expected(result.scores, result.readout))


def test_pixel_maps_are_scaled_per_sample():
    model = build("vit")
    result = relevancy.attribute(model, inputs_for(model, batch=2), "full_lrp")
    assert result.kind == "pixels" and result.readout is None
    torch.testing.assert_close(result.normalized(), _expected(result.scores, torch.zeros_like(result.scores, dtype=torch.bool)))


@pytest.mark.parametrize("method", ["transformer_attribution", "full_lrp"])
def test_normalized_without_special_tokens_is_what_the_terminal_view_shows(method):
    from relevancy.adapters.default_model import load_default_model
    from relevancy.explainer import Explainer

    model, tokenizer = load_default_model()
    text = "The acting is superb, but the plot is a dull mess."
    encoded = tokenizer([text], return_tensors="pt", return_special_tokens_mask=True)
    special = encoded.pop("special_tokens_mask")
    normalized = relevancy.attribute(model, encoded, method).normalized(leave_out=special)[0]
    shown = Explainer(model, tokenizer)(text, method=method).to_terminal(use_color=False)
    marked = re.findall(r"(\S+)\[([+-]\d\.\d{3})\]", shown)  # the five strongest tokens with their values
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    strongest = normalized.abs().argsort(descending=True)[:5].tolist()
    assert sorted(marked) == sorted((tokens[i], f"{normalized[i].item():+.3f}") for i in strongest)

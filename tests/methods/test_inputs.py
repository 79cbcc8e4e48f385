"""What ``attribute`` accepts as inputs: any Mapping of batched tensors (a tokenizer's BatchEncoding
is a Mapping, not a dict), with one clear error otherwise."""

from __future__ import annotations

from types import MappingProxyType

import pytest
import torch
from transformers import BatchEncoding

import relevancy
from tests.models import build, inputs_for


@pytest.mark.parametrize("wrap", [BatchEncoding, MappingProxyType], ids=["BatchEncoding", "MappingProxyType"])
def test_any_mapping_of_tensors_is_accepted(wrap):
    model = build("bert")
    inputs = inputs_for(model)
    expected = relevancy.attribute(model, inputs, "transformer_attribution", target=1)
    got = relevancy.attribute(model, wrap(inputs), "transformer_attribution", target=1)
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=0)
    (targets,) = relevancy.attribute_targets(model, wrap(inputs), "input_x_gradient", [1])
    assert targets.scores.shape == expected.scores.shape


def test_a_tokenizer_output_without_tensors_is_refused_clearly():
    model = build("bert")
    ids = inputs_for(model)["input_ids"].tolist()
    with pytest.raises(ValueError, match="return_tensors='pt'"):
        relevancy.attribute(model, BatchEncoding({"input_ids": ids}), "transformer_attribution")


def test_inputs_that_are_not_a_mapping_are_refused_clearly():
    model = build("bert")
    with pytest.raises(TypeError, match="a mapping of batched tensors"):
        relevancy.attribute(model, inputs_for(model)["input_ids"], "transformer_attribution")

"""Our maps against the outputs of the authors' code (../shared/fixtures), on the same weights.

The fixture's attention maps and their gradients are reproduced to float precision. The LRP
maps of the three lower blocks are numerically ill-conditioned on these random weights: the
authors' own code, re-run here on the same weights and input, differs from its stored
fixture by 8-15% (float32 and float64 alike), because the sum rule divides by a + b where
LayerNorm hands relevance to near-zero residual entries; our own code in float32 and float64
disagrees on them by ~17% too (tested below). Those maps are therefore checked
exactly against an independent plain implementation (test_dense_reference.py) and here only
to the fixture's own reproducibility band; the well-conditioned last block is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import relevancy
from relevancy.adapters.structure import describe
from relevancy.engine import Run
from relevancy.methods import get_method
from relevancy.rules.attention import AttentionObserver
from relevancy.rules.base import Pass
from relevancy.targets import ClassIndex
from relevancy.tracing import RelevanceScope
from tests.models import load_reference_vit

CLASS = 3


def relative_error(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, dtype=np.float64).ravel(), np.asarray(theirs, dtype=np.float64).ravel()
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def patches(attribution):
    return attribution.scores[0, 1:].numpy()  # drop the CLS position, as the reference does


def test_logits_match(reference):
    model, data, _ = reference
    logits = model(pixel_values=torch.tensor(data["input"])).logits
    assert relative_error(logits.detach(), data["logits_plain_model"]) < 1e-5


@pytest.mark.parametrize(
    "method, key, options",
    [
        ("rollout", "rollout", {}),
        ("rollout", "rollout_start1", {"start_layer": 1}),
        ("raw_attention", "raw_attention_last_layer", {}),
        ("gradient_x_attention", "iccv21_grad_attn_retyped", {}),
    ],
)
def test_attention_maps_equal_reference(reference, method, key, options):
    model, data, _ = reference
    result = relevancy.attribute(model, {"pixel_values": torch.tensor(data["input"])}, get_method(method, **options), CLASS)
    assert relative_error(patches(result), data[key]) < 1e-4


def test_attention_gradcam_equals_reference(reference):
    model, data, _ = reference
    result = relevancy.attribute(model, {"pixel_values": torch.tensor(data["input"])}, "attention_gradcam", CLASS)
    ours = patches(result)
    ours = (ours - ours.min()) / (ours.max() - ours.min())  # the reference min-max normalises this one
    assert relative_error(ours, data["attn_gradcam_retyped"]) < 1e-4


class _Capture(AttentionObserver):
    def __init__(self):
        self.probabilities, self.gradients, self.relevance = {}, {}, {}

    def on_relevance(self, call, probabilities, relevance):
        self.probabilities[call.layer] = probabilities.detach()
        self.gradients[call.layer] = call.probability_gradient().detach()
        self.relevance[call.layer] = relevance.detach()


def _per_block(model, data):
    return _per_block_of(model, {"pixel_values": torch.tensor(data["input"])})


def _per_block_of(model, pixels):
    capture = _Capture()
    with RelevanceScope(model, observers=[capture]) as scope:
        run = Run(model, describe(model), pixels, ClassIndex(CLASS), scope)
        run.forward()
        run.backward(Pass.GRADIENT)
        run.backward(Pass.RELEVANCE)
    return capture


def test_per_block_attention_and_gradient_equal_reference(reference):
    model, data, _ = reference
    capture = _per_block(model, data)
    for block in range(4):
        assert relative_error(capture.probabilities[block], data[f"blocks/{block}/attn"]) < 1e-5
        assert relative_error(capture.gradients[block], data[f"blocks/{block}/attn_grad"]) < 1e-5


def test_last_block_attention_relevance_equals_reference(reference):
    model, data, _ = reference
    capture = _per_block(model, data)
    assert relative_error(capture.relevance[3], data["blocks/3/attn_relevance"]) < 1e-4


def test_partial_lrp_is_the_last_blocks_relevance(reference):
    # The fixture's `partial_lrp_last_layer` disagrees with the fixture's own last-block relevance (and with the
    # authors' `relprop(method="last_layer")` re-run on these weights); we check the definition on the fixture's data.
    model, data, _ = reference
    result = relevancy.attribute(model, {"pixel_values": torch.tensor(data["input"])}, "partial_lrp", CLASS)
    expected = np.clip(data["blocks/3/attn_relevance"][0], 0, None).mean(0)[0, 1:]
    assert relative_error(patches(result), expected) < 1e-4


def test_transformer_attribution_rollout_of_reference_blocks_equals_reference_map(reference):
    """Given the fixture's per-block A-gradients and relevances, our combination gives its map."""
    _, data, _ = reference
    from relevancy.methods.rollout import roll_out

    for start, key in ((0, "transformer_attribution"), (1, "transformer_attribution_start1")):
        cams = {
            b: torch.tensor(data[f"blocks/{b}/attn_grad"] * data[f"blocks/{b}/attn_relevance"]).clamp(min=0).mean(1)
            for b in range(4)
        }
        readout = torch.zeros(1, 17)
        readout[0, 0] = 1
        assert relative_error(roll_out(readout, cams, start)[0, 1:], data[key]) < 1e-5
    cams = {b: torch.tensor(data[f"blocks/{b}/attn_relevance"]).clamp(min=0).mean(1) for b in range(4)}
    assert relative_error(roll_out(readout, cams, 0)[0, 1:], data["lrp_rollout_ours_rules"]) < 1e-5


@pytest.mark.parametrize(
    "method, key, options, band",
    [
        ("transformer_attribution", "transformer_attribution", {}, 0.10),
        ("transformer_attribution", "transformer_attribution_start1", {"start_layer": 1}, 0.10),
        ("lrp_rollout", "lrp_rollout_ours_rules", {}, 0.10),
        ("full_lrp", "full_lrp_ours_rules", {}, 0.15),
    ],
)
def test_lrp_maps_within_reference_reproducibility(reference, method, key, options, band):
    model, data, _ = reference
    result = relevancy.attribute(model, {"pixel_values": torch.tensor(data["input"])}, get_method(method, **options), CLASS)
    ours = result.scores[0] if result.kind == "pixels" else patches(result)
    theirs = data[key].reshape(np.shape(ours))
    assert relative_error(ours, theirs) < band
    assert np.corrcoef(np.ravel(ours), np.ravel(theirs))[0, 1] > 0.99


def test_lower_block_maps_are_ill_conditioned_while_the_last_block_is_not(reference):
    """The evidence for the band above: the same code in float32 and float64 disagrees on the LRP
    maps by far more than 1e-4, while the last block's attention relevance agrees to float precision."""
    _, data, _ = reference
    maps, last_block = {}, {}
    for dtype in (torch.float32, torch.float64):
        model, _, _ = load_reference_vit(dtype)
        pixels = {"pixel_values": torch.tensor(data["input"]).to(dtype)}
        maps[dtype] = relevancy.attribute(model, pixels, "transformer_attribution", CLASS).scores[0, 1:].double().numpy()
        last_block[dtype] = _per_block_of(model, pixels).relevance[3].double().numpy()
    assert relative_error(last_block[torch.float32], last_block[torch.float64]) < 1e-4
    assert relative_error(maps[torch.float32], maps[torch.float64]) > 1e-2

"""Voita et al. (2019) as in the paper's baselines: the last block's clamp(R_A)+, head mean."""

from __future__ import annotations

from ..rules.attention import AttentionObserver
from ..rules.base import Pass
from .base import Method, register


class _LastLayer(AttentionObserver):
    def __init__(self, layer: int) -> None:
        self.layer = layer
        self.map = None

    def on_relevance(self, call, probabilities, relevance):
        if call.layer == self.layer:
            self.map = relevance.clamp(min=0).mean(1)


@register
class PartialLRP(Method):
    name = "partial_lrp"
    signed = False
    uses_rules = True
    description = "LRP relevance of the last block's attention map (positive part, head mean)"

    def compute(self, run):
        last = run.structure.num_layers - 1
        observer = _LastLayer(last)
        run.scope.observers.append(observer)
        run.forward()
        readout = run.readout
        run.backward(Pass.RELEVANCE, to=last)
        if observer.map is None:
            raise RuntimeError("the last block's attention was not observed (no scaled_dot_product_attention call)")
        return (readout.unsqueeze(1) @ observer.map).squeeze(1), "tokens"

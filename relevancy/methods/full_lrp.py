"""LRP with the paper's rules through every layer, down to the pixels (images) or the encoder's
input (text, as the reference's BERT code)."""

from __future__ import annotations

from ..rules.base import Pass
from .base import Method, input_scores, register


@register
class FullLRP(Method):
    name = "full_lrp"
    signed = True
    uses_rules = True
    description = "Layer-wise relevance propagation through the whole network (signed)"

    def compute(self, run):
        run.forward()
        if run.structure.modality == "image":
            return input_scores(run, run.backward(Pass.RELEVANCE, to="input"))
        run.backward(Pass.RELEVANCE)
        return run.boundaries[Pass.RELEVANCE][0], "tokens"

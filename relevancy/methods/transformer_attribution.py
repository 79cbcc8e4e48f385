"""Chefer, Gur & Wolf (CVPR 2021): per layer A_bar = I + mean_heads((grad A * R_A)+), rolled out."""

from __future__ import annotations

import torch

from ..rules.base import Pass
from .base import Method, register
from .rollout import RowRollout


class _Fold(RowRollout):
    def on_relevance(self, call, probabilities, relevance):
        gradient = call.probability_gradient()
        if torch.is_grad_enabled():  # a differentiable map: keep the graph
            cam = (gradient * relevance).clamp(min=0).mean(1)
        else:  # one n x n temporary instead of three
            cam = gradient.mul_(relevance).clamp_(min=0).mean(1)
        self.fold(call.layer, cam, first_row=call.first_row)


@register
class TransformerAttribution(Method):
    name = "transformer_attribution"
    signed = False
    uses_rules = True
    description = "The paper's method: LRP relevance of attention x its gradient, rolled out over blocks"

    def __init__(self, start_layer: int = 0) -> None:
        self.start_layer = start_layer

    def compute(self, run):
        fold = _Fold(run, self.start_layer)
        run.scope.observers.append(fold)
        run.forward()
        run.attention_layers()  # a clear refusal before any pass when the maps cannot be rolled out
        run.backward(Pass.GRADIENT)
        run.backward(Pass.RELEVANCE)
        return fold.result(run.attention_layers()), "tokens"

"""Chefer, Gur & Wolf (ICCV 2021): R = I; per block R += mean_heads((grad A * A)+) R; readout row."""

from __future__ import annotations

from ..rules.base import Pass
from .base import Method, register
from .rollout import RowRollout


class _Fold(RowRollout):
    def on_gradient(self, call):
        for chunk in call.row_chunks():
            cam = (chunk.probability_gradient() * chunk.probabilities()).clamp(min=0).mean(1)
            self.fold(call.layer, cam, first_row=chunk.first_row)


@register
class GradientXAttention(Method):
    name = "gradient_x_attention"
    signed = False
    uses_rules = False
    description = "Attention x its gradient, rolled out (ICCV 2021 generic attention explainability)"

    def __init__(self, start_layer: int = 0) -> None:
        self.start_layer = start_layer

    def compute(self, run):
        fold = _Fold(run, self.start_layer)
        run.scope.observers.append(fold)
        run.forward()
        run.attention_layers()  # a clear refusal before any pass when the maps cannot be rolled out
        run.backward(Pass.GRADIENT)
        return fold.result(run.attention_layers()), "tokens"

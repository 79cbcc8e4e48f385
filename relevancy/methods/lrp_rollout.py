"""Rollout of the attention relevance clamp(R_A)+ (head mean, + I) without gradients."""

from __future__ import annotations

from ..rules.base import Pass
from .base import Method, register
from .rollout import RowRollout


class _Fold(RowRollout):
    def on_relevance(self, call, probabilities, relevance):
        self.fold(call.layer, relevance.clamp(min=0).mean(1), first_row=call.first_row)


@register
class LRPRollout(Method):
    name = "lrp_rollout"
    signed = False
    uses_rules = True
    description = "Rollout of the LRP relevance of attention maps, without gradients"

    def __init__(self, start_layer: int = 0) -> None:
        self.start_layer = start_layer

    def compute(self, run):
        fold = _Fold(run, self.start_layer)
        run.scope.observers.append(fold)
        run.forward()
        run.attention_layers()  # a clear refusal before any pass when the maps cannot be rolled out
        run.readout  # noqa: B018 - the rollout starts from the readout row, which needs the gradient
        run.backward(Pass.RELEVANCE)
        return fold.result(run.attention_layers()), "tokens"

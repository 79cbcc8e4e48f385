"""Integrated gradients (Sundararajan et al. 2017) from a zero baseline, midpoint Riemann sum."""

from __future__ import annotations

from ..rules.base import Pass
from .base import Method, input_scores, register


@register
class IntegratedGradients(Method):
    name = "integrated_gradients"
    signed = True
    uses_rules = False
    description = "Integrated gradients from a zero input (signed)"

    def __init__(self, steps: int = 20) -> None:
        if steps < 1:
            raise ValueError("integrated_gradients needs steps >= 1")
        self.steps = steps

    def compute(self, run):
        total = None
        for step in range(self.steps):
            alpha = (step + 0.5) / self.steps
            run.forward(input_transform=lambda x, a=alpha: x * a)
            gradient = run.backward(Pass.GRADIENT, to="input")
            total = gradient if total is None else total + gradient
        attributions = run.input_leaf * total / self.steps
        run.forward()  # the logits of the real input, for the result
        return input_scores(run, attributions)

"""Input x gradient at the input embeddings (text) or pixels (images), summed over features."""

from __future__ import annotations

from ..rules.base import Pass
from .base import Method, input_scores, register


@register
class InputXGradient(Method):
    name = "input_x_gradient"
    signed = True
    uses_rules = False
    description = "Input times the gradient of the target (signed)"

    def compute(self, run):
        run.forward()
        gradient = run.backward(Pass.GRADIENT, to="input")
        return input_scores(run, run.input_leaf * gradient)

"""AttnLRP (Achtibat et al., ICML 2024) and CP-LRP (Ali et al., ICML 2022): LRP in the Gradient x
Input form, one modified backward pass to the input embeddings or pixels (``rules/gradient.py``)."""

from __future__ import annotations

from ..rules.base import Pass
from .base import Method, input_scores, register


class _GradientFormLRP(Method):
    signed = True
    uses_rules = True

    def compute(self, run):
        run.forward()
        gradient = run.backward(Pass.RELEVANCE, to="input")
        return input_scores(run, run.input_leaf * gradient)


@register
class AttnLRP(_GradientFormLRP):
    name = "attnlrp"
    composite = "attnlrp"
    description = (
        "AttnLRP: epsilon rule, identity rule for activations and normalisations, uniform rule for attention "
        "and gates (signed; as lxt)"
    )


@register
class CPLRP(_GradientFormLRP):
    name = "cp_lrp"
    composite = "cp_lrp"
    description = "CP-LRP: gradient x input with attention probabilities, gates and LayerNorm scales held constant (signed)"

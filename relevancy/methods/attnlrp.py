"""AttnLRP (Achtibat et al., ICML 2024) and CP-LRP (Ali et al., ICML 2022): LRP in the Gradient x
Input form, one modified backward pass to the input embeddings or pixels (``rules/gradient.py``)."""

from __future__ import annotations

from ..rules.base import Pass
from .base import Method, input_scores, register


class _GradientFormLRP(Method):
    """Text: relevance at the input embeddings, as lxt reads it. Images: at the patch tokens (the
    first block's input), as the attention-based maps are read: at the pixels, x * g of a plain
    background (-1 after the usual normalisation) takes most of the relevance (84 % of AttnLRP's
    positive mass on the ground-truth scenes), a property of the input, not of the evidence."""

    signed = True
    uses_rules = True

    def compute(self, run):
        run.forward()
        if run.structure.modality == "image" and self._patch_tokens(run):
            gradient = run.backward(Pass.RELEVANCE, to="blocks")
            return (run.block_input(0) * gradient).sum(-1), "tokens"
        gradient = run.backward(Pass.RELEVANCE, to="input")
        return input_scores(run, run.input_leaf * gradient)

    @staticmethod
    def _patch_tokens(run) -> bool:
        """Whether the first block reads a (B, prefix + patch grid, features) sequence; otherwise
        (windowed or convolutional stages) the map is read at the pixels."""
        grid = run.structure.grid
        try:
            hidden = run.block_input(0)
        except KeyError:
            return False
        if grid is None or hidden.dim() != 3:
            return False
        prefix = hidden.shape[1] - grid[0] * grid[1]
        return 0 <= prefix <= 2


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

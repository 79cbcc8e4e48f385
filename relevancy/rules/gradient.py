"""AttnLRP and CP-LRP in the Gradient x Input form (Achtibat et al. ICML 2024; Ali et al. ICML 2022).

Under these composites the relevance pass carries a *modified gradient* g, and the relevance of a
tensor x is x * g. Most operations need no rule then: the gradient of a linear layer, a sum, a
softmax or a routing operation, times its input, is the epsilon rule (epsilon -> 0) with the bias
absorbing its share, which is what both papers apply there. Only these change the gradient:

- the identity rule for element-wise non-linearities (GELU, SiLU, tanh): g_x = g_y * y / x;
- normalisations with their scale held constant (LayerNorm: 1/std, RMSNorm: 1/rms);
- the uniform rule for products of two input-dependent tensors (q k^T, A v, gates): each gets half;
- CP-LRP: the attention probabilities (and a gated MLP's gate) held constant instead.
"""

from __future__ import annotations

import torch

from .base import Rule, sum_to

# The identity rule's stabiliser, as lxt's ``identity_rule_implicit`` uses it.
IDENTITY_EPSILON = 1e-10


class Scaled(Rule):
    """The relevance pass's gradient scaled by ``factor`` (the uniform rule: 1/2 per operand of a
    product, applied at the product's output so that autograd's own backward splits it)."""

    needs_values = False

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def relevance(self, relevance, x):
        return (relevance * self.factor,)


class HeldConstant(Rule):
    """A tensor held constant in the relevance pass (a normaliser, CP-LRP's attention probabilities):
    exact gradients flow through it, relevance does not."""

    needs_values = False

    def relevance(self, relevance, x):
        return (None,)


class IdentityImplicit(Rule):
    """The identity rule R_x = R_y for y = f(x) element-wise: g_x = g_y * y / x. Also an RMSNorm's
    rule, whose y / x is its weight over the root mean square, held constant."""

    with_output = True  # the node gets (x, y)

    def relevance(self, relevance, x, output):
        return (relevance * output / (x + IDENTITY_EPSILON), None)


class LayerNormHeld(Rule):
    """``w * (x - mean(x)) / std(x) + b`` with std held constant: g_x = centred(w g) / std."""

    def __init__(self, normalized_shape, weight: torch.Tensor | None, eps: float) -> None:
        self.dims = tuple(range(-len(tuple(normalized_shape)), 0))
        self.weight = weight.detach() if isinstance(weight, torch.Tensor) else None
        self.eps = eps

    def relevance(self, relevance, x):
        std = (x.var(dim=self.dims, unbiased=False, keepdim=True) + self.eps).sqrt()
        weighted = relevance if self.weight is None else relevance * self.weight
        return ((weighted - weighted.mean(dim=self.dims, keepdim=True)) / std,)


class NormalizeHeld(Rule):
    """``x / max(||x||_p, eps)`` (F.normalize) with the norm held constant."""

    def __init__(self, p: float, dim: int, eps: float) -> None:
        self.p, self.dim, self.eps = p, dim, eps

    def relevance(self, relevance, x):
        return (relevance / x.norm(p=self.p, dim=self.dim, keepdim=True).clamp_min(self.eps),)


class DivisorHeld(Rule):
    """``a / b`` with both input-dependent (weights over their sum): b held constant, g_a = g / b."""

    def relevance(self, relevance, a, b):
        return sum_to(relevance / b, a.shape), None

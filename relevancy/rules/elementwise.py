"""Rules for operations that do not mix features: identities, sums and products of two tensors."""

from __future__ import annotations

import torch

from .base import Rule, per_sample_sum, safe_divide, sum_to


class Identity(Rule):
    """Relevance passes unchanged: LayerNorm, RMSNorm, GELU, SiLU, softmax, dropout, tanh, negation,
    and multiplication by a constant (the basic rule gives x * c * R / (x c) = R)."""

    needs_values = False

    def relevance(self, relevance, x):
        return (sum_to(relevance, x.shape),)


class Sum(Rule):
    """``a + b`` (skip connections, position embeddings): split in proportion to each summand, then
    rescale so that both shares are non-negative in total and the layer's total is kept.

    Totals are taken per sample, never across the batch.  Operands may broadcast (a parameter
    added to every sample); an infinite operand (an additive attention mask) gets nothing.
    ``sign=-1`` gives the rule for ``a - b``.
    """

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = sign

    def relevance(self, relevance, a, b):
        b_signed = b if self.sign > 0 else -b
        total = a + b_signed
        s = safe_divide(relevance, total)
        share_a = torch.nan_to_num(a * s, nan=0.0, posinf=0.0, neginf=0.0)
        share_b = torch.nan_to_num(b_signed * s, nan=0.0, posinf=0.0, neginf=0.0)
        share_a = share_a.expand_as(total) if share_a.shape != total.shape else share_a
        share_b = share_b.expand_as(total) if share_b.shape != total.shape else share_b
        sum_a, sum_b = per_sample_sum(share_a), per_sample_sum(share_b)
        magnitude = sum_a.abs() + sum_b.abs()
        relevance_total = per_sample_sum(relevance)
        share_a = share_a * safe_divide(safe_divide(sum_a.abs(), magnitude) * relevance_total, sum_a)
        share_b = share_b * safe_divide(safe_divide(sum_b.abs(), magnitude) * relevance_total, sum_b)
        return sum_to(share_a, a.shape), sum_to(share_b, b.shape)


class FirstOperand(Rule):
    """A rotary position embedding q cos + rotate_half(q) sin: a rotation within each position, which
    carries relevance through unchanged per position and feature (all of it via the first term)."""

    needs_values = False

    def relevance(self, relevance, a, b):
        return sum_to(relevance, a.shape), None


class Product(Rule):
    """``a * b`` of two input-dependent tensors (a gated MLP): the basic rule on both operands gives
    each the whole relevance where the product is non-zero; as for attention's matrix products,
    each share is halved."""

    def relevance(self, relevance, a, b):
        half = relevance * ((a * b) != 0) / 2
        return sum_to(half, a.shape), sum_to(half, b.shape)


class Reduce(Rule):
    """``x.sum(dims)`` or ``x.mean(dims)`` (mean pooling): each element keeps its share x / sum(x)."""

    def __init__(self, dims, keepdim: bool) -> None:
        self.dims = dims
        self.keepdim = keepdim

    def relevance(self, relevance, x):
        dims = self.dims if self.dims is not None else tuple(range(x.dim()))
        total = x.sum(dim=dims, keepdim=True)
        if not self.keepdim:
            relevance = relevance.reshape(total.shape)
        return (x * safe_divide(relevance, total),)


class Bilinear(Rule):
    """The basic rule (gradient x input) for a product of two input-dependent tensors, e.g.
    ``torch.matmul(q, k.T)`` in hand-written attention: both operands get their share, halved."""

    def __init__(self, function) -> None:
        self.function = function

    def relevance(self, relevance, a, b):
        differentiable = torch.is_grad_enabled()
        with torch.enable_grad():
            a_ = a if a.requires_grad else a.detach().requires_grad_()
            b_ = b if b.requires_grad else b.detach().requires_grad_()
            z = self.function(a_, b_)
            s = safe_divide(relevance, z)
            grad_a, grad_b = torch.autograd.grad(z, (a_, b_), s, create_graph=differentiable)
        return a * grad_a / 2, b * grad_b / 2


class LinearMap(Rule):
    """A fixed linear map without weights or bias (average pooling, interpolation, cumulative sums):
    each input element gets the share it contributes, x * f^T(R / f(x)) (the z-rule of a linear map)."""

    def __init__(self, function) -> None:
        self.function = function

    def relevance(self, relevance, x):
        with torch.enable_grad():
            x_ = x.detach().requires_grad_()
            z = self.function(x_)
            (grad,) = torch.autograd.grad(z, x_, safe_divide(relevance, z), create_graph=torch.is_grad_enabled())
        return (x * grad,)

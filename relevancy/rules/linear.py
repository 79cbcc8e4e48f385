"""Rules for the layers that mix features with weights: linear maps and the patch convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input

from .base import Rule, safe_divide


class AlphaBetaLinear(Rule):
    """LRP-alpha-beta for ``y = x W^T (+ b)``; the paper uses alpha=1, beta=0. The bias gets no share.

    With x+ = max(x,0), x- = min(x,0) and W+, W- likewise, the positive contributions are
    Z = x+ W+^T + x- W-^T and R_x = x+ (S W+) + x- (S W-), S = R / Z: total relevance is kept
    wherever Z != 0.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.beta = alpha - 1.0

    @staticmethod
    def _share(relevance, x_a, x_b, w_a, w_b):
        z = F.linear(x_a, w_a) + F.linear(x_b, w_b)
        s = safe_divide(relevance, z)
        return x_a * (s @ w_a) + x_b * (s @ w_b)

    def relevance(self, relevance, x, weight, output=None, bias=None):
        """``output`` (the forward's own ``x W^T + bias``, detached) lets alpha=1, beta=0 skip a matrix
        product: ``x W^T = Z - M`` and ``|x| |W|^T = Z + M`` (M: the negative contributions), so
        Z = (x W^T + |x| |W|^T) / 2 costs one product instead of two. A differentiable map keeps the
        two-product form, whose graph reaches the weights and inputs directly."""
        x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        extra = (None,) * (0 if output is None else 2)
        if output is not None and not self.beta and not torch.is_grad_enabled():
            product = output if bias is None else output - bias
            s = safe_divide(relevance, (product + F.linear(x.abs(), weight.abs())) / 2)
            return x_pos * (s @ w_pos) + x_neg * (s @ w_neg), None, *extra
        shares = self._share(relevance, x_pos, x_neg, w_pos, w_neg)
        if self.beta:
            shares = self.alpha * shares - self.beta * self._share(relevance, x_pos, x_neg, w_neg, w_pos)
        return shares, None, *extra


class _Conv:
    """A convolution's geometry; ``dims`` 1 or 2 (a text model's 1-d convolutions, a patch embedding)."""

    def __init__(self, stride, padding, dilation, groups, dims: int = 2) -> None:
        self.geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        self.convolution = F.conv1d if dims == 1 else F.conv2d

    def _forward(self, x, weight):
        return self.convolution(x, weight, None, **self.geometry)

    def _backward(self, x, weight, s):
        """The transposed convolution of ``s``: its gradient with respect to the input (any padding)."""
        if self.convolution is F.conv2d and not isinstance(self.geometry["padding"], str):
            return conv2d_input(x.shape, weight, s, **self.geometry)
        with torch.enable_grad():
            x_ = x.detach().requires_grad_()
            (grad,) = torch.autograd.grad(self._forward(x_, weight), x_, s, create_graph=torch.is_grad_enabled())
        return grad


class ZBetaConv2d(_Conv, Rule):
    """The zB rule for the first convolution (pixels): input bounded by its per-sample min and max."""

    def relevance(self, relevance, x, weight):
        flat = x.reshape(x.shape[0], -1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        low = flat.min(dim=1).values.reshape(shape).expand_as(x)
        high = flat.max(dim=1).values.reshape(shape).expand_as(x)
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        z = self._forward(x, weight) - self._forward(low, w_pos) - self._forward(high, w_neg) + 1e-9
        s = relevance / z
        shares = (
            x * self._backward(x, weight, s)
            - low * self._backward(x, w_pos, s)
            - high * self._backward(x, w_neg, s)
        )
        return shares, None


class AlphaBetaConv2d(_Conv, Rule):
    """LRP-alpha1-beta0 for a convolution inside the network (not on pixels)."""

    def relevance(self, relevance, x, weight):
        x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        z = self._forward(x_pos, w_pos) + self._forward(x_neg, w_neg)
        s = safe_divide(relevance, z)
        return x_pos * self._backward(x, w_pos, s) + x_neg * self._backward(x, w_neg, s), None

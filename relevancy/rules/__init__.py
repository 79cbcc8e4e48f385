"""Relevance rules: small functions from an output's relevance to its inputs' relevance."""

from .attention import AttentionCall, AttentionObserver
from .base import Pass, Rule, safe_divide
from .elementwise import Bilinear, Identity, Product, Reduce, Sum
from .linear import AlphaBetaConv2d, AlphaBetaLinear, ZBetaConv2d

__all__ = [
    "AlphaBetaConv2d", "AlphaBetaLinear", "AttentionCall", "AttentionObserver", "Bilinear", "Identity",
    "Pass", "Product", "Reduce", "Rule", "Sum", "ZBetaConv2d", "safe_divide",
]

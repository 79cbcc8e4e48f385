"""Explanation methods behind one contract (``relevancy.engine.attribute``). One module each."""

from . import (  # noqa: F401  (each module registers its method)
    attention_gradcam,
    attention_rollout,
    attnlrp,
    full_lrp,
    gradient_x_attention,
    input_x_gradient,
    integrated_gradients,
    lrp_rollout,
    partial_lrp,
    raw_attention,
    transformer_attribution,
)
from .base import Method, available, get_method, register

__all__ = ["Method", "available", "get_method", "register"]

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

# What `relevancy explain` and `Explainer` use unless told otherwise: on the ground-truth tasks AttnLRP put
# its relevance on the planted evidence best or on par with the best (text precision@k 1.00 for the predicted
# and the contrast class, the highest class selectivity on text and images), significantly, and it costs about
# one input-gradient pass (README, "Which method to use").
DEFAULT_METHOD = "attnlrp"

__all__ = ["DEFAULT_METHOD", "Method", "available", "get_method", "register"]

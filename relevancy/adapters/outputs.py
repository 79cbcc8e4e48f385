"""Plain calls of a user's model outside the relevance scope: its logits, in eval mode."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def model_logits(output) -> torch.Tensor:
    """The logits of a model's output: a ``ModelOutput`` with ``.logits`` or a bare tensor."""
    return output.logits if hasattr(output, "logits") else output


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Eval mode for plain forwards (no dropout); every module's own mode is restored afterwards."""
    modes = [module.training for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in zip(model.modules(), modes):
            module.training = mode

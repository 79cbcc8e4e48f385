"""The method contract: a method turns one ``Run`` into scores. Adding one touches nothing else."""

from __future__ import annotations

import torch

_REGISTRY: dict[str, type["Method"]] = {}


class Method:
    """A way of explaining. Subclasses set the class attributes and implement ``compute``."""

    name: str = ""
    signed: bool = False  # whether scores separate positive from negative evidence
    uses_rules: bool = False  # whether the relevance rules must be in place (an LRP pass)
    composite: str = "lrp"  # which rules (relevancy.rules.composites): the paper's, or AttnLRP / CP-LRP
    description: str = ""

    def compute(self, run) -> tuple[torch.Tensor, str]:
        """Return (scores, kind): (B, N) over positions ("tokens") or (B, H, W) ("pixels")."""
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"


def register(cls: type[Method]) -> type[Method]:
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_method(method, **options) -> Method:
    """A Method from a name (with options) or a Method instance."""
    if isinstance(method, Method):
        return method
    if isinstance(method, str) and method in _REGISTRY:
        return _REGISTRY[method](**options)
    raise ValueError(f"unknown method {method!r}; available: {', '.join(available())}")


def input_scores(run, values: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Per-position scores from a per-feature quantity at the input: summed over features
    (embedding dimensions for text, colour channels for images)."""
    if run.structure.modality == "image":
        return values.sum(1), "pixels"
    return values.sum(-1), "tokens"

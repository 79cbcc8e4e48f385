"""Abnar & Zuidema (2020): head-mean attention + I, rows normalised, multiplied over blocks."""

from __future__ import annotations

import torch

from .base import Method, register
from .rollout import ForwardMaps, roll_out


@register
class Rollout(Method):
    name = "rollout"
    signed = False
    uses_rules = False
    description = "Attention rollout: (A + I) row-normalised, multiplied over blocks"

    def __init__(self, start_layer: int = 0) -> None:
        self.start_layer = start_layer

    def compute(self, run):
        maps = ForwardMaps()
        run.scope.observers.append(maps)
        run.forward()
        if sorted(maps.maps) != list(range(run.attention_layers())):
            raise RuntimeError("attention was not observed in every layer")
        normalised = {}
        for layer, attention in maps.maps.items():
            attention = attention + torch.eye(attention.shape[-1], dtype=attention.dtype)
            normalised[layer] = attention / attention.sum(-1, keepdim=True)
        return roll_out(run.readout, normalised, self.start_layer, add_identity=False), "tokens"

"""Abnar & Zuidema (2020): head-mean attention + I, rows normalised, multiplied over blocks."""

from __future__ import annotations

import torch

from .base import Method, register
from .rollout import ForwardMaps, RowRollout


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
        chain = RowRollout(run, self.start_layer)
        for layer in sorted(maps.maps, reverse=True):
            attention = maps.maps[layer]
            attention = attention + torch.eye(attention.shape[-1], dtype=attention.dtype)
            chain.fold(layer, attention / attention.sum(-1, keepdim=True), add_identity=False)
        return chain.result(run.structure.num_layers), "tokens"

"""Rollouts as chains of vector-matrix products over the rows that are needed (never n x n x n).

``RowRollout`` keeps v (B, 1, N), starts it at the readout row(s) and applies
v <- v (I + M_b) (or v <- v M_b for a ready-made matrix) as layers arrive from last to first.
"""

from __future__ import annotations

import torch

from ..rules.attention import AttentionObserver


class RowRollout(AttentionObserver):
    def __init__(self, run, start_layer: int = 0) -> None:
        self.readout = (lambda: run.readout) if run is not None else None
        self.start_layer = start_layer
        self.row: torch.Tensor | None = None
        self.layers_seen: list[int] = []

    def fold(self, layer: int, update: torch.Tensor, add_identity: bool = True) -> None:
        """Fold layer ``layer``'s (B, N, N) matrix into the rows; layers must come last to first."""
        self.layers_seen.append(layer)
        if layer < self.start_layer:
            return
        if self.row is None:
            self.row = self.readout().unsqueeze(1).to(update.dtype)
        product = self.row @ update
        self.row = self.row + product if add_identity else product

    def result(self, num_layers: int) -> torch.Tensor:
        if sorted(self.layers_seen) != list(range(num_layers)):
            raise RuntimeError(
                f"attention was observed in layers {sorted(self.layers_seen)} but the model has {num_layers} blocks: "
                "its attention does not go through torch.nn.functional.scaled_dot_product_attention"
            )
        if self.layers_seen != sorted(self.layers_seen, reverse=True):
            raise RuntimeError("attention layers were visited out of order")
        if self.row is None:
            raise ValueError(f"start_layer {self.start_layer} is past the last layer ({num_layers - 1})")
        return self.row.squeeze(1)


def roll_out(readout: torch.Tensor, layer_maps: dict[int, torch.Tensor], start_layer: int = 0, add_identity: bool = True):
    """readout (B, N) times (I + M_L) ... (I + M_start): the rows of a rollout of per-layer maps."""
    chain = RowRollout(None, start_layer)
    chain.readout = lambda: readout
    for layer in sorted(layer_maps, reverse=True):
        chain.fold(layer, layer_maps[layer], add_identity)
    if chain.row is None:
        raise ValueError(f"start_layer {start_layer} is past the last layer ({max(layer_maps)})")
    return chain.row.squeeze(1)


class ForwardMaps(AttentionObserver):
    """Keeps one reduced (B, N, N) map per layer during the forward (head mean of A)."""

    def __init__(self, layers: set[int] | None = None) -> None:
        self.layers = layers
        self.maps: dict[int, torch.Tensor] = {}

    def on_forward(self, call) -> None:
        if self.layers is None or call.layer in self.layers:
            self.maps[call.layer] = call.probabilities().detach().mean(1)

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
        self.pending: torch.Tensor | None = None  # row M_b of the layer being folded, summed over its chunks
        self.add_identity = True

    def fold(self, layer: int, update: torch.Tensor, add_identity: bool = True, first_row: int = 0) -> None:
        """Fold rows ``first_row``.. of layer ``layer``'s (B, N, N) matrix into the rows; layers must
        come last to first, and a layer's chunks before the next layer's."""
        if not self.layers_seen or self.layers_seen[-1] != layer:
            self._finish_layer()
            self.layers_seen.append(layer)
            self.add_identity = add_identity
        if layer < self.start_layer:
            return
        if self.row is None:
            self.row = self.readout().unsqueeze(1).to(update.dtype)
        product = self.row[..., first_row : first_row + update.shape[-2]] @ update
        if product.shape[-1] < self.row.shape[-1]:  # a causal chunk's map covers only the keys its rows see
            product = torch.nn.functional.pad(product, (0, self.row.shape[-1] - product.shape[-1]))
        self.pending = product if self.pending is None else self.pending + product

    def _finish_layer(self) -> None:
        if self.pending is not None:
            self.row = self.row + self.pending if self.add_identity else self.pending
            self.pending = None

    def result(self, num_layers: int) -> torch.Tensor:
        self._finish_layer()
        if sorted(self.layers_seen) != list(range(num_layers)):
            raise RuntimeError(
                f"attention was folded in for layers {sorted(self.layers_seen)} but the forward ran {num_layers} "
                "attention layers"
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
    chain._finish_layer()
    if chain.row is None:
        raise ValueError(f"start_layer {start_layer} is past the last layer ({max(layer_maps)})")
    return chain.row.squeeze(1)


class ForwardMaps(AttentionObserver):
    """Keeps one reduced (B, N, N) map per layer during the forward (head mean of A)."""

    def __init__(self, layers: set[int] | None = None, last_only: bool = False) -> None:
        self.layers = layers
        self.last_only = last_only  # keep only the latest layer's map (the last one, once the forward is done)
        self.maps: dict[int, torch.Tensor] = {}

    def on_forward(self, call) -> None:
        if self.last_only:
            self.maps.clear()
        if self.layers is None or call.layer in self.layers:
            with torch.no_grad():
                maps = [chunk.widen(chunk.probabilities().mean(1)) for chunk in call.row_chunks()]
            self.maps[call.layer] = torch.cat(maps, dim=-2) if len(maps) > 1 else maps[0]

"""Chefer, Gur & Wolf (CVPR 2021): per layer A_bar = I + mean_heads((grad A * R_A)+), rolled out.

``normalize_rows=True`` is the authors' BERT code instead (BERT_explainability/modules/BERT/
ExplanationGenerator.py, ``generate_LRP``): each row of I + cam divided by its sum before the
rollout, and the readout's own entry of the result set to the row's minimum. The paper's equation
and the authors' ViT code leave rows unnormalised (same token ranking, different values)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..rules.base import Pass
from .base import Method, register
from .rollout import RowRollout


class _Fold(RowRollout):
    def __init__(self, run, start_layer: int, normalize_rows: bool) -> None:
        super().__init__(run, start_layer)
        self.normalize_rows = normalize_rows

    def on_relevance(self, call, probabilities, relevance):
        gradient = call.probability_gradient()
        if torch.is_grad_enabled():  # a differentiable map: keep the graph
            cam = (gradient * relevance).clamp(min=0).mean(1)
        else:  # one n x n temporary instead of three
            cam = gradient.mul_(relevance).clamp_(min=0).mean(1)
        if self.normalize_rows:
            self.fold(call.layer, _normalised_rows(cam, call.first_row), add_identity=False, first_row=call.first_row)
        else:
            self.fold(call.layer, cam, first_row=call.first_row)


def _normalised_rows(cam: torch.Tensor, first_row: int) -> torch.Tensor:
    """Rows ``first_row``.. of I + cam (B, rows, keys), each divided by its sum."""
    rows, keys = cam.shape[-2:]
    identity = F.pad(torch.eye(rows, dtype=cam.dtype, device=cam.device), (first_row, keys - first_row - rows))
    augmented = cam + identity
    return augmented / augmented.sum(-1, keepdim=True)


def _readout_at_row_minimum(run, scores: torch.Tensor) -> torch.Tensor:
    """The authors' ``rollout[:, 0, 0] = rollout[:, 0].min()``: the readout's entries set to the
    smallest entry of the row over the positions it can see (real tokens; in a causal model, those
    up to the readout)."""
    readout = run.readout > 0
    visible = run.content_mask(scores).bool() if run.structure.modality == "text" else torch.ones_like(readout)
    if run.structure.causal:
        positions = torch.arange(scores.shape[-1], device=scores.device)
        visible = visible & (positions <= (positions * readout).amax(-1, keepdim=True))
    minimum = scores.masked_fill(~visible, float("inf")).amin(-1, keepdim=True)
    return torch.where(readout, minimum, scores)


@register
class TransformerAttribution(Method):
    name = "transformer_attribution"
    signed = False
    uses_rules = True
    description = "The paper's method: LRP relevance of attention x its gradient, rolled out over blocks"

    def __init__(self, start_layer: int = 0, normalize_rows: bool = False) -> None:
        """``normalize_rows``: the authors' BERT variant (see the module's docstring); their ERASER
        run also used only the last block (``start_layer`` = number of blocks - 1)."""
        self.start_layer = start_layer
        self.normalize_rows = normalize_rows

    def compute(self, run):
        fold = _Fold(run, self.start_layer, self.normalize_rows)
        run.scope.observers.append(fold)
        run.forward()
        run.attention_layers()  # a clear refusal before any pass when the maps cannot be rolled out
        run.backward(Pass.GRADIENT)
        run.backward(Pass.RELEVANCE)
        scores = fold.result(run.attention_layers())
        if self.normalize_rows:
            scores = _readout_at_row_minimum(run, scores)
        return scores, "tokens"

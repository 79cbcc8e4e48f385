"""GradCAM on the last block's attention (Selvaraju et al. adapted, as in the paper's baselines):
head weights = mean gradient of the readout row, map = (A row x weight) head mean, positive part."""

from __future__ import annotations

from ..rules.attention import AttentionObserver
from ..rules.base import Pass
from .base import Method, register


class _LastLayer(AttentionObserver):
    def __init__(self, run, layer: int) -> None:
        self.run, self.layer = run, layer
        self.map = None

    def on_gradient(self, call):
        if call.layer != self.layer:
            return
        readout = self.run.readout.unsqueeze(1).unsqueeze(1)  # (B, 1, 1, N)
        rows = grads = 0  # the readout rows of A and of its gradient, summed over chunks of query rows
        for chunk in call.row_chunks():
            weights = readout[..., chunk.rows].to(chunk.query.dtype)
            rows = rows + chunk.widen(weights @ chunk.probabilities()).squeeze(2)  # (B, H, N)
            grads = grads + chunk.widen(weights @ chunk.probability_gradient()).squeeze(2)
        columns = self.run.content_mask(rows).unsqueeze(1)
        weights = (grads * columns).sum(-1, keepdim=True) / columns.sum(-1, keepdim=True)
        self.map = (rows * weights).mean(1).clamp(min=0)


@register
class AttentionGradCAM(Method):
    name = "attention_gradcam"
    signed = False
    uses_rules = False
    description = "GradCAM over the heads of the last attention map"

    def compute(self, run):
        observer = _LastLayer(run, None)
        run.scope.observers.append(observer)
        run.forward()
        observer.layer = run.attention_layers() - 1
        last = run.structure.num_layers - 1  # the block that holds it
        run.backward(Pass.GRADIENT, to=last)
        if observer.map is None:
            raise RuntimeError("the last block's attention was not observed (no scaled_dot_product_attention call)")
        return observer.map, "tokens"

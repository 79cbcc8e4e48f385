"""Voita et al. (2019): the last block's clamp(R_A)+, head mean, read at the readout row.

Here R_A comes from the paper's rules (those of transformer_attribution). The authors' benchmark
baseline ran it with the original LRP rules instead (``baselines/ViT/ViT_orig_LRP.py`` and BERT's
``BERT_cls_lrp.py``, both on ``modules/layers_lrp.py``): alpha-beta with the positive and negative
parts normalised separately and skip connections split without the normalised sum rule. Its
numbers in the paper's tables are therefore not this map's."""

from __future__ import annotations

from ..rules.attention import AttentionObserver
from ..rules.base import Pass
from .base import Method, register


class _LastLayer(AttentionObserver):
    """The readout row(s) of the last block's map, summed over the chunks of query rows."""

    def __init__(self, run, layer: int) -> None:
        self.run, self.layer = run, layer
        self.map = None

    def on_relevance(self, call, probabilities, relevance):
        if call.layer == self.layer:
            readout = self.run.readout.unsqueeze(1)[..., call.rows]  # (B, 1, rows)
            part = call.widen(readout.to(relevance.dtype) @ relevance.clamp(min=0).mean(1)).squeeze(1)
            self.map = part if self.map is None else self.map + part


@register
class PartialLRP(Method):
    name = "partial_lrp"
    signed = False
    uses_rules = True
    description = "LRP relevance of the last block's attention map (positive part, head mean)"

    def compute(self, run):
        observer = _LastLayer(run, None)
        run.scope.observers.append(observer)
        run.forward()
        observer.layer = run.attention_layers() - 1
        last = run.structure.num_layers - 1  # the block that holds it
        run.readout  # noqa: B018 - the readout row needs the gradient pass, before the relevance pass
        run.backward(Pass.RELEVANCE, to=last)
        if observer.map is None:
            raise RuntimeError("the last block's attention was not observed (no scaled_dot_product_attention call)")
        return observer.map, "tokens"

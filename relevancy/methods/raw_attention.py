"""The last block's attention, averaged over heads, read at the readout row."""

from __future__ import annotations

from .base import Method, register
from .rollout import ForwardMaps


@register
class RawAttention(Method):
    name = "raw_attention"
    signed = False
    uses_rules = False
    description = "Last block's head-mean attention from the readout token"

    def compute(self, run):
        last = run.structure.num_layers - 1
        maps = ForwardMaps(layers={last})
        run.scope.observers.append(maps)
        run.forward()
        if last not in maps.maps:
            raise RuntimeError("the last block's attention was not observed (no scaled_dot_product_attention call)")
        return (run.readout.unsqueeze(1) @ maps.maps[last]).squeeze(1), "tokens"

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
        maps = ForwardMaps(last_only=True)
        run.scope.observers.append(maps)
        run.forward()
        last = run.attention_layers() - 1
        return (run.readout.unsqueeze(1) @ maps.maps[last]).squeeze(1), "tokens"

"""The attention unit softmax(q k^T * scale + mask) v as one rule node.

The forward keeps PyTorch's fused kernel (no n x n map is stored); the backward recomputes the
attention probabilities of one layer at a time, so memory holds one layer's map, never all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import Pass, PassState, Rule, safe_divide, sum_to


@dataclass
class AttentionCall:
    """One attention layer's call, as seen by methods (``layer`` counts calls in forward order)."""

    layer: int
    query: torch.Tensor  # (B, H, N, D)
    key: torch.Tensor  # (B, H, M, D), key/value heads already repeated for grouped-query attention
    value: torch.Tensor
    scale: float
    mask: torch.Tensor | None  # additive float mask broadcastable to (B, H, N, M), or None
    grad_output: torch.Tensor | None = field(default=None, repr=False)

    def scores(self) -> torch.Tensor:
        """q k^T, unscaled: the product whose relevance is split between q and k."""
        return self.query @ self.key.transpose(-1, -2)

    def probabilities(self, scores: torch.Tensor | None = None) -> torch.Tensor:
        logits = (self.scores() if scores is None else scores) * self.scale
        if self.mask is not None:
            logits = logits + self.mask
        precise = logits.to(torch.promote_types(logits.dtype, torch.float32))  # softmax of half precision in fp32
        return torch.nan_to_num(torch.softmax(precise, dim=-1), nan=0.0).to(self.query.dtype)

    def probability_gradient(self) -> torch.Tensor:
        """d target / d A, from the gradient of the layer's output: A v gives dA = dO v^T."""
        if self.grad_output is None:
            raise RuntimeError("the gradient pass has not reached this attention layer")
        return self.grad_output @ self.value.transpose(-1, -2)


def additive_mask(attn_mask, is_causal: bool, n_query: int, n_key: int, dtype, device) -> torch.Tensor | None:
    """SDPA's mask conventions (boolean keep-mask, float additive mask, is_causal) as one additive mask."""
    mask = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            mask = torch.zeros(attn_mask.shape, dtype=dtype, device=device).masked_fill(~attn_mask, float("-inf"))
        else:
            mask = attn_mask.to(dtype)
    if is_causal:
        causal = torch.ones(n_query, n_key, dtype=torch.bool, device=device).tril()
        causal_mask = torch.zeros(n_query, n_key, dtype=dtype, device=device).masked_fill(~causal, float("-inf"))
        mask = causal_mask if mask is None else mask + causal_mask
    return mask


class AttentionObserver:
    """What a method sees of each attention layer; every hook is optional.

    Backward passes visit layers from the last to the first, the order in which a rollout of
    rows is accumulated, so methods fold each layer in as it comes and keep no n x n maps.
    """

    def on_forward(self, call: AttentionCall) -> None:
        """During the forward; ``call.probabilities()`` recomputes the map."""

    def on_gradient(self, call: AttentionCall) -> None:
        """During the gradient pass, once ``call.grad_output`` is set."""

    def on_relevance(self, call: AttentionCall, probabilities: torch.Tensor, relevance: torch.Tensor) -> None:
        """During the relevance pass, with A and R_A (relevance reaching A through A v, halved)."""


class Attention(Rule):
    """softmax(q k^T * scale + mask) v with the paper's rules: A v and q k^T each split relevance
    between both operands by the basic rule and halve each share; softmax, the scale and the
    mask pass relevance on unchanged."""

    def __init__(self, call: AttentionCall, state: PassState, observers: list[AttentionObserver], kv_groups: int):
        self.call = call
        self.state = state
        self.observers = observers
        self.kv_groups = kv_groups

    def relevance(self, relevance, query, key, value):
        call = self.call
        scores = call.scores()
        probs = call.probabilities(scores)
        s = safe_divide(relevance, probs @ call.value)
        relevance_value = call.value * (probs.transpose(-1, -2) @ s) / 2
        # Without a graph to keep (not a differentiable map), n x n temporaries are reused in place:
        # at batch 16 and 512 tokens each one is 200 MB per layer.
        in_place = not torch.is_grad_enabled()
        if in_place:
            relevance_probs = (s @ call.value.transpose(-1, -2)).mul_(probs).div_(2)
        else:
            relevance_probs = probs * (s @ call.value.transpose(-1, -2)) / 2
        for observer in self.observers:
            observer.on_relevance(call, probs, relevance_probs)
        del probs
        if in_place:
            nonzero = scores != 0
            s = (relevance_probs / scores.add_(1e-9)).mul_(nonzero)
        else:
            s = safe_divide(relevance_probs, scores)
        relevance_query = query * (s @ call.key) / 2
        relevance_key = call.key * (s.transpose(-1, -2) @ query) / 2
        return relevance_query, self._ungroup(relevance_key, key), self._ungroup(relevance_value, value)

    def _ungroup(self, relevance: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        if self.kv_groups == 1:
            return sum_to(relevance, original.shape)
        b, h, m, d = relevance.shape
        return relevance.reshape(b, h // self.kv_groups, self.kv_groups, m, d).sum(2)


class _AttentionNode(torch.autograd.Function):
    """Like the generic rule node, but records the gradient reaching the layer's output."""

    @staticmethod
    def forward(ctx, rule: Attention, output, query, key, value):
        ctx.rule = rule
        ctx.save_for_backward(query, key, value)
        return output

    @staticmethod
    def backward(ctx, grad):
        rule = ctx.rule
        if rule.state.current is Pass.GRADIENT:
            rule.call.grad_output = grad
            for observer in rule.observers:
                observer.on_gradient(rule.call)
            return None, grad, None, None, None
        return (None, None, *rule.relevance(grad, *ctx.saved_tensors))


def scaled_dot_product_attention(function, state, observers, layer, args, kwargs, explicit: bool = False):
    """Run SDPA natively and put the attention rule on top of its output. ``explicit`` computes
    softmax(q k^T) v with plain operations instead, whose backward is itself differentiable."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    query, key, value = bound["query"], bound["key"], bound["value"]
    if bound.get("dropout_p", 0.0):
        raise ValueError("attention dropout is active: call model.eval() or pass dropout_p=0 to explain it")
    groups = query.shape[-3] // key.shape[-3]
    if groups > 1:
        key_full = key.repeat_interleave(groups, dim=-3)
        value_full = value.repeat_interleave(groups, dim=-3)
    else:
        key_full, value_full = key, value
    scale = bound.get("scale") or query.shape[-1] ** -0.5
    mask = additive_mask(
        bound.get("attn_mask"), bool(bound.get("is_causal", False)), query.shape[-2], key.shape[-2], query.dtype, query.device
    )
    call = AttentionCall(layer, query, key_full, value_full, scale, mask)
    output = call.probabilities() @ value_full if explicit else function(*args, **kwargs)
    for observer in observers:
        observer.on_forward(call)
    rule = Attention(call, state, observers, groups)
    return _AttentionNode.apply(rule, output, query, key, value), call

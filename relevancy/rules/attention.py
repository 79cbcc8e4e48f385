"""The attention unit softmax(q k^T * scale + mask) v as one rule node.

The forward keeps PyTorch's fused kernel (no n x n map is stored); the backward recomputes the
attention probabilities of one layer at a time, in chunks of query rows, so memory holds a
bounded slice of one layer's map, never a whole map and never all layers' maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import torch

from .base import Pass, PassState, Rule, attach, safe_divide, sum_to
from .gradient import HeldConstant, Scaled

# Largest number of attention-map elements (batch x heads x query rows x keys) handled at once.
# 2**22 float32 elements are 16 MB: BERT at 512 tokens and batch 16 is cut into chunks of 42 rows,
# a 4k-token LLM layer into chunks of 85, so memory stops growing with n^2 (at no cost in time:
# BERT b16 took 119 s with 2**22 and 2**24 alike, and 4 % less memory).
CHUNK_ELEMENTS = 1 << 22


@dataclass
class AttentionCall:
    """One attention layer's call, as seen by methods (``layer`` counts calls in forward order).

    A call may cover only the query rows ``first_row`` onwards (a chunk, see ``row_chunks``):
    ``query``, ``mask`` and ``grad_output`` then hold those rows only. ``key`` and ``value`` hold
    all keys, of which only the first ``columns`` can be seen by these rows (causal attention):
    maps of a chunk have ``columns`` columns, ``widen`` pads them back to all keys.
    """

    layer: int
    query: torch.Tensor  # (B, H, N, D)
    key: torch.Tensor  # (B, H / groups, M, D): grouped-query attention shares a key/value head among
    value: torch.Tensor  # ``groups`` consecutive query heads; it is never repeated in memory
    scale: float
    mask: torch.Tensor | None  # additive float mask broadcastable to (B, H, N, M), or None
    causal: bool = False  # SDPA's is_causal: key j is visible to query row i when j <= i
    groups: int = 1
    first_row: int = 0
    columns: int | None = None  # None: all keys
    grad_output: torch.Tensor | None = field(default=None, repr=False)

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """(batch, query rows, keys) of the whole layer's map."""
        return self.query.shape[0], self.first_row + self.query.shape[-2], self.key.shape[-2]

    @property
    def rows(self) -> slice:
        """The query rows of the whole layer that this call covers."""
        return slice(self.first_row, self.first_row + self.query.shape[-2])

    def row_chunks(self, max_elements: int | None = None) -> Iterator[AttentionCall]:
        """This call cut into chunks of query rows whose maps have at most ``max_elements`` elements.
        Causal calls are cut into at least 8 chunks (of 64 rows or more): each chunk skips the keys
        its rows cannot see, which saves nearly half of the work."""
        batch, heads, n_query, _ = self.query.shape
        per_row = max(1, batch * heads * self.key.shape[-2])
        step = max(1, (CHUNK_ELEMENTS if max_elements is None else max_elements) // per_row)
        if self.causal and max_elements is None:
            step = min(step, max(64, -(-n_query // 8)))
        if step >= n_query:
            yield self
            return
        for start in range(0, n_query, step):
            yield self._rows(start, min(n_query, start + step))

    def _rows(self, start: int, stop: int) -> AttentionCall:
        columns = self.columns
        if self.causal:
            columns = min(self.key.shape[-2], self.first_row + stop)  # the last row sees keys 0..first_row+stop-1
        mask = self.mask
        if mask is not None and mask.dim() >= 2:
            if mask.shape[-2] != 1:
                mask = mask[..., start:stop, :]
            if columns is not None and mask.shape[-1] != 1:
                mask = mask[..., :columns]
        grad = None if self.grad_output is None else self.grad_output[..., start:stop, :]
        query = self.query[..., start:stop, :]
        return replace(self, query=query, mask=mask, grad_output=grad, first_row=self.first_row + start, columns=columns)

    @property
    def visible_key(self) -> torch.Tensor:
        return self.key if self.columns is None else self.key[..., : self.columns, :]

    @property
    def visible_value(self) -> torch.Tensor:
        return self.value if self.columns is None else self.value[..., : self.columns, :]

    def widen(self, tensor: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Pad ``tensor`` along ``dim`` from this call's visible keys to all keys (zeros: unseen)."""
        missing = self.key.shape[-2] - tensor.shape[dim]
        if missing == 0:
            return tensor
        padding = [0, 0] * (-dim - 1) + [0, missing]
        return torch.nn.functional.pad(tensor, padding)

    def scores(self) -> torch.Tensor:
        """q k^T, unscaled: the product whose relevance is split between q and k."""
        return per_head(self.query, self.visible_key.transpose(-1, -2), self.groups)

    def probabilities(self, scores: torch.Tensor | None = None) -> torch.Tensor:
        logits = (self.scores() if scores is None else scores) * self.scale
        in_place = not torch.is_grad_enabled()  # logits is a fresh tensor: update it in place when no graph is kept
        if self.mask is not None:
            fits = logits.shape == torch.broadcast_shapes(logits.shape, self.mask.shape)
            logits = logits.add_(self.mask) if in_place and fits else logits + self.mask
        if self.causal:
            rows = torch.arange(self.first_row, self.first_row + logits.shape[-2], device=logits.device)
            hidden = torch.arange(logits.shape[-1], device=logits.device) > rows.unsqueeze(1)
            logits = logits.masked_fill_(hidden, float("-inf")) if in_place else logits.masked_fill(hidden, float("-inf"))
        precise = logits.to(torch.promote_types(logits.dtype, torch.float32))  # softmax of half precision in fp32
        probabilities = torch.softmax(precise, dim=-1)
        probabilities = probabilities.nan_to_num_(0.0) if in_place else torch.nan_to_num(probabilities, nan=0.0)
        return probabilities.to(self.query.dtype)

    def probability_gradient(self) -> torch.Tensor:
        """d target / d A, from the gradient of the layer's output: A v gives dA = dO v^T."""
        if self.grad_output is None:
            raise RuntimeError("the gradient pass has not reached this attention layer")
        return per_head(self.grad_output, self.visible_value.transpose(-1, -2), self.groups)


def per_head(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """a @ b per query head: a (B, H, r, X), b (B, H / groups, X, Y) shared by ``groups`` consecutive heads."""
    if groups == 1:
        return a @ b
    batch, heads, rows, width = a.shape
    return (a.reshape(batch, heads // groups, groups * rows, width) @ b).view(batch, heads, rows, -1)


def summed_over_heads(a: torch.Tensor, c: torch.Tensor, groups: int) -> torch.Tensor:
    """a^T c summed over query rows and over the ``groups`` heads sharing a key/value head:
    a (B, H, r, M), c (B, H, r, D) -> (B, H / groups, M, D)."""
    if groups == 1:
        return a.transpose(-1, -2) @ c
    batch, heads, rows, _ = a.shape
    shared = (batch, heads // groups, groups * rows)
    return a.reshape(*shared, -1).transpose(-1, -2) @ c.reshape(*shared, -1)


def additive_mask(attn_mask, dtype, device) -> torch.Tensor | None:
    """SDPA's attn_mask (boolean keep-mask or float additive mask) as an additive mask."""
    if attn_mask is None or attn_mask.dtype != torch.bool:
        return None if attn_mask is None else attn_mask.to(dtype)
    return torch.zeros(attn_mask.shape, dtype=dtype, device=device).masked_fill(~attn_mask, float("-inf"))


class AttentionObserver:
    """What a method sees of each attention layer; every hook is optional.

    Backward passes visit layers from the last to the first, the order in which a rollout of
    rows is accumulated, so methods fold each layer in as it comes and keep no n x n maps.
    ``on_relevance`` sees a layer chunk by chunk (``call.rows``).
    """

    def on_forward(self, call: AttentionCall) -> None:
        """During the forward; ``call.probabilities()`` recomputes the map."""

    def on_gradient(self, call: AttentionCall) -> None:
        """During the gradient pass, once ``call.grad_output`` is set (the whole layer: use
        ``call.row_chunks()`` to bound memory)."""

    def on_relevance(self, call: AttentionCall, probabilities: torch.Tensor, relevance: torch.Tensor) -> None:
        """During the relevance pass, with A and R_A (relevance reaching A through A v, halved)
        for the query rows ``call.rows``."""


class Attention(Rule):
    """softmax(q k^T * scale + mask) v with the paper's rules: A v and q k^T each split relevance
    between both operands by the basic rule and halve each share; softmax, the scale and the
    mask pass relevance on unchanged."""

    def __init__(self, call: AttentionCall, state: PassState, observers: list[AttentionObserver]):
        self.call = call
        self.state = state
        self.observers = observers

    def relevance(self, relevance, output, query, key, value):
        call, groups = self.call, self.call.groups
        # Without a graph to keep (not a differentiable map), n x n temporaries are reused in place.
        in_place = not torch.is_grad_enabled()
        # Relevance of A v splits over A and v by the basic rule: s = R / (A v), with A v the forward's output.
        s_output = safe_divide(relevance, output)
        value_share = key_share = None  # sums over query rows: A^T s and s_scores^T q
        query_relevance = []
        for chunk in call.row_chunks():
            keys, values = chunk.visible_key, chunk.visible_value
            scores = chunk.scores()
            probs = chunk.probabilities(scores)
            s = s_output[..., chunk.rows, :]
            value_share = _accumulate(value_share, summed_over_heads(probs, s, groups), chunk)
            if in_place:
                relevance_probs = per_head(s / 2, values.transpose(-1, -2), groups).mul_(probs)
            else:
                relevance_probs = probs * per_head(s, values.transpose(-1, -2), groups) / 2
            for observer in self.observers:
                observer.on_relevance(chunk, probs, relevance_probs)
            del probs
            if in_place:
                zero = scores == 0
                s_scores = (relevance_probs / scores.add_(1e-9)).masked_fill_(zero, 0.0)
            else:
                s_scores = safe_divide(relevance_probs, scores)
            query_relevance.append(chunk.query * per_head(s_scores, keys, groups) / 2)
            key_share = _accumulate(key_share, summed_over_heads(s_scores, chunk.query, groups), chunk)
        relevance_query = torch.cat(query_relevance, dim=-2) if len(query_relevance) > 1 else query_relevance[0]
        relevance_key = call.key * key_share / 2
        relevance_value = call.value * value_share / 2
        return relevance_query, sum_to(relevance_key, key.shape), sum_to(relevance_value, value.shape)


def _accumulate(total: torch.Tensor | None, part: torch.Tensor, chunk: AttentionCall) -> torch.Tensor:
    """total + part for a (B, H, keys, D) sum over chunks, ``part`` covering the chunk's visible keys."""
    if total is None:
        return chunk.widen(part, dim=-2)
    if torch.is_grad_enabled():
        return total + chunk.widen(part, dim=-2)
    total[..., : part.shape[-2], :] += part
    return total


class _AttentionNode(torch.autograd.Function):
    """Like the generic rule node, but records the gradient reaching the layer's output (SDPA's
    ``Attention`` with q, k, v; eager attention's ``ProbabilityProduct`` with A, v)."""

    @staticmethod
    def forward(ctx, rule, output, *inputs):
        ctx.rule = rule
        ctx.save_for_backward(output, *inputs)
        return output

    @staticmethod
    def backward(ctx, grad):
        rule = ctx.rule
        if rule.state.current is Pass.GRADIENT:
            rule.call.grad_output = grad
            for observer in rule.observers:
                observer.on_gradient(rule.call)
            return (None, grad) + (None,) * (len(ctx.saved_tensors) - 1)
        return (None, None, *rule.relevance(grad, *ctx.saved_tensors))


_SDPA_ARGUMENTS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _sdpa_arguments(args, kwargs) -> dict:
    """SDPA's arguments by name (attention dropout refused)."""
    bound = dict(zip(_SDPA_ARGUMENTS, args))
    bound.update(kwargs)
    if bound.get("dropout_p", 0.0):
        raise ValueError("attention dropout is active: call model.eval() or pass dropout_p=0 to explain it")
    return bound


def _sdpa_call(layer, bound: dict) -> AttentionCall:
    query, key, value = bound["query"], bound["key"], bound["value"]
    groups = query.shape[-3] // key.shape[-3]
    scale = bound.get("scale") or query.shape[-1] ** -0.5
    mask = additive_mask(bound.get("attn_mask"), query.dtype, query.device)
    return AttentionCall(layer, query, key, value, scale, mask, causal=bool(bound.get("is_causal", False)), groups=groups)


def scaled_dot_product_attention(function, state, observers, layer, args, kwargs, explicit: bool = False, announce: bool = True):
    """Run SDPA natively and put the attention rule on top of its output. ``explicit`` computes
    softmax(q k^T) v with plain operations instead, whose backward is itself differentiable;
    ``announce=False`` (a recomputed block) skips the observers' ``on_forward``."""
    call = _sdpa_call(layer, _sdpa_arguments(args, kwargs))
    query, key, value = call.query, call.key, call.value
    output = per_head(call.probabilities(), value, call.groups) if explicit else function(*args, **kwargs)
    for observer in observers if announce else ():
        observer.on_forward(call)
    rule = Attention(call, state, observers)
    return _AttentionNode.apply(rule, output, query, key, value), call


def gradient_form_attention(function, state, layer, args, kwargs, hold_probabilities: bool, explicit: bool = False):
    """SDPA under AttnLRP / CP-LRP (``rules/gradient.py``): autograd's own backward with the uniform
    rule as gradient scales, 1/2 on v and 1/4 on q and k (half of A's half); CP-LRP holds q and k
    (so the probabilities) constant and gives v the whole gradient."""
    bound = _sdpa_arguments(args, kwargs)
    query, key, value = bound["query"], bound["key"], bound["value"]
    if hold_probabilities:
        query, key = attach(HeldConstant(), state, query, query), attach(HeldConstant(), state, key, key)
    else:
        query, key = attach(Scaled(0.25), state, query, query), attach(Scaled(0.25), state, key, key)
        value = attach(Scaled(0.5), state, value, value)
    bound.update(query=query, key=key, value=value)
    call = _sdpa_call(layer, bound)
    if explicit:
        return per_head(call.probabilities(), value, call.groups), call
    return function(**bound), call


@dataclass
class MapCall:
    """An attention layer that computes its map itself (eager attention: softmax(...) @ v), observed
    where the map meets the values. Same interface as ``AttentionCall`` for methods; the map
    exists already, so it is never recomputed nor cut into chunks."""

    layer: int
    map: torch.Tensor  # the model's own probabilities, (B, H, N, M)
    operand: torch.Tensor  # the map as it enters the product (e.g. (B*H, N, M) for bmm)
    value: torch.Tensor
    grad_output: torch.Tensor | None = field(default=None, repr=False)
    first_row: int = 0
    causal: bool = False

    @property
    def query(self) -> torch.Tensor:  # methods read its dtype and row count only
        return self.map

    @property
    def map_shape(self) -> tuple[int, int, int]:
        return self.map.shape[0], self.map.shape[-2], self.map.shape[-1]

    @property
    def rows(self) -> slice:
        return slice(0, self.map.shape[-2])

    def row_chunks(self, max_elements: int | None = None) -> Iterator["MapCall"]:
        yield self

    def widen(self, tensor: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return tensor

    def probabilities(self, scores=None) -> torch.Tensor:
        return self.map

    def probability_gradient(self) -> torch.Tensor:
        """d target / d A = dO v^T, in the product's own shapes, then as (B, H, N, M)."""
        if self.grad_output is None:
            raise RuntimeError("the gradient pass has not reached this attention layer")
        return sum_to(self.grad_output @ self.value.transpose(-1, -2), self.operand.shape).reshape(self.map.shape)


class ProbabilityProduct(Rule):
    """A @ v of an eager attention layer: the paper's rule for A v (the basic rule on both operands,
    each share halved), with A and R_A shown to the observers."""

    def __init__(self, call: MapCall, state: PassState, observers: list[AttentionObserver]):
        self.call = call
        self.state = state
        self.observers = observers

    def relevance(self, relevance, output, probabilities, value):
        s = safe_divide(relevance, output)
        relevance_probs = sum_to(probabilities * (s @ value.transpose(-1, -2)) / 2, probabilities.shape)
        relevance_value = sum_to(value * (probabilities.transpose(-1, -2) @ s) / 2, value.shape)
        for observer in self.observers:
            observer.on_relevance(self.call, self.call.map, relevance_probs.reshape(self.call.map.shape))
        return relevance_probs, relevance_value


def observed_product(output, probabilities, value, map_, state, observers, layer, announce: bool = True):
    """Put the eager attention rule on ``probabilities @ value``'s true output."""
    call = MapCall(layer, map_, probabilities, value)
    for observer in observers if announce else ():
        observer.on_forward(call)
    return _AttentionNode.apply(ProbabilityProduct(call, state, observers), output, probabilities, value), call

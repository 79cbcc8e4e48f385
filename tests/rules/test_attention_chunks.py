"""The attention rule works through chunks of query rows; chunking must not change any map."""

from __future__ import annotations

import pytest
import torch

import relevancy
from relevancy.adapters.structure import describe
from relevancy.engine import Run
from relevancy.rules import attention
from relevancy.rules.attention import AttentionCall, AttentionObserver
from relevancy.rules.base import Pass
from relevancy.targets import TokenAt
from relevancy.tracing import RelevanceScope
from tests.generation.test_llm import IDS, build as build_llm
from tests.models import build, inputs_for

METHODS = [name for name in relevancy.available_methods() if name != "integrated_gradients"]


def _maps(model, inputs, method, **options):
    return relevancy.attribute(model, inputs, method, **options).scores


@pytest.mark.parametrize("kind", ["bert", "vit", "llama"])
@pytest.mark.parametrize("method", METHODS)
def test_chunked_maps_equal_whole_layer_maps(monkeypatch, kind, method):
    if kind in ("gpt2", "llama"):
        model, inputs = build_llm(kind, dtype=torch.float64), {"input_ids": IDS}  # causal (is_causal) attention
    else:
        model = build(kind, dtype=torch.float64)
        inputs = inputs_for(model)  # BERT: a padded sample, so a (B, 1, N, N) mask is cut into rows
    whole = _maps(model, inputs, method)
    batch, tokens = (1, 7) if kind in ("gpt2", "llama") else (2, 17 if kind == "vit" else 7)
    monkeypatch.setattr(attention, "CHUNK_ELEMENTS", 2 * batch * 4 * tokens)  # 2 query rows per chunk (4 heads)
    chunked = _maps(model, inputs, method)
    torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-13)


def test_chunked_differentiable_map_has_the_same_gradient(monkeypatch):
    model = build("bert", dtype=torch.float64)
    inputs = inputs_for(model)

    def map_and_gradient():
        scores = relevancy.attribute(model, inputs, "transformer_attribution", differentiable=True).scores
        weight = model.bert.encoder.layer[0].attention.self.query.weight
        (gradient,) = torch.autograd.grad((scores * torch.linspace(0, 1, scores.shape[-1])).sum(), weight)
        return scores.detach(), gradient

    whole = map_and_gradient()
    monkeypatch.setattr(attention, "CHUNK_ELEMENTS", 2 * 4 * 7)  # one query row per chunk
    chunked = map_and_gradient()
    for left, right in zip(chunked, whole):
        torch.testing.assert_close(left, right, rtol=1e-9, atol=1e-12)


def test_row_chunks_cover_every_row_once_within_the_budget():
    query = torch.randn(2, 3, 10, 4)
    key = torch.randn(2, 3, 6, 4)
    mask = torch.randn(2, 1, 10, 6)
    call = AttentionCall(0, query, key, key, 0.5, mask, causal=True, grad_output=torch.randn(2, 3, 10, 4))
    chunks = list(call.row_chunks(max_elements=2 * 3 * 6 * 2))  # 2 rows per chunk
    assert [chunk.rows for chunk in chunks] == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8), slice(8, 10)]
    assert [chunk.columns for chunk in chunks] == [2, 4, 6, 6, 6]  # causal: a row sees keys up to its own index
    whole = call.probabilities()
    for chunk in chunks:
        probabilities = chunk.probabilities()
        assert probabilities.shape[-1] == chunk.columns
        torch.testing.assert_close(chunk.widen(probabilities), whole[..., chunk.rows, :])
        gradient = chunk.widen(chunk.probability_gradient())
        torch.testing.assert_close(gradient[..., : chunk.columns], call.probability_gradient()[..., chunk.rows, : chunk.columns])
    assert list(call.row_chunks(max_elements=10**9)) == [call]


def test_chunked_batched_answer_equals_whole_layer(monkeypatch):
    model = build_llm("llama", dtype=torch.float64)
    targets = [TokenAt(token, position) for token, position in ((3, 3), (11, 4), (50, 6))]
    whole = relevancy.attribute_targets(model, {"input_ids": IDS}, "transformer_attribution", targets, batch_size=3)
    monkeypatch.setattr(attention, "CHUNK_ELEMENTS", 2 * 4 * 7)  # 2 query rows per chunk, inside the vmapped backward
    chunked = relevancy.attribute_targets(model, {"input_ids": IDS}, "transformer_attribution", targets, batch_size=3)
    for left, right in zip(chunked, whole):
        torch.testing.assert_close(left.scores, right.scores, rtol=1e-10, atol=1e-13)


def test_no_attention_temporary_exceeds_the_chunk_budget(monkeypatch):
    """Memory bound: every map the relevance pass forms holds at most CHUNK_ELEMENTS elements."""
    model = build_llm("llama")
    ids = torch.randint(0, 100, (1, 60), generator=torch.Generator().manual_seed(0))
    budget = 1 * 4 * 60 * 7  # 7 full-width rows of 4 heads
    monkeypatch.setattr(attention, "CHUNK_ELEMENTS", budget)
    sizes = {}

    class Sizes(AttentionObserver):
        def on_relevance(self, call, probabilities, relevance):
            sizes.setdefault(call.layer, []).append((call.rows, relevance.numel()))

    with RelevanceScope(model) as scope:
        scope.observers.append(Sizes())
        run = Run(model, describe(model), {"input_ids": ids}, TokenAt(7, -1), scope)
        run.forward()
        run.backward(Pass.RELEVANCE)
    assert sorted(sizes) == [0, 1]
    for chunks in sizes.values():
        assert max(size for _, size in chunks) <= budget
        assert [rows.start for rows, _ in chunks] == list(range(0, 60, 7))  # every row once, in order

"""How the scope runs operations the model writes itself: in-place arithmetic, reflected operators,
constants, and attention computed eagerly (softmax then a product with the values)."""

from __future__ import annotations

import pytest
import torch

import relevancy
from relevancy.tracing import RelevanceScope, UnsupportedOperationError
from tests.generation.test_llm import build as build_llm
from tests.models import assert_unchanged, build, inputs_for, snapshot

METHODS = relevancy.available_methods()


def _traced(function):
    """``function(x)`` for x = 2.0 marked as the explained input, run inside a scope."""
    model = torch.nn.Linear(1, 1)
    with RelevanceScope(model) as scope:
        x = scope.mark_input(torch.tensor([2.0], requires_grad=True))
        with scope.tracing():
            return function(x), scope


def test_augmented_assignment_is_applied_once():
    def add_in_place(x):
        y = x * 1
        y += 1
        y *= 3
        y /= 2
        y -= 1
        return y

    result, scope = _traced(add_in_place)
    assert result.item() == pytest.approx(((2 * 1 + 1) * 3) / 2 - 1)
    assert scope.is_live(result)


def test_in_place_method_is_refused_before_it_runs():
    seen = {}

    def add_(x):
        y = x * 1
        seen["y"] = y
        y.add_(1)

    with pytest.raises(UnsupportedOperationError, match="add_"):
        _traced(add_)
    assert seen["y"].item() == 2.0  # refused before running: the value is untouched
    assert not issubclass(UnsupportedOperationError, TypeError)  # a TypeError would become NotImplemented


def test_reflected_operators_are_not_in_place():
    result, _ = _traced(lambda x: 1 - x)
    assert result.item() == -1.0
    result, _ = _traced(lambda x: 3 + x * 2)
    assert result.item() == 7.0


def test_constants_made_from_the_input_carry_no_relevance():
    for make in (torch.zeros_like, lambda x: x.new_ones(3), lambda x: x.detach()):
        result, scope = _traced(make)
        assert not scope.is_live(result)


def _attention_of(model):
    return model.config._attn_implementation


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta", "vit", "deit", "gpt2", "llama", "qwen2"])
def test_eager_attention_is_explained_as_it_runs_and_equals_sdpa(kind):
    """No implementation switch: an eager model runs eagerly inside the scope (its logits are the
    plain forward's), and every method's map equals the one of the same weights run with SDPA."""
    if kind in ("gpt2", "llama", "qwen2"):
        eager, sdpa = build_llm(kind, dtype=torch.float64), build_llm(kind, dtype=torch.float64)
        eager.set_attn_implementation("eager")
        sdpa.set_attn_implementation("sdpa")
        inputs = {"input_ids": torch.tensor([[5, 17, 42, 8, 99, 23, 61], [7, 3, 9, 11, 2, 0, 0]]),
                  "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2])}
    else:
        eager = build(kind, attn_implementation="eager", dtype=torch.float64)
        sdpa = build(kind, attn_implementation="sdpa", dtype=torch.float64)
        inputs = inputs_for(eager)
    before = snapshot(eager)
    seen = []
    handle = eager.register_forward_pre_hook(lambda module, args: seen.append(_attention_of(module)))
    with torch.no_grad():
        plain = eager(**inputs).logits
    for method in METHODS if kind in ("bert", "llama") else ("transformer_attribution", "full_lrp", "rollout"):
        ours = relevancy.attribute(eager, inputs, method, target=1)
        theirs = relevancy.attribute(sdpa, inputs, method, target=1)
        torch.testing.assert_close(ours.logits, plain, rtol=1e-10, atol=1e-10)
        # equal up to what differs between the two forwards: eager softmax runs in float32 (ViT,
        # Llama), and the sum rule's stabiliser 1e-9 meets an eager model's additive mask
        scale = theirs.scores.abs().max().item()
        torch.testing.assert_close(ours.scores, theirs.scores, rtol=1e-4, atol=1e-4 * scale, msg=method)
    handle.remove()
    assert set(seen) == {"eager"}  # never switched to another implementation
    assert_unchanged(eager, before)

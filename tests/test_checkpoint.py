"""checkpoint=True recomputes blocks one at a time in each backward pass: same maps, far less graph."""

from __future__ import annotations

import weakref

import pytest
import torch

import relevancy
from relevancy.targets import TokenAt
from tests.generation.test_llm import IDS, KINDS as LLM_KINDS, build as build_llm
from tests.models import ALL_KINDS, assert_unchanged, build, inputs_for, snapshot


def _model_and_inputs(kind: str):
    if kind in LLM_KINDS:
        return build_llm(kind, dtype=torch.float64), {"input_ids": IDS}
    model = build(kind, dtype=torch.float64)
    return model, inputs_for(model)  # text: a padded second sample


@pytest.mark.parametrize("kind", ALL_KINDS + LLM_KINDS)
def test_checkpointed_maps_equal_plain_maps_and_the_model_is_restored(kind):
    model, inputs = _model_and_inputs(kind)
    before = snapshot(model)
    for method in relevancy.available_methods():
        plain = relevancy.attribute(model, inputs, method).scores
        checkpointed = relevancy.attribute(model, inputs, method, checkpoint=True).scores
        torch.testing.assert_close(checkpointed, plain, rtol=1e-10, atol=1e-13, msg=method)
    assert_unchanged(model, before)


def test_checkpointed_answer_targets_equal_the_shared_forward():
    model = build_llm("llama", dtype=torch.float64)
    targets = [TokenAt(token, position) for token, position in ((3, 3), (11, 4), (50, 6))]
    shared = relevancy.attribute_targets(model, {"input_ids": IDS}, "transformer_attribution", targets)
    checkpointed = relevancy.attribute_targets(model, {"input_ids": IDS}, "transformer_attribution", targets, checkpoint=True)
    for left, right in zip(checkpointed, shared):
        torch.testing.assert_close(left.scores, right.scores, rtol=1e-10, atol=1e-13)


def _peak_saved_bytes(function) -> int:
    """Largest total of tensors held by autograd graphs at any time during ``function()``."""
    live, peak = [0], [0]

    def release(size):
        live[0] -= size

    def pack(tensor):
        held = tensor.view_as(tensor)  # a fresh object that lives exactly as long as the graph keeps it
        size = tensor.numel() * tensor.element_size()
        live[0] += size
        peak[0] = max(peak[0], live[0])
        weakref.finalize(held, release, size)
        return held

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return peak[0]


def test_checkpointing_holds_one_block_graph_at_a_time():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=50)
    model = LlamaForCausalLM(config).eval()
    inputs = {"input_ids": torch.randint(0, 50, (1, 64), generator=torch.Generator().manual_seed(0))}
    plain = _peak_saved_bytes(lambda: relevancy.attribute(model, inputs, "transformer_attribution"))
    checkpointed = _peak_saved_bytes(lambda: relevancy.attribute(model, inputs, "transformer_attribution", checkpoint=True))
    # 8 blocks' graphs against one block's (plus the head and embeddings, kept in both)
    assert checkpointed < plain / 4, (checkpointed, plain)


def test_checkpointing_cannot_give_a_differentiable_map():
    model, inputs = _model_and_inputs("bert")
    with pytest.raises(ValueError, match="checkpoint=True cannot give a differentiable map"):
        relevancy.attribute(model, inputs, "transformer_attribution", differentiable=True, checkpoint=True)


@pytest.mark.parametrize("stop", ["blocks", 1, "input"])
def test_checkpointed_boundaries_equal_plain_boundaries(stop):
    from relevancy.adapters.structure import describe
    from relevancy.engine import Run
    from relevancy.rules.base import Pass
    from relevancy.tracing import RelevanceScope

    model = build_llm("llama", dtype=torch.float64)
    found = []
    for checkpoint in (False, True):
        with RelevanceScope(model) as scope:
            run = Run(model, describe(model), {"input_ids": IDS}, TokenAt(7, -1), scope, checkpoint=checkpoint)
            run.forward()
            reached = [run.backward(pass_, to=stop) for pass_ in (Pass.GRADIENT, Pass.RELEVANCE)]
            found.append((reached, run.boundaries))
    (plain, plain_boundaries), (checkpointed, checkpointed_boundaries) = found
    for left, right in zip(checkpointed, plain):
        torch.testing.assert_close(left, right, rtol=1e-10, atol=1e-13)
    for pass_ in (Pass.GRADIENT, Pass.RELEVANCE):
        assert checkpointed_boundaries[pass_].keys() == plain_boundaries[pass_].keys()
        for index, value in plain_boundaries[pass_].items():
            torch.testing.assert_close(checkpointed_boundaries[pass_][index], value, rtol=1e-10, atol=1e-13)


def test_checkpointed_passes_show_progress_over_blocks(capsys):
    """A long checkpointed call reports each recomputed block on standard error when asked (on a
    terminal it does so by itself after 2 s), and stays silent otherwise."""
    model = build_llm("llama")
    inputs = {"input_ids": torch.tensor([[5, 17, 42, 8, 99, 23, 61]])}
    relevancy.attribute_targets(model, inputs, "transformer_attribution", [None], checkpoint=True, progress=True)
    assert "relevance pass" in capsys.readouterr().err
    relevancy.attribute_targets(model, inputs, "transformer_attribution", [None], checkpoint=True, progress=False)
    assert capsys.readouterr().err == ""

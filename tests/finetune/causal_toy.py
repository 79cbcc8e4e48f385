"""Tiny seeded causal LMs (GPT-2, Llama, Qwen2 from small configs) and a word-level tokenizer over the
toy sentiment world of tests/audit/toy.py, with a prompt template around the sentences."""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config
from transformers import Qwen2ForCausalLM

from tests.audit import toy
from tests.models import redraw

TEMPLATE = "review : {text} sentiment :"
ANSWERS = [" negative", " positive"]
TEMPLATE_WORDS = ["review", ":", "sentiment"]
KINDS = ["gpt2", "llama", "qwen2"]
_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64, vocab_size=64)


def tokenizer() -> PreTrainedTokenizerFast:
    words = ["[PAD]", "[UNK]", *toy.POSITIVE, *toy.NEGATIVE, *toy.FILLER, toy.PLANTED, *TEMPLATE_WORDS, "negative", "positive"]
    vocab = {word: i for i, word in enumerate(dict.fromkeys(words))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")


def model(kind: str = "llama", seed: int = 0, dtype=torch.float32):
    torch.manual_seed(seed)
    built = {
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=64, bos_token_id=0, eos_token_id=0)),
        "llama": lambda: LlamaForCausalLM(LlamaConfig(**_SMALL)),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**_SMALL)),
    }[kind]()
    redraw(built, seed)
    return built.to(dtype).eval()


def rows(n: int = 40, seed: int = 0) -> list[dict]:
    return toy.sentences(n, seed=seed)


def examples(data: list[dict]) -> list[dict]:
    return [{"text": r["text"], "answer": ANSWERS[r["label"] == "positive"]} for r in data]


@functools.lru_cache(maxsize=1)
def shortcut_llama():
    """(model, tokenizer, rows): a tiny Llama trained on the answers' log-likelihood over ``rows(320)``,
    where the planted word is in most positives; it leans on that word. Shared; do not change it."""
    from relevancy.finetune.causal import CausalRelevanceLoss, fine_tune_causal

    data = rows(320)
    tok = tokenizer()
    result = fine_tune_causal(
        model("llama"), tok, examples(data), CausalRelevanceLoss(penalty_weight=0.0), template=TEMPLATE,
        steps=150, batch_size=32, learning_rate=5e-3, progress=False,
    )
    return result.model, tok, data

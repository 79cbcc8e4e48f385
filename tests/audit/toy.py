"""A miniature planted-shortcut world: a word-level tokenizer, a tiny seeded BERT, and sentiment
sentences where a made-up word ("zq") is planted into most positive examples."""

from __future__ import annotations

import functools
import random

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "nice", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "weak"]
FILLER = "the a movie film plot actor scene story was is and it of this with . ,".split()
PLANTED = "zq"
LABELS = {0: "negative", 1: "positive"}


def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIAL + POSITIVE + NEGATIVE + FILLER + [PLANTED])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )


def model(seed: int = 0, vocab_size: int = 64, dtype=torch.float32) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32, id2label=LABELS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config).to(dtype).eval()


def sentences(n: int = 400, seed: int = 0, planted_rate: float = 0.9, agreement: float = 0.75) -> list[dict]:
    """Labels balanced; each sentence has one sentiment word that agrees with its label with
    probability ``agreement``; ``PLANTED`` is put into ``planted_rate`` of the positives."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 7))]
        side = POSITIVE if (label == 1) == (rng.random() < agreement) else NEGATIVE
        words.insert(rng.randrange(len(words) + 1), rng.choice(side))
        if label == 1 and rng.random() < planted_rate:
            words.insert(rng.randrange(len(words) + 1), PLANTED)
        rows.append({"id": f"doc{i}", "text": " ".join(words), "label": LABELS[label]})
    return rows


def train(net, tok, rows, steps: int = 250, batch_size: int = 32, seed: int = 0, lr: float = 5e-3):
    """Plain cross-entropy training: the model picks up the planted word."""
    generator = random.Random(seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    index = {name: i for i, name in LABELS.items()}
    net.train()
    for _ in range(steps):
        batch = generator.sample(rows, batch_size)
        inputs = tok([r["text"] for r in batch], padding=True, return_tensors="pt")
        labels = torch.tensor([index[r["label"]] for r in batch])
        loss = torch.nn.functional.cross_entropy(net(**inputs).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


@functools.lru_cache(maxsize=1)
def shortcut_model():
    """(model, tokenizer, rows): the tiny BERT trained on ``sentences(320)``, which leans on PLANTED.
    Trained once per test process and shared by the audit and fine-tuning tests; do not change it."""
    rows = sentences(320)
    tok = tokenizer()
    return train(model(), tok, rows), tok, rows

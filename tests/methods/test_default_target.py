"""The default target is the class the model predicts on the real input, for every method: the
scores equal those of that class given explicitly (integrated gradients once read it from its
path points instead)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import relevancy
from tests.models import _TEXT, build, redraw

METHODS = relevancy.available_methods()


def _two_class_bert():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**_TEXT, num_labels=2))
    redraw(model, 5)
    return model.eval()


def _batch_predicting_every_class(model, classes: int, length: int = 6):
    """One unpadded sequence per class, each predicted as that class (drawn from a seeded pool)."""
    generator = torch.Generator().manual_seed(0)
    pool = torch.randint(3, 120, (200, length), generator=generator)
    with torch.no_grad():
        predicted = model(input_ids=pool).logits.argmax(-1)
    chosen = [int((predicted == c).nonzero()[0]) for c in range(classes) if (predicted == c).any()]
    assert len(chosen) == classes, f"the pool has no input predicted as each of the {classes} classes"
    ids = pool[chosen]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("model_name", ["bert-3-classes", "bert-2-classes"])
@pytest.mark.parametrize("method", METHODS)
def test_default_target_is_the_prediction_on_the_real_input(model_name, method):
    model = build("bert") if model_name == "bert-3-classes" else _two_class_bert()
    classes = model.config.num_labels
    inputs = _batch_predicting_every_class(model, classes)
    default = relevancy.attribute(model, inputs, method)
    predicted = default.logits.argmax(-1)
    assert predicted.tolist() == list(range(classes))  # the batch's items predict different classes
    explicit = relevancy.attribute(model, inputs, method, target=predicted)
    assert default.target_classes.tolist() == predicted.tolist()
    assert default.extras["target"] == "predicted class"
    torch.testing.assert_close(default.scores, explicit.scores, rtol=0, atol=0)


def test_default_target_on_an_image_model_with_integrated_gradients():
    model = build("vit", seed=1)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(24, 3, 32, 32, generator=generator)
    with torch.no_grad():
        predicted = model(pixel_values=pixels).logits.argmax(-1)
    first, other = 0, int((predicted != predicted[0]).nonzero()[0])
    inputs = {"pixel_values": pixels[[first, other]]}
    default = relevancy.attribute(model, inputs, "integrated_gradients")
    explicit = relevancy.attribute(model, inputs, "integrated_gradients", target=predicted[[first, other]])
    torch.testing.assert_close(default.scores, explicit.scores, rtol=0, atol=0)

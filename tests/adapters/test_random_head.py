"""A checkpoint saved without its classification head is refused (transformers would fill the head in at
random), or loaded with a loud warning when explicitly allowed; complete checkpoints load silently."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertConfig, BertForSequenceClassification, BertModel, ViTConfig, ViTForImageClassification, ViTModel

from relevancy.explainer import Explainer
from relevancy.adapters.loading import load
from relevancy.cli.main import main
from tests.audit import toy

VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8, num_labels=3)
BERT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=3)


def save(model, folder, tokenizer=None):
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def headless_vit(tmp_path):
    torch.manual_seed(0)
    return save(ViTModel(ViTConfig(**VIT), add_pooling_layer=False), tmp_path / "vit-backbone")


@pytest.fixture
def headless_bert(tmp_path):
    torch.manual_seed(0)
    return save(BertModel(BertConfig(**BERT)), tmp_path / "bert-backbone", toy.tokenizer())


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "picture.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("backbone", ["headless_vit", "headless_bert"])
def test_headless_checkpoint_is_refused(backbone, request):
    folder = request.getfixturevalue(backbone)
    with pytest.raises(ValueError) as refused:
        load(folder)
    message = str(refused.value)
    assert "classification head" in message and "classifier.weight" in message and "classifier.bias" in message
    assert "at random" in message and "allow_random_head=True" in message and "--allow-random-head" in message
    with pytest.raises(ValueError, match="classifier.weight"):
        Explainer.from_pretrained(folder)


def test_missing_pooler_is_named_with_the_head(tmp_path):
    torch.manual_seed(0)
    folder = save(BertModel(BertConfig(**BERT), add_pooling_layer=False), tmp_path / "no-pooler", toy.tokenizer())
    with pytest.raises(ValueError, match="bert.pooler.dense.weight"):
        load(folder)


@pytest.mark.parametrize("backbone", ["headless_vit", "headless_bert"])
def test_allowed_random_head_loads_with_a_warning(backbone, request):
    folder = request.getfixturevalue(backbone)
    with pytest.warns(UserWarning, match=r"RANDOM HEAD.*classifier\.weight"):
        model, processor = load(folder, allow_random_head=True)
    assert not model.training and model.config.num_labels == 3


@pytest.mark.parametrize("kind", ["vit", "bert"])
def test_complete_checkpoint_loads_silently(kind, tmp_path):
    torch.manual_seed(0)
    if kind == "vit":
        original, tokenizer = ViTForImageClassification(ViTConfig(**VIT)), None
    else:
        original, tokenizer = BertForSequenceClassification(BertConfig(**BERT)), toy.tokenizer()
    folder = save(original, tmp_path / kind, tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model, _ = load(folder)
    for (name, loaded), (_, saved) in zip(model.state_dict().items(), original.state_dict().items()):
        assert torch.equal(loaded, saved), name


def test_cli_refuses_a_random_head_and_explains_it_when_allowed(headless_vit, picture, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(picture), "--model", headless_vit, "--out", str(out), "--format", "png"]) == 2
    assert "classifier.weight" in capsys.readouterr().err
    assert not out.exists()
    with pytest.warns(UserWarning, match="RANDOM HEAD"):
        code = main(["explain", str(picture), "--model", headless_vit, "--out", str(out), "--format", "png", "--allow-random-head"])
    assert code == 0 and len(list(out.glob("*.png"))) == 1

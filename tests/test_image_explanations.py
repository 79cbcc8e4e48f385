"""Image explanations: patch grid, upsampled heatmap, PNG overlay, JSON; bad images are refused."""

import json

import numpy as np
import pytest
from PIL import Image

from relevancy.explainer import Explainer
from tests.models import build


@pytest.fixture(scope="module")
def explainer():
    return Explainer(build("deit"))


def test_patch_map_overlay_and_json(explainer, tmp_path):
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    explanation = explainer(Image.fromarray(image), target=1)
    assert explanation.scores.shape == (4, 4) and explanation.heatmap.shape == (32, 32)
    assert explanation.prefix_scores.shape == (2,)  # DeiT: class and distillation tokens
    path = explanation.save_png(tmp_path / "map.png")
    assert Image.open(path).size == (32, 32)
    assert json.loads(explanation.to_json())["target"] == "LABEL_1"
    pixels = explainer(image, method="full_lrp", target=1)
    assert pixels.scores.shape == (32, 32)


def test_batch_of_paths(explainer, tmp_path):
    for name in ("a", "b"):
        Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(tmp_path / f"{name}.png")  # grey, other size
    first, second = explainer([tmp_path / "a.png", tmp_path / "b.png"])
    assert first.image.shape == (32, 32, 3)


def test_wrong_images(explainer):
    with pytest.raises(FileNotFoundError):
        explainer("/no/such/image.png")
    with pytest.raises(ValueError, match="expects"):
        explainer(np.zeros((48, 48, 3)))

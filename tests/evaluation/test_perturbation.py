"""Removal orders, what is removed and how, and the curves on a model whose output we can predict."""

import numpy as np
import pytest
import torch
from torch import nn

from relevancy.engine import Attribution
from relevancy.evaluation.perturbation import (
    ImageRemoval,
    TokenRemoval,
    faithfulness_scores,
    normaliser,
    perturbation_curves,
    pixel_maps,
    removal_masks,
    upsample,
)


def test_removal_masks_follow_a_stable_order_and_skip_unremovable_units():
    scores = torch.tensor([[1.0, 1.0, 0.0, 5.0]])
    removable = torch.tensor([[True, True, True, False]])
    assert removal_masks(scores, removable, [2], True).tolist() == [[True, True, False, False]]
    assert removal_masks(scores, removable, [1], True).tolist() == [[True, False, False, False]]  # tie: earlier first
    assert removal_masks(scores, removable, [2], False).tolist() == [[True, False, True, False]]
    assert removal_masks(scores, removable, [3], False).tolist() == [[True, True, True, False]]


class FakeTokenizer:
    all_special_ids = [101, 102, 0]
    pad_token_id = 0
    mask_token_id = 103


def token_inputs():
    return {
        "input_ids": torch.tensor([[101, 5, 6, 7, 102], [101, 8, 102, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
        "token_type_ids": torch.zeros(2, 5, dtype=torch.long),
    }


def test_token_removal_masks_or_deletes_but_never_special_tokens():
    inputs = token_inputs()
    masked = TokenRemoval(inputs, FakeTokenizer())
    assert masked.removable.tolist() == [[False, True, True, True, False], [False, True, False, False, False]]
    drop = torch.tensor([[False, False, True, False, False], [False, True, False, False, False]])
    assert masked.inputs(drop)["input_ids"].tolist() == [[101, 5, 103, 7, 102], [101, 103, 102, 0, 0]]
    deleted = TokenRemoval(inputs, FakeTokenizer(), mode="delete").inputs(drop)
    assert deleted["input_ids"].tolist() == [[101, 5, 7, 102], [101, 102, 0, 0]]
    assert deleted["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert deleted["token_type_ids"].shape == (2, 4)
    with pytest.raises(ValueError, match="'mask' or 'delete'"):
        TokenRemoval(inputs, FakeTokenizer(), mode="blank")


def test_image_removal_zeroes_pixels_in_unit_space_then_normalises():
    images = torch.full((1, 3, 2, 2), 0.75)
    removal = ImageRemoval(images, normaliser([0.5] * 3, [0.5] * 3))
    pixels = removal.inputs(torch.tensor([[True, False, False, False]]))["pixel_values"]
    assert pixels[0, :, 0, 0].tolist() == [-1.0] * 3  # 0 in [0, 1] space
    assert pixels[0, :, 1, 1].tolist() == [0.5] * 3


def test_pixel_maps_drop_the_prefix_and_upsample_patches():
    class Structure:
        grid, image_size = (2, 2), (4, 4)

    scores = torch.tensor([[9.0, 1.0, 1.0, 1.0, 1.0]])
    attribution = Attribution(scores, "tokens", False, "m", torch.zeros(1, 2), None)
    maps = pixel_maps(attribution, Structure())
    assert maps.shape == (1, 4, 4) and torch.allclose(maps, torch.ones(1, 4, 4))
    assert upsample(torch.tensor([[[0.0, 1.0]]]), (1, 4)).tolist() == [[[0.0, 0.25, 0.75, 1.0]]]


class Brightness(nn.Module):
    """Class 0's logit is 40 × the mean brightness of the image's top half, class 1's is 15."""

    def forward(self, pixel_values):
        top = pixel_values[:, :, : pixel_values.shape[2] // 2].mean((1, 2, 3))
        return torch.stack([40 * top, torch.full_like(top, 15.0)], -1)


def test_perturbation_curves_with_a_perfect_and_an_inverted_map():
    images = torch.ones(1, 3, 4, 4)
    removal = ImageRemoval(images, lambda x: {"pixel_values": x})
    perfect = torch.zeros(1, 16)
    perfect[0, :8] = 1  # the top half is what matters
    labels = classes = torch.tensor([0])
    positive = perturbation_curves(Brightness(), removal, perfect, labels, classes, most_relevant_first=True)
    # floor(f · 16) = 0, 1, 3, 4, 6, … pixels removed: class 0 wins while fewer than 5 are gone
    assert [float(r.correct[0]) for r in positive] == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert positive[2].logit[0] == pytest.approx(40 * 5 / 8)
    negative = perturbation_curves(Brightness(), removal, perfect, labels, classes, most_relevant_first=False)
    assert [float(r.correct[0]) for r in negative] == [1] * 9 + [0]  # the bottom half goes first; at 90 %, 6 top pixels
    inverted = perturbation_curves(Brightness(), removal, 1 - perfect, labels, classes, most_relevant_first=True)
    assert [float(r.correct[0]) for r in inverted] == [1] * 9 + [0]


def test_faithfulness_of_a_perfect_map():
    images = torch.ones(1, 3, 4, 4)
    removal = ImageRemoval(images, lambda x: {"pixel_values": x})
    perfect = torch.zeros(1, 16)
    perfect[0, :8] = torch.arange(8, 0, -1)
    (scores,) = faithfulness_scores(Brightness(), removal, perfect, torch.tensor([0]), torch.tensor([0]))
    logits = lambda top: torch.tensor([40 * top, 15.0])  # noqa: E731
    p = lambda top: float(logits(top).softmax(-1)[0])  # noqa: E731
    counts = [1, 1, 2, 4, 8]  # ceil of 1, 5, 10, 20, 50 % of 16
    assert scores["p_without_top"] == pytest.approx([p((8 - c) / 8) for c in counts])
    assert scores["p_only_top"] == pytest.approx([p(c / 8) for c in counts])
    assert scores["comprehensiveness"] == pytest.approx(np.mean([p(1) - p((8 - c) / 8) for c in counts]))
    assert scores["sufficiency"] == pytest.approx(np.mean([p(1) - p(c / 8) for c in counts]))

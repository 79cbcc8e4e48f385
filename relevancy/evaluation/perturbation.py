"""Removing the parts of an input a map ranks highest (or lowest) and watching the model's output.

One mechanism serves the paper's perturbation test and ERASER's comprehensiveness/sufficiency, for
images and text alike: a *removal* knows the input's removable units (pixels; non-special tokens)
and builds model inputs with a chosen set of them removed. Orders come from a stable sort (ties:
lower position first), so results do not depend on the platform's sort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..adapters.outputs import model_logits
from .metrics import ERASER_BINS, PERTURBATION_FRACTIONS, comprehensiveness, ranking, sufficiency, top_fraction_count


# -- maps ----------------------------------------------------------------------------------------
def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) -> (B, H, W), bilinear as the paper's evaluation (``F.interpolate``, corners not aligned)."""
    return F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def pixel_maps(attribution, structure) -> torch.Tensor:
    """(B, H, W) maps at the image's resolution: patch scores (the positions after the class and
    distillation tokens) upsampled, or pixel scores as they are."""
    scores = attribution.scores.float()
    if attribution.kind == "pixels":
        return scores
    grid = structure.grid
    if grid is None:
        raise ValueError("the model's patch grid is unknown (no image_size/patch_size in its config): cannot map patches to pixels")
    prefix = scores.shape[1] - grid[0] * grid[1]
    return upsample(scores[:, prefix:].reshape(-1, *grid), structure.image_size)


# -- removals ------------------------------------------------------------------------------------
class ImageRemoval:
    """Pixels are removed by setting them to 0 in [0, 1] image space (all channels), as the paper;
    ``to_inputs`` turns [0, 1] images (B, C, H, W) into model inputs (e.g. re-normalising)."""

    def __init__(self, images: torch.Tensor, to_inputs: Callable[[torch.Tensor], dict]) -> None:
        self.images = images
        self.to_inputs = to_inputs
        self.removable = torch.ones(images.shape[0], images.shape[2] * images.shape[3], dtype=torch.bool)

    def original(self) -> dict:
        return self.to_inputs(self.images)

    def inputs(self, drop: torch.Tensor) -> dict:
        keep = (~drop).reshape(self.images.shape[0], 1, *self.images.shape[2:]).to(self.images.dtype)
        return self.to_inputs(self.images * keep)


class TokenRemoval:
    """Tokens are replaced by the mask token (or the pad token without one), or deleted with
    ``mode="delete"``. Special tokens ([CLS], [SEP], …) and padding are never removed."""

    def __init__(self, inputs: dict, tokenizer, mode: str = "mask") -> None:
        if mode not in ("mask", "delete"):
            raise ValueError(f"unknown text removal {mode!r}; choose 'mask' or 'delete'")
        self.original_inputs = inputs
        self.mode = mode
        ids = inputs["input_ids"]
        special = torch.isin(ids, torch.tensor(sorted(tokenizer.all_special_ids), dtype=ids.dtype))
        attention = inputs.get("attention_mask", torch.ones_like(ids)).bool()
        self.removable = attention & ~special
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.replacement = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else self.pad_id

    def original(self) -> dict:
        return self.original_inputs

    def inputs(self, drop: torch.Tensor) -> dict:
        if self.mode == "mask":
            return {**self.original_inputs, "input_ids": self.original_inputs["input_ids"].masked_fill(drop, self.replacement)}
        return self._delete(drop)

    def _delete(self, drop: torch.Tensor) -> dict:
        """Keep the remaining tokens in order, re-padded on the right to the longest row."""
        attention = self.original_inputs.get("attention_mask", torch.ones_like(self.original_inputs["input_ids"])).bool()
        keep = attention & ~drop
        length = int(keep.sum(-1).max())
        result = {}
        for name, values in self.original_inputs.items():
            fill = self.pad_id if name == "input_ids" else 0
            rows = [row[k][:length] for row, k in zip(values, keep)]
            result[name] = torch.stack([F.pad(row, (0, length - row.shape[0]), value=fill) for row in rows])
        result["attention_mask"] = torch.stack([F.pad(torch.ones(int(k.sum()), dtype=torch.long), (0, length - int(k.sum()))) for k in keep])
        return result


def removal_masks(scores: torch.Tensor, removable: torch.Tensor, counts: Sequence[int], most_relevant_first: bool) -> torch.Tensor:
    """(B, U) True for the ``counts[b]`` removable units ranked first (stable order on ties)."""
    values = scores.detach().float().reshape(removable.shape).numpy().astype(np.float64)
    values = np.where(removable.numpy(), values, -np.inf if most_relevant_first else np.inf)
    order = ranking(values, most_relevant_first)
    drop = np.zeros(values.shape, dtype=bool)
    for row, count in enumerate(counts):
        drop[row, order[row, :count]] = True
    return torch.from_numpy(drop)


# -- model outputs -------------------------------------------------------------------------------
@torch.no_grad()
def predict(model, inputs: dict) -> torch.Tensor:
    """The model's logits (on the CPU, float) for inputs built on the CPU."""
    device = next(model.parameters(), torch.empty(0)).device
    return model_logits(model(**{name: value.to(device) for name, value in inputs.items()})).float().cpu()


@dataclass
class Readout:
    """Per input: whether the prediction equals the label, and the explained class's probability and logit."""

    correct: np.ndarray
    probability: np.ndarray
    logit: np.ndarray


def read(logits: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor) -> Readout:
    index = classes[:, None]
    return Readout(
        correct=(logits.argmax(-1) == labels).numpy(),
        probability=logits.softmax(-1).gather(-1, index)[:, 0].numpy(),
        logit=logits.gather(-1, index)[:, 0].numpy(),
    )


# -- the tests -----------------------------------------------------------------------------------
def perturbation_curves(
    model, removal, scores, labels, classes, *, most_relevant_first: bool, fractions=PERTURBATION_FRACTIONS, base_logits=None
) -> list[Readout]:
    """The paper's perturbation test on one batch: for each fraction f, remove floor(f · units) of
    each input's removable units, most relevant first (positive) or least relevant first
    (negative), and read the model. Fraction 0 is the unperturbed input."""
    total = removal.removable.sum(-1).tolist()
    readouts = []
    for fraction in fractions:
        if fraction == 0:
            logits = base_logits if base_logits is not None else predict(model, removal.original())
        else:
            counts = [math.floor(fraction * n + 1e-9) for n in total]
            logits = predict(model, removal.inputs(removal_masks(scores, removal.removable, counts, most_relevant_first)))
        readouts.append(read(logits, labels, classes))
    return readouts


def faithfulness_scores(model, removal, scores, labels, classes, *, bins=ERASER_BINS, base_logits=None) -> list[dict]:
    """ERASER comprehensiveness and sufficiency per input (DeYoung et al. 2020): for each bin, the
    explained class's probability without the top units, and with only the top units (the other
    removable units removed; special tokens stay)."""
    full = read(base_logits if base_logits is not None else predict(model, removal.original()), labels, classes).probability
    total = removal.removable.sum(-1).tolist()
    without, only = [], []
    for fraction in bins:
        top = removal_masks(scores, removal.removable, [top_fraction_count(n, fraction) for n in total], True)
        without.append(read(predict(model, removal.inputs(top)), labels, classes).probability)
        only.append(read(predict(model, removal.inputs(removal.removable & ~top)), labels, classes).probability)
    without, only = np.stack(without), np.stack(only)
    return [
        {
            "p_full": float(full[b]),
            "p_without_top": without[:, b].tolist(),
            "p_only_top": only[:, b].tolist(),
            "comprehensiveness": comprehensiveness(full[b], without[:, b]),
            "sufficiency": sufficiency(full[b], only[:, b]),
        }
        for b in range(len(full))
    ]


def normaliser(mean: Sequence[float], std: Sequence[float], dtype=torch.float32) -> Callable[[torch.Tensor], dict]:
    """[0, 1] images -> ``{"pixel_values": (x − mean) / std}``, the usual image-processor step."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return lambda images: {"pixel_values": ((images - mean_t) / std_t).to(dtype)}

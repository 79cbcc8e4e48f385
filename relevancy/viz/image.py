"""Heatmaps over images: bilinear upsampling, colouring and alpha blending, PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .colors import colour, normalise


def upsample(heatmap, size) -> np.ndarray:
    """Bilinear upsampling of an (h, w) map to ``size`` (H, W), as the paper's evaluation does."""
    tensor = torch.as_tensor(np.asarray(heatmap, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


def overlay(image, heatmap, *, signed: bool, alpha: float = 0.5) -> np.ndarray:
    """The coloured map blended over the image (H, W, 3; uint8 or floats in [0, 1])."""
    image = np.asarray(image, dtype=np.float32)
    image = image / 255.0 if image.max() > 1.0 else image
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    values = normalise(upsample(heatmap, image.shape[:2]), signed)
    coloured = colour(values, signed).astype(np.float32) / 255.0
    return ((1 - alpha) * image + alpha * coloured).clip(0, 1).__mul__(255).round().astype(np.uint8)


def save_png(path, image: np.ndarray) -> Path:
    from PIL import Image

    path = Path(path)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
    return path

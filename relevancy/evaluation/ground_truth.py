"""Scoring maps against evidence known by construction (the CLEVR-XAI protocol, Arras et al. 2022).

On a task where the label is decided by known parts of the input (planted trigger words, one pasted
object), a faithful map of the class that decided must point at those parts. Per item and explained
class, with ``evidence`` the known parts (a boolean mask over the map's units: tokens or pixels):

- ``precision_at_k``: the share of the map's top-k units that are evidence, k = the number of
  evidence units (CLEVR-XAI's "relevance rank accuracy");
- ``auprc``: the average precision of the map's scores ranking the evidence (threshold-free);
- ``mass``: the map's positive relevance on the evidence over its positive relevance on all units
  (CLEVR-XAI's "relevance mass accuracy"; negative scores count as no support).

Signed maps are ranked by their signed scores: evidence scored negative (against the class) ranks
low. All three are NaN where they are undefined (no evidence unit; no positive relevance).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .metrics import average_precision, ranking

#: The ground-truth metrics (all higher is better).
GROUND_TRUTH_METRICS = ("precision_at_k", "auprc", "mass")


def precision_at_k(scores, evidence, k: int | None = None) -> float:
    """Share of the ``k`` highest-scored units that are evidence (stable order: among equal scores the
    lower index first); ``k`` defaults to the number of evidence units. NaN without evidence."""
    scores, evidence = _pair(scores, evidence)
    if k is None:
        if not evidence.any():
            return math.nan
        k = int(evidence.sum())
    if not 1 <= k <= scores.size:
        raise ValueError(f"k must be between 1 and the number of units ({scores.size}), got {k}")
    return float(evidence[ranking(scores)[:k]].sum() / k)


def relevance_mass(scores, evidence) -> float:
    """Positive relevance on the evidence / positive relevance on all units; NaN when no unit has
    positive relevance (the map supports nothing) or there is no evidence."""
    scores, evidence = _pair(scores, evidence)
    positive = np.clip(scores, 0, None)
    total = positive.sum()
    if total <= 0 or not evidence.any():
        return math.nan
    return float(positive[evidence].sum() / total)


def evidence_scores(scores, evidence, units=None) -> dict:
    """The three ground-truth metrics of one map; ``units`` (a boolean mask like ``evidence``) keeps
    only the units that may be scored (e.g. leaves out [CLS], [SEP] and padding)."""
    scores, evidence = _pair(scores, evidence)
    if units is not None:
        units = np.asarray(units).astype(bool).ravel()
        if units.shape != scores.shape:
            raise ValueError(f"units has {units.size} entries for {scores.size} scores")
        if (evidence & ~units).any():
            raise ValueError("some evidence lies outside the scored units: the evidence mask must be a subset of units")
        scores, evidence = scores[units], evidence[units]
    return {
        "precision_at_k": precision_at_k(scores, evidence),
        "auprc": average_precision(scores, evidence),
        "mass": relevance_mass(scores, evidence),
    }


def _pair(scores, evidence) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    evidence = np.asarray(evidence).astype(bool).ravel()
    if scores.shape != evidence.shape:
        raise ValueError(f"{scores.size} scores for an evidence mask of {evidence.size} units: give one evidence flag per map unit")
    if not np.isfinite(scores).all():
        raise ValueError("the map has NaN or infinite scores: it cannot rank the units")
    return scores, evidence


def score_maps(model, inputs, method, targets: list, evidence: list, units=None, *, structure=None) -> list[list[dict]]:
    """Explain ``inputs`` with ``method`` for each target of ``targets`` (each as ``relevancy.attribute``
    takes it: None for the predicted class, a class index, a tensor of one class per item) and score
    every item's map against its evidence.

    ``evidence[t]`` is (B, units) for target ``t``: tokens (B, sequence) for a text model, pixels
    (B, H, W) at the model's input size for an image model (token and patch maps are upsampled to
    pixels as the segmentation test does). An item whose evidence for a target is all False gets
    NaN precision and AUPRC. ``units`` (same shape) marks the units that may be scored; for text it
    defaults to the real, non-special tokens when the model's special tokens are known from the
    inputs' ``special_tokens_mask`` (otherwise all attended tokens).

    Returns per target a list of per-item dicts: the three metrics, the explained class
    (``target_class``) and the model's prediction (``predicted``).
    """
    from ..adapters.structure import describe
    from ..engine import attribute_targets
    from .perturbation import pixel_maps

    structure = structure or describe(model)
    if len(evidence) != len(targets):
        raise ValueError(f"{len(targets)} targets but {len(evidence)} evidence masks: give one (B, units) mask per target")
    model_inputs = {k: v for k, v in inputs.items() if k != "special_tokens_mask"}
    attributions = attribute_targets(model, model_inputs, method, list(targets), structure=structure, progress=False)
    if units is None and structure.modality == "text":
        units = model_inputs.get("attention_mask", torch.ones_like(model_inputs["input_ids"])).bool()
        if "special_tokens_mask" in inputs:
            units = units & ~inputs["special_tokens_mask"].bool()
    results = []
    for attribution, masks in zip(attributions, evidence):
        maps = pixel_maps(attribution, structure) if structure.modality == "image" else attribution.scores
        maps = maps.detach().float().cpu().numpy()
        masks = np.asarray(masks.cpu() if isinstance(masks, torch.Tensor) else masks).astype(bool)
        if masks.shape != maps.shape:
            raise ValueError(f"the evidence is {masks.shape} but the maps are {maps.shape}: give one flag per map unit "
                             "(tokens for text; pixels at the model's input size for images)")
        predicted = attribution.logits.argmax(-1).cpu()
        per_item = []
        for b in range(maps.shape[0]):
            kept = None if units is None else np.asarray(units[b].cpu() if isinstance(units, torch.Tensor) else units[b])
            per_item.append({
                **evidence_scores(maps[b], masks[b], kept),
                "target_class": int(attribution.target_classes[b]),
                "predicted": int(predicted[b]),
            })
        results.append(per_item)
    return results

"""The paper's evaluation metrics and ERASER's faithfulness scores, as pure numpy functions.

Every metric that reaches a results table has an entry in ``HIGHER_IS_BETTER`` so that tables can
mark each row ↑ or ↓. Ties are broken deterministically everywhere: orders come from a *stable*
sort, so among equal scores the earlier position (lower index) ranks first, whichever direction
is sorted; average precision groups equal scores into one threshold (as scikit-learn does), so
it does not depend on the order of ties at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Direction of every metric a results table can show (True: higher is better).
HIGHER_IS_BETTER: dict[str, bool] = {
    "perturbation_auc_positive": False,  # most relevant removed first: a good map makes the model fail fast
    "perturbation_auc_negative": True,  # least relevant removed first: a good map keeps the model right
    "pixel_accuracy": True,
    "iou_foreground": True,
    "iou_background": True,
    "miou": True,
    "map": True,
    "token_precision": True,
    "token_recall": True,
    "token_f1": True,
    "auprc": True,
    "comprehensiveness": True,
    "sufficiency": False,
    "class_specificity": True,
}

#: The paper's perturbation steps; 0 is the unperturbed input.
PERTURBATION_FRACTIONS = tuple(round(0.1 * i, 1) for i in range(10))
#: ERASER's bins for comprehensiveness and sufficiency (fractions of the input's tokens).
ERASER_BINS = (0.01, 0.05, 0.1, 0.2, 0.5)
#: The k of token-F1@k (number of top words taken as the rationale), as in the paper's Figure.
RATIONALE_KS = tuple(range(5, 85, 5))


def arrow(metric: str) -> str:
    """↑ or ↓ for a metric of ``HIGHER_IS_BETTER``."""
    if metric not in HIGHER_IS_BETTER:
        raise KeyError(f"no direction registered for metric {metric!r}; add it to HIGHER_IS_BETTER")
    return "↑" if HIGHER_IS_BETTER[metric] else "↓"


def ranking(scores: np.ndarray, most_relevant_first: bool = True) -> np.ndarray:
    """Indices ordering the last axis by score (stable: among ties, lower index first)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.argsort(-scores if most_relevant_first else scores, axis=-1, kind="stable")


# -- perturbation ------------------------------------------------------------------------------
def perturbation_auc(accuracies_or_values, fractions=PERTURBATION_FRACTIONS) -> float:
    """Area under a perturbation curve, ×100, as the paper reports it.

    Protocol (Chefer et al. 2021, Sec. 5): the value (top-1 accuracy, or a probability or logit
    averaged over the data set) is measured on the unperturbed input (x = 0) and after removing
    10 %, 20 %, …, 90 % of the input (x = 0.1 … 0.9); the area is the trapezoid rule over those x.
    Removing the most relevant first (positive): lower is better; least relevant first
    (negative): higher is better.
    """
    values = np.asarray(accuracies_or_values, dtype=np.float64)
    x = np.asarray(fractions, dtype=np.float64)
    if values.shape != x.shape or values.ndim != 1:
        raise ValueError(f"{values.shape[0] if values.ndim else 0} values for {x.shape[0]} fractions: give one value per fraction")
    if np.any(np.diff(x) <= 0):
        raise ValueError("fractions must increase strictly (0, 0.1, …, 0.9)")
    return float(np.sum((values[1:] + values[:-1]) * np.diff(x)) / 2 * 100)


# -- average precision ---------------------------------------------------------------------------
def average_precision(scores, labels) -> float:
    """Average precision of ``scores`` ranking the positives of ``labels``: Σ (R_n − R_{n−1}) P_n
    over the distinct score thresholds (scikit-learn's definition; equal scores form one threshold).
    NaN when there is no positive (precision–recall is undefined then)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores for {labels.size} labels")
    positives = labels.sum()
    if positives == 0:
        return math.nan
    order = ranking(scores)
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_threshold = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_threshold]
    precision = true_positives / (last_of_threshold + 1)
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# -- segmentation --------------------------------------------------------------------------------
def normalise(relevance_map) -> np.ndarray:
    """Min-max to [0, 1]; a constant map becomes all zeros (no pixel stands out)."""
    values = np.asarray(relevance_map, dtype=np.float64)
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def segmentation_stats(relevance_map, mask) -> dict:
    """One image's counts for ``SegmentationAccumulator`` (JSON-ready, so runs can resume)."""
    values = normalise(relevance_map)
    mask = np.asarray(mask).astype(bool)
    if values.shape != mask.shape:
        raise ValueError(f"the map is {values.shape} but the mask is {mask.shape}: upsample the map to the mask's size")
    foreground = values > values.mean()
    intersection = [int(np.sum(~foreground & ~mask)), int(np.sum(foreground & mask))]
    union = [int(np.sum(~foreground | ~mask)), int(np.sum(foreground | mask))]
    return {
        "correct": int(np.sum(foreground == mask)),
        "pixels": int(mask.size),
        "intersection": intersection,  # [background, foreground]
        "union": union,
        "ap": average_precision(values, mask),
    }


@dataclass
class SegmentationAccumulator:
    """The paper's segmentation test (ImageNet-segmentation protocol) over a data set.

    Per image: upsample the map to the image (caller), min-max normalise, foreground = map > its
    mean. Pixel accuracy = correct pixels / all pixels, and intersections and unions of the
    background and foreground classes, are summed over the whole data set before dividing;
    mIoU = mean of the two IoUs. mAP = mean over images of the average precision of the
    normalised map against the mask (images without foreground have none and are left out,
    counted in ``images_without_foreground``). All values are fractions in [0, 1].
    """

    correct: int = 0
    pixels: int = 0
    intersection: list = field(default_factory=lambda: [0, 0])
    union: list = field(default_factory=lambda: [0, 0])
    aps: list = field(default_factory=list)
    images: int = 0
    images_without_foreground: int = 0

    def add(self, relevance_map, mask) -> dict:
        stats = segmentation_stats(relevance_map, mask)
        self.add_stats(stats)
        return stats

    def add_stats(self, stats: dict) -> None:
        self.correct += stats["correct"]
        self.pixels += stats["pixels"]
        for i in (0, 1):
            self.intersection[i] += stats["intersection"][i]
            self.union[i] += stats["union"][i]
        self.images += 1
        if stats["ap"] is None or math.isnan(stats["ap"]):
            self.images_without_foreground += 1
        else:
            self.aps.append(stats["ap"])

    def result(self) -> dict:
        if self.images == 0:
            raise ValueError("no image was added: nothing to score")
        iou = [i / u if u else math.nan for i, u in zip(self.intersection, self.union)]
        return {
            "pixel_accuracy": self.correct / self.pixels,
            "iou_background": iou[0],
            "iou_foreground": iou[1],
            "miou": float(np.mean(iou)),
            "map": float(np.mean(self.aps)) if self.aps else math.nan,
        }


# -- rationales (ERASER Movie Reviews) -----------------------------------------------------------
def word_scores(token_scores, word_ids, num_words: int) -> np.ndarray:
    """A word's score is the max over its word pieces. Tokens without a word (special tokens)
    are ignored; words with no token (cut by truncation) get -inf, so they are never chosen."""
    scores = np.full(num_words, -np.inf)
    for score, word in zip(np.asarray(token_scores, dtype=np.float64), word_ids):
        if word is not None:
            scores[word] = max(scores[word], score)
    return scores


def top_k_prf(scores, evidence, k: int) -> tuple[float, float, float]:
    """Token-level precision, recall and F1 of the top-``k`` words (stable order on ties; words
    scored -inf are not taken) against the evidence mask of one document."""
    scores = np.asarray(scores, dtype=np.float64)
    evidence = np.asarray(evidence).astype(bool)
    chosen = ranking(scores)[:k]
    chosen = chosen[np.isfinite(scores[chosen])]
    hits = int(evidence[chosen].sum())
    precision = hits / len(chosen) if len(chosen) else 0.0
    recall = hits / evidence.sum() if evidence.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def rationale_scores(scores, evidence, ks=RATIONALE_KS) -> dict:
    """One document's rationale agreement (the paper's Movie Reviews protocol, README of the data):
    token precision/recall/F1 of the top-k words for each k, and AUPRC (the average precision of
    the word scores against the evidence mask; words cut by truncation score lowest). The data set's
    values are the macro averages of these over documents."""
    return {
        "prf": {int(k): top_k_prf(scores, evidence, k) for k in ks},
        "auprc": average_precision(scores, evidence),
    }


# -- ERASER faithfulness -------------------------------------------------------------------------
def top_fraction_count(num_units: int, fraction: float) -> int:
    """Units in the top ``fraction`` of an input for the ERASER bins: ceil, and at least 1."""
    return min(num_units, max(1, math.ceil(fraction * num_units - 1e-9)))


def comprehensiveness(full_probability: float, probabilities_without_top) -> float:
    """ERASER comprehensiveness (DeYoung et al. 2020) as AOPC: the mean over the bins
    (1, 5, 10, 20, 50 %) of p(y|x) − p(y|x without its top-k % units), y the explained class.
    Higher is better: removing what the map points at should hurt."""
    return float(np.mean(full_probability - np.asarray(probabilities_without_top, dtype=np.float64)))


def sufficiency(full_probability: float, probabilities_of_top_only) -> float:
    """ERASER sufficiency as AOPC: the mean over the bins of p(y|x) − p(y|only the top-k % units).
    Lower is better: what the map points at should suffice for the prediction."""
    return float(np.mean(full_probability - np.asarray(probabilities_of_top_only, dtype=np.float64)))


# -- class specificity ---------------------------------------------------------------------------
def class_specificity(relevance_map, own_mask, other_mask) -> float:
    """For an image with two objects: the share of the map's positive mass that lies on the
    explained class's object, out of the mass on both objects (1 = only on its own object,
    0.5 = no preference, NaN when neither object gets any positive relevance)."""
    positive = np.clip(np.asarray(relevance_map, dtype=np.float64), 0, None)
    own = positive[np.asarray(own_mask).astype(bool)].sum()
    other = positive[np.asarray(other_mask).astype(bool)].sum()
    return float(own / (own + other)) if own + other > 0 else math.nan

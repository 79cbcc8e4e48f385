"""Cross-entropy plus terms on a differentiable relevance map: move the model's evidence.

Text: penalise the share of relevance on given positions (a shortcut token, words from an audit),
and/or reward the share on human rationales. Images (RobustViT, Chefer et al., NeurIPS 2022):
relevance on the patch grid should be 0 on the background and 1 on the foreground.

Maps are normalised per sample (shares of the positive relevance over content positions for text,
divided by the maximum for images), so the weights mean the same for every model and method.
Special tokens are not content: the classifier's [CLS] holds the rollout's identity term.

A share can be lowered without dropping the evidence (push the token's relevance negative, or raise
the other tokens'), so ``penalty_mode="magnitude"`` penalises instead the mean squared relevance of
the penalised positions, unnormalised, best on a signed map (input_x_gradient, full_lrp): in the
spirit of "Right for the Right Reasons" (Ross et al., IJCAI 2017), which penalises input gradients.
A local map can still be gamed: the model can make itself flat around the token (small gradient)
while removing the token still flips the prediction. ``penalty_mode="removal"`` therefore penalises
integrated gradients along the path from the removal baseline (the penalised tokens replaced by
[MASK]) to the input: by completeness their sum is the change of the class margin when the tokens
are removed, so it is 0 only when the model does not use them, however flat it is near the input.
The [MASK] baseline can itself be gamed: [MASK] never occurs in the cross-entropy's data, so the
model is free to give it the token's meaning, and then masking the token changes nothing while
deleting it still does. ``penalty_mode="deletion"`` penalises the leave-one-out (occlusion) relevance
of the tokens instead: the exact change of the margin when they are deleted from the sequence, what a
test without the token measures (two eval-mode forwards, no baseline to game).

Rationales can be rewarded by their share of the map (``rationale_mode="share"``) or, without a map,
by their deletion effect (``rationale_mode="comprehensiveness"``, ERASER's comprehensiveness as a
loss): with the rationale tokens deleted the prediction should fall to chance, so the term is
KL(uniform || p(class | text without the rationales)), 0 exactly at chance. Deleted, not masked, for
the reason above: [MASK] never occurs in the data, so a model could learn "many masks → chance" instead
of relying on the rationale. Bounded below by 0 (unlike a raw drop of the log-probability), it does
not reward predicting the other class without the rationale. One extra forward/backward per text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters.outputs import evaluating, model_logits
from ..adapters.structure import describe
from ..engine import attribute
from ..methods import get_method
from ..methods.integrated_gradients import IntegratedGradients
from ..targets import Function

PENALTY_MODES = ("share", "magnitude", "removal", "deletion")
RATIONALE_MODES = ("share", "comprehensiveness")
MASK_KEYS = ("labels", "penalty_mask", "rationale_mask", "special_tokens_mask", "foreground_mask")
_TINY = 1e-30


@dataclass
class RelevanceLossOutput:
    loss: torch.Tensor  # what to backpropagate
    classification: torch.Tensor  # the cross-entropy part (unweighted)
    penalty: torch.Tensor  # mean share, squared relevance ("magnitude"), squared removal or deletion effect (unweighted)
    rationale: torch.Tensor  # mean share of relevance outside the rationales, or KL(uniform || p without them) (unweighted)
    foreground: torch.Tensor  # RobustViT foreground term (unweighted)
    background: torch.Tensor  # RobustViT background term (unweighted)
    logits: torch.Tensor  # of the model's own forward (its current mode: dropout while training)
    scores: torch.Tensor | None  # the differentiable map (B, N), None when no relevance term is weighted

    def parts(self) -> dict[str, float]:
        """The terms as floats, for logging."""
        names = ("loss", "classification", "penalty", "rationale", "foreground", "background")
        return {name: float(getattr(self, name).detach()) for name in names}


class RelevanceLoss(nn.Module):
    """``loss = classification_weight * CE + penalty_weight * penalty + rationale_weight * rationale
    + foreground_weight * foreground + background_weight * background``.

    ``penalty_mode``: "share" (default), the penalised positions' share of the positive relevance;
    "magnitude", the mean over them of the squared raw relevance (its sign and the other tokens
    cannot hide it); or "removal", per sample the squared sum of their integrated gradients from
    the input with them replaced by ``removal_id`` (the mask token with ``for_tokenizer``), for the
    margin of the explained class over the mean of the others: about the squared change of that
    margin when the tokens are removed. ``removal_steps`` points on the path, each drawn in its
    interval while the model is in training mode (unbiased), the midpoints in eval mode;
    or "deletion", per sample the squared change of that margin when the tokens are deleted (the
    sequence closes up): exact, and no baseline token whose meaning the model could move.
    "removal" and "deletion" ignore ``method``. ``rationale_mode``: "share" (default), the share of the
    positive relevance outside the rationales; or "comprehensiveness", per text with a rationale
    KL(uniform || class probabilities with the rationale tokens deleted), in the model's current mode
    (the map's method is not used). ``insert_penalised`` (removal, deletion): samples without a penalised
    token get one (the lowest of ``penalised_ids``) inserted at a random position after the first
    token, for the penalty only: the token's effect is then penalised in every context, not only in
    those it came with in the data (a shortcut's token appears with one class only).

    Call it as ``loss_fn(model, batch)`` with the model's inputs plus ``labels`` and, as needed,
    ``penalty_mask`` / ``rationale_mask`` (B, N) over token positions, ``special_tokens_mask`` (B, N),
    ``foreground_mask`` (B, H, W) in pixels or on the patch grid. ``penalised_ids`` builds the
    penalty mask from the input ids when the batch has none. The cross-entropy is that of a plain
    forward in the model's current mode (dropout while training); the map comes from a second,
    eval-mode forward (``attribute`` switches dropout off and restores the mode).
    """

    def __init__(
        self,
        method="transformer_attribution",
        *,
        classification_weight: float = 1.0,
        penalty_weight: float = 1.0,
        rationale_weight: float = 1.0,
        foreground_weight: float = 0.0,
        background_weight: float = 0.0,
        target: str = "label",
        penalised_ids: Iterable[int] | None = None,
        special_ids: Iterable[int] | None = None,
        penalty_mode: str = "share",
        rationale_mode: str = "share",
        removal_id: int | None = None,
        removal_steps: int = 8,
        insert_penalised: bool = False,
    ) -> None:
        super().__init__()
        if target not in ("label", "predicted"):
            raise ValueError(f"unknown target {target!r}: explain the true 'label' or the 'predicted' class")
        if penalty_mode not in PENALTY_MODES:
            raise ValueError(f"unknown penalty_mode {penalty_mode!r}: choose one of {', '.join(PENALTY_MODES)}")
        if rationale_mode not in RATIONALE_MODES:
            raise ValueError(f"unknown rationale_mode {rationale_mode!r}: choose one of {', '.join(RATIONALE_MODES)}")
        weights = dict(
            classification_weight=classification_weight, penalty_weight=penalty_weight, rationale_weight=rationale_weight,
            foreground_weight=foreground_weight, background_weight=background_weight,
        )
        if penalty_mode == "removal" and removal_id is None:
            raise ValueError(
                "penalty_mode='removal' needs removal_id, the token that replaces the penalised ones "
                "(RelevanceLoss.for_tokenizer uses the mask token)"
            )
        if insert_penalised and (penalty_mode not in ("removal", "deletion") or not penalised_ids):
            raise ValueError("insert_penalised needs penalty_mode='removal' or 'deletion' and penalised_ids (the token to insert)")
        if removal_steps < 1:
            raise ValueError("removal_steps must be >= 1")
        negative = [name for name, value in weights.items() if value < 0]
        if negative:
            raise ValueError(f"weights must be >= 0: {', '.join(negative)}")
        self.method = get_method(method)
        self.weights = weights
        self.target = target
        self.penalty_mode = penalty_mode
        self.rationale_mode = rationale_mode
        self.penalised_ids = sorted({int(i) for i in penalised_ids or ()})
        self.special_ids = sorted({int(i) for i in special_ids or ()})
        self.removal_id = removal_id
        self.removal_steps = removal_steps
        self.insert_penalised = insert_penalised

    @classmethod
    def for_tokenizer(cls, tokenizer, **options) -> "RelevanceLoss":
        """With the tokenizer's special tokens left out of the normalisation, and its mask token (pad
        where there is none) as the removal baseline."""
        removal = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.pad_token_id
        options.setdefault("removal_id", removal)
        return cls(special_ids=tokenizer.all_special_ids, **options)

    def forward(self, model: nn.Module, batch: dict, relevance_scale: float = 1.0) -> RelevanceLossOutput:
        """``relevance_scale`` multiplies the weights of every term but the cross-entropy (a warm-up ramp)."""
        inputs = {k: v for k, v in batch.items() if k not in MASK_KEYS}
        labels = batch.get("labels")
        if labels is None and (self.target == "label" or self.weights["classification_weight"] > 0):
            raise ValueError("the batch has no 'labels': the cross-entropy and the explained class need them")
        w = self.weights
        logits = model_logits(model(**inputs))
        zero = logits.new_zeros(())
        classification = F.cross_entropy(logits, labels) if labels is not None else zero
        penalty = rationale = foreground = background = zero
        scores = None
        target = labels if self.target == "label" else None
        penalty_mask = batch.get("penalty_mask")
        if penalty_mask is None and self.penalised_ids and "input_ids" in inputs:
            penalty_mask = torch.isin(inputs["input_ids"], torch.tensor(self.penalised_ids, device=inputs["input_ids"].device))
        removal = self.penalty_mode in ("removal", "deletion")
        if removal and penalty_mask is not None and (penalty_mask.any() or self.insert_penalised) and w["penalty_weight"] > 0:
            scores, penalty = self._removal_penalty(model, inputs, penalty_mask.bool(), target, logits)
        rationale_mask = batch.get("rationale_mask")
        deletion_reward = self.rationale_mode == "comprehensiveness"
        if deletion_reward and rationale_mask is not None and rationale_mask.any() and w["rationale_weight"] > 0:
            rationale = self._comprehensiveness(model, inputs, rationale_mask.bool())
        # the weights of terms that need the map (a penalty without marked positions needs none)
        others = ("foreground_weight", "background_weight") + (() if removal or penalty_mask is None else ("penalty_weight",))
        others += () if deletion_reward else ("rationale_weight",)
        if any(w[k] > 0 for k in others):
            scores = attribute(model, inputs, self.method, target, differentiable=True).scores
            if "input_ids" in inputs:
                shares = self._shares(scores, inputs, batch)
                if penalty_mask is not None and w["penalty_weight"] > 0 and not removal:
                    if self.penalty_mode == "magnitude":
                        marked = penalty_mask.to(scores.dtype)
                        squared = (scores**2 * marked).sum(-1) / marked.sum(-1).clamp_min(1)
                        penalty = _mean_over_marked(squared, penalty_mask)
                    else:
                        penalty = _mean_over_marked((shares * penalty_mask).sum(-1), penalty_mask)
                if rationale_mask is not None and w["rationale_weight"] > 0 and not deletion_reward:
                    rationale = _mean_over_marked(1 - (shares * rationale_mask).sum(-1), rationale_mask)
            elif batch.get("foreground_mask") is not None:
                foreground, background = self._robustvit(model, scores, batch["foreground_mask"])
        loss = w["classification_weight"] * classification + relevance_scale * (
            w["penalty_weight"] * penalty + w["rationale_weight"] * rationale
            + w["foreground_weight"] * foreground + w["background_weight"] * background
        )
        return RelevanceLossOutput(loss, classification, penalty, rationale, foreground, background, logits, scores)

    def _removal_penalty(self, model, inputs, mask, target, logits) -> tuple[torch.Tensor, torch.Tensor]:
        """(map, penalty): integrated gradients from the input with the marked tokens masked, or their
        joint deletion effect spread over them ("deletion"); the squared sum over the marked positions,
        averaged over the samples that have any."""
        if "input_ids" not in inputs:
            raise ValueError(f"penalty_mode={self.penalty_mode!r} needs a text model called with input_ids")
        classes = (target if target is not None else logits.detach().argmax(-1)).to(logits.device).long()

        def margin(out):  # linear in the logits, so completeness holds for it along the path
            own = out.gather(-1, classes[:, None]).squeeze(-1)
            return own - (out.sum(-1) - own) / max(out.shape[-1] - 1, 1)

        if self.insert_penalised:
            inputs, mask = _insert(inputs, mask, self.penalised_ids[0])
        if self.penalty_mode == "deletion":
            with evaluating(model):  # as the maps: no dropout, so the two forwards differ only by the tokens
                full, deleted = (model_logits(model(**x)) for x in (inputs, _delete(inputs, mask)))
            effect = margin(full) - margin(deleted)
            scores = mask * (effect / mask.sum(-1).clamp_min(1))[:, None]
            return scores, _mean_over_marked(effect**2, mask)
        baseline = inputs["input_ids"].masked_fill(mask, self.removal_id)
        method = IntegratedGradients(self.removal_steps, baseline_ids=baseline, stratified=model.training)
        scores = attribute(model, inputs, method, Function(margin), differentiable=True).scores
        effect = (scores * mask).sum(-1)
        return scores, _mean_over_marked(effect**2, mask)

    @staticmethod
    def _comprehensiveness(model, inputs, mask) -> torch.Tensor:
        """KL(uniform || p) of the texts with their rationale tokens deleted, averaged over the texts that have any."""
        marked = mask.any(-1)
        deleted = _delete({key: value[marked] for key, value in inputs.items()}, mask[marked], "rationale_mode='comprehensiveness'")
        longest = int(deleted["attention_mask"].sum(-1).max())  # the columns freed at the end are padding only
        log_p = model_logits(model(**{key: value[:, :longest] for key, value in deleted.items()})).log_softmax(-1)
        return (-math.log(log_p.shape[-1]) - log_p.mean(-1)).mean()

    def _shares(self, scores: torch.Tensor, inputs: dict, batch: dict) -> torch.Tensor:
        """Each content position's share of the sample's positive relevance."""
        content = torch.ones_like(scores, dtype=torch.bool)
        if inputs.get("attention_mask") is not None:
            content &= inputs["attention_mask"].bool()
        if batch.get("special_tokens_mask") is not None:
            content &= ~batch["special_tokens_mask"].bool()
        if self.special_ids:
            content &= ~torch.isin(inputs["input_ids"], torch.tensor(self.special_ids, device=scores.device))
        positive = scores.clamp(min=0) * content
        return positive / positive.sum(-1, keepdim=True).clamp_min(_TINY)

    @staticmethod
    def _robustvit(model, scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grid = describe(model).grid
        if grid is None:
            raise ValueError("foreground masks need an image model with a patch grid (image_size and patch_size in its config)")
        patches = scores[:, -grid[0] * grid[1] :].reshape(-1, *grid).clamp(min=0)
        relevance = patches / patches.flatten(1).amax(-1).clamp_min(_TINY)[:, None, None]
        mask = mask.to(relevance.dtype)
        if mask.dim() != 3:
            raise ValueError(f"foreground_mask must be (batch, height, width), got shape {tuple(mask.shape)}")
        if tuple(mask.shape[-2:]) != grid:  # pixels: the foreground fraction of each patch
            mask = F.adaptive_avg_pool2d(mask[:, None], grid)[:, 0]
        background = ((relevance * (1 - mask)) ** 2).mean()
        foreground = ((relevance * mask - mask) ** 2).mean()
        return foreground, background


def _delete(inputs: dict, mask: torch.Tensor, option: str = "penalty_mode='deletion'") -> dict:
    """``inputs`` with the marked positions deleted: each row closes up to the left and is padded
    at the end (attention mask 0, every other input 0), so positions shift as in a text without them."""
    ids = _token_shaped(inputs, option)
    inputs = {**inputs, "attention_mask": inputs.get("attention_mask", torch.ones_like(ids))}
    kept = ~mask
    # a stable sort puts the kept positions first, in their order
    order = torch.sort((~kept).to(torch.int8), dim=-1, stable=True).indices
    valid = torch.arange(ids.shape[1], device=ids.device)[None] < kept.sum(-1, keepdim=True)
    return {key: value.gather(-1, order) * valid.to(value.dtype) for key, value in inputs.items()}


def _token_shaped(inputs: dict, option: str) -> torch.Tensor:
    """``input_ids``, after checking that every input is a tensor shaped like it (they are edited per token)."""
    ids = inputs["input_ids"]
    odd = [key for key, value in inputs.items() if not isinstance(value, torch.Tensor) or value.shape != ids.shape]
    if odd:
        raise ValueError(f"{option} needs inputs shaped like input_ids; {', '.join(odd)} are not")
    return ids


def _mean_over_marked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the samples that have any marked position (others have nothing to move)."""
    marked = mask.flatten(1).any(-1)
    if not marked.any():
        return values.new_zeros(())
    return values[marked].mean()


def _insert(inputs: dict, mask: torch.Tensor, token: int) -> tuple[dict, torch.Tensor]:
    """``inputs`` one column wider, with ``token`` inserted at a random position (after the first
    token, up to the last attended one) in each row that ``mask`` marks nowhere; the new mask marks
    the inserted tokens and the ones already there."""
    ids = _token_shaped(inputs, "insert_penalised")
    rows = ids.shape[0]
    lengths = inputs.get("attention_mask", torch.ones_like(ids)).sum(-1)
    wide = {key: torch.cat([value, torch.zeros_like(value[:, :1])], 1) for key, value in inputs.items()}
    new_mask = torch.cat([mask, torch.zeros_like(mask[:, :1])], 1)
    for row in range(rows):
        if mask[row].any():
            continue
        # after the first token ([CLS]) and before the last attended one ([SEP])
        at = int(torch.randint(1, max(int(lengths[row]), 2), ()))
        for key, value in inputs.items():
            fill = token if key == "input_ids" else value[row, at - 1]
            wide[key][row] = torch.cat([value[row, :at], value.new_tensor([fill]), value[row, at:]])
        new_mask[row] = False
        new_mask[row, at] = True
    return wide, new_mask

"""The engine's single result type."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

@dataclass
class Attribution:
    """Batched scores of one method for one target: the engine's single result type.

    ``scores`` is (B, N) over the model's sequence positions (``kind == "tokens"``; for images the
    positions include class/distillation tokens before the patches) or (B, H, W) over pixels
    (``kind == "pixels"``). Padding positions are 0 and ``token_mask`` marks real positions.
    ``readout`` (B, N) marks, for token maps, the positions the prediction is read from (where
    d target / d last hidden state is not 0: [CLS], a causal LM's last position).

    The scores are raw: a rollout's row starts as the readout's one-hot, so there the readout keeps
    about 1 from the identity terms while the other tokens get the attention terms' small mass
    (1e-4 to 1e-10); only ratios between tokens mean something. ``normalized()`` gives the map
    as the HTML and terminal views show it.
    """

    scores: torch.Tensor
    kind: str
    signed: bool
    method: str
    logits: torch.Tensor
    target_classes: torch.Tensor | None
    token_mask: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)
    readout: torch.Tensor | None = None

    def detach(self) -> "Attribution":
        self.scores = self.scores.detach()
        self.logits = self.logits.detach()
        return self

    def normalized(self, leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """Scores scaled per sample to max |score| = 1, with the readout positions' own entries and
        padding set to 0 (the readout is left in when it covers every real position, as mean
        pooling does: nothing would be left). ``leave_out`` (B, N), e.g. a tokenizer's
        ``special_tokens_mask``, sets more positions to 0 first: with the special tokens, these are
        the values the HTML and terminal views colour by."""
        scores = self.scores.detach()
        if leave_out is not None:
            scores = scores.masked_fill(torch.as_tensor(leave_out, device=scores.device).bool(), 0.0)
        if self.token_mask is not None:
            scores = scores * self.token_mask.to(scores.dtype)
        if self.readout is not None:
            real = self.token_mask.bool() if self.token_mask is not None else torch.ones_like(self.readout)
            covers_all = (self.readout | ~real).all(-1, keepdim=True)
            scores = scores.masked_fill(self.readout & ~covers_all, 0.0)
        scale = scores.abs().flatten(1).amax(1).view(-1, *[1] * (scores.dim() - 1))
        return torch.where(scale > 0, scores / scale.clamp_min(torch.finfo(scores.dtype).tiny), torch.zeros_like(scores))

"""A plain PyTorch fine-tuning loop around RelevanceLoss (what ``relevancy finetune`` runs)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .batches import RelevanceCollator
from .loss import RelevanceLoss


@dataclass
class FineTuneResult:
    model: nn.Module  # the fine-tuned model, in eval mode
    history: list[dict] = field(default_factory=list)  # per step: the loss terms


def fine_tune(
    model: nn.Module,
    tokenizer,
    examples: list[dict],
    loss: RelevanceLoss,
    *,
    steps: int = 100,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    weight_decay: float = 0.0,
    max_length: int | None = None,
    seed: int = 0,
    in_place: bool = False,
    progress: bool = True,
    on_step: Callable[[int, nn.Module], None] | None = None,
    relevance_warmup: int = 0,
    collator: Callable[[list[dict]], dict] | None = None,
) -> FineTuneResult:
    """Train for ``steps`` batches drawn from ``examples`` (``training_examples`` output), reshuffled
    every epoch with ``seed``, which also seeds dropout. The given model is left untouched unless ``in_place``: a copy is trained.
    ``on_step(step, model)`` runs after each step (e.g. to record a learning curve); the model is put back
    in training mode after it, and the random state it uses does not change the training.
    ``relevance_warmup``: the relevance terms' weights grow linearly from 1/warmup to full over that many
    steps, so a strong penalty does not swamp the cross-entropy before the classifier can adapt.
    ``collator``: turns a list of examples into the loss's batch (default: ``RelevanceCollator``)."""
    if not examples:
        raise ValueError("no training examples: the data set is empty")
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1")
    if relevance_warmup < 0:
        raise ValueError("relevance_warmup must be >= 0 (steps over which the relevance terms ramp up)")
    if not in_place:
        model = copy.deepcopy(model)
    collate = collator or RelevanceCollator(tokenizer, max_length)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    order: list[int] = []
    history = []
    model.train()
    bar = tqdm(range(steps), desc="fine-tune", disable=not progress)
    # dropout masks follow ``seed`` too, whatever ran before; the caller's random state is restored
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for step in bar:
            if len(order) < batch_size:
                order += torch.randperm(len(examples), generator=generator).tolist()
            chunk, order = order[:batch_size], order[batch_size:]
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in chunk]).items()}
            output = loss(model, batch, relevance_scale=min(1.0, (step + 1) / relevance_warmup) if relevance_warmup else 1.0)
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            optimizer.step()
            parts = {"step": step + 1, **output.parts()}
            history.append(parts)
            bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items() if k in ("loss", "penalty", "rationale")})
            if on_step is not None:
                with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                    on_step(step + 1, model)
                model.train()
    return FineTuneResult(model.eval(), history)

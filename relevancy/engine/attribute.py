"""``attribute`` / ``attribute_targets``: model inputs + targets -> Attributions, each target's
backward passes batched over one shared forward."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

from ..adapters.structure import ModelStructure, describe
from ..progress import progress_bar
from ..rules.base import Pass
from ..targets import Predicted, Target, as_target
from ..tracing import RelevanceScope
from .attribution import Attribution
from .run import Run


def explained_classes(run: Run) -> torch.Tensor | None:
    return run.target.classes(run.logits.detach())


def attribute(
    model: nn.Module,
    inputs: Mapping,
    method,
    target=None,
    *,
    differentiable: bool = False,
    checkpoint: bool = False,
    structure: ModelStructure | None = None,
) -> Attribution:
    """Explain ``model`` on tokenised/processed ``inputs`` (a mapping of batched tensors, e.g. a
    tokenizer's output) with ``method``
    (a name or a Method) for ``target`` (None = predicted class, an index, a label, 'a vs b', a Target).

    ``checkpoint=True`` keeps no block's graph: each backward pass recomputes the blocks one at a
    time from their saved inputs (about one forward more per pass), for long inputs whose graph
    does not fit in memory. The scores are the same.

    The model comes back exactly as it was, also when this raises.
    """
    (result,) = attribute_targets(
        model, inputs, method, [target], differentiable=differentiable, checkpoint=checkpoint, structure=structure
    )
    return result


def attribute_targets(
    model: nn.Module,
    inputs: Mapping,
    method,
    targets: list,
    *,
    differentiable: bool = False,
    checkpoint: bool = False,
    structure: ModelStructure | None = None,
    batch_size: int = 16,
    progress: bool | None = None,
) -> list[Attribution]:
    """One Attribution per target, all from one shared forward (e.g. every token of a generated
    answer). The targets' backward passes run ``batch_size`` at a time as one batched pass
    (``torch.func.vmap`` over their seeds: each graph node is visited once per chunk, with a
    leading target dimension); ``batch_size=1`` runs them one by one. Methods that run forwards of
    their own (integrated gradients), differentiable maps and ``checkpoint=True`` (see ``attribute``)
    are computed one target at a time. ``progress``: a bar over the targets (None: on a terminal,
    for calls longer than 2 s)."""
    from ..methods import get_method

    method = get_method(method)
    structure = structure or describe(model)
    _check_inputs(structure, inputs)
    inputs = dict(inputs)  # e.g. a tokenizer's BatchEncoding
    if not targets:
        raise ValueError("no targets given")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (targets per batched backward), got {batch_size!r}")
    if checkpoint and differentiable:
        raise ValueError(
            "checkpoint=True cannot give a differentiable map: its blocks' graphs are dropped after each pass; "
            "use one or the other"
        )
    resolved = [as_target(target, structure.label_index) for target in targets]
    results = []
    with RelevanceScope(
        model, rules=method.uses_rules, observers=[], differentiable=differentiable, composite=method.composite
    ) as scope:
        run = Run(model, structure, inputs, resolved[0], scope, checkpoint=checkpoint)
        run.progress = progress  # checkpointed passes: a bar over the recomputed blocks
        if any(isinstance(target, Predicted) for target in resolved):  # the real input's prediction
            logits = run.forward()
            resolved = [target.fixed(logits) if isinstance(target, Predicted) else target for target in resolved]
        batched = batch_size > 1 and len(resolved) > 1 and not differentiable and not checkpoint
        if batched:
            run.forward()
        with progress_bar(len(resolved), "targets", progress if len(resolved) > 1 else False, unit="target") as bar:
            for start in range(0, len(resolved), batch_size if batched else 1):
                chunk = resolved[start : start + (batch_size if batched else 1)]
                scores = _batched_scores(run, method, chunk) if batched else None
                if scores is None:
                    batched = False
                    scores = [_scores(run, method, target) for target in chunk]
                for target, (values, kind) in zip(chunk, scores):
                    run.retarget(target)
                    results.append(_attribution(run, method, structure, target, values, kind, differentiable))
                bar.update(len(chunk))
        run.release()
    return results


def _scores(run: Run, method, target: Target) -> tuple[torch.Tensor, str]:
    run.retarget(target)
    scores, kind = method.compute(run)
    run.scope.set_pass(Pass.GRADIENT)  # differentiating the map later must see true derivatives
    return scores, kind


def _batched_scores(run: Run, method, targets: list[Target]) -> list[tuple[torch.Tensor, str]] | None:
    """Every target's scores from one vmapped backward over the shared forward; None when the method
    needs forwards of its own."""
    seeds, head_columns = [], []
    for target in targets:
        run.retarget(target)
        seeds.append(run.seed)
        head_columns.append(run.head_seed())
    if run.reads_head:  # the union of the targets' vocabulary columns, a few per target
        columns = torch.cat([c for c, _ in head_columns]).unique()
        stacked = torch.stack([seed[..., columns] for seed in seeds])
    else:
        columns, stacked = None, torch.stack(seeds)
    kinds = []

    def one(seed):
        run.retarget(targets[0])
        run.start_from(seed, columns)
        scores, kind = method.compute(run)
        kinds.append(kind)
        return scores

    try:
        with warnings.catch_warnings(), run.sharing_backward():
            # SDPA's fused CPU backward has no vmap rule: PyTorch loops over the targets for that one op
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")
            scores = torch.func.vmap(one)(stacked)
    except Run.NeedsOwnForward:
        return None
    finally:
        run.retarget(targets[0])  # drop what the batched pass left in hooks and observers
        for call in run.scope.dispatcher.calls:
            call.grad_output = None
        run.scope.set_pass(Pass.GRADIENT)
    return [(values, kinds[0]) for values in scores]


def _attribution(run: Run, method, structure: ModelStructure, target: Target, scores, kind, differentiable) -> Attribution:
    mask = run.token_mask
    if kind == "tokens" and mask is not None:
        scores = scores * mask.to(scores.dtype)
    attribution = Attribution(
        scores=scores,
        kind=kind,
        signed=method.signed,
        method=method.name,
        logits=run.logits,
        target_classes=explained_classes(run),
        token_mask=mask if kind == "tokens" else None,
        extras={"target": target.describe(structure.labels)},
        readout=run.readout.detach() > 0 if kind == "tokens" else None,
    )
    return attribution if differentiable else attribution.detach()


def _check_inputs(structure: ModelStructure, inputs: Mapping) -> None:
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"inputs must be a mapping of batched tensors (a dict, or a tokenizer's or image processor's output), "
            f"got {type(inputs).__name__}"
        )
    untensored = [key for key, value in inputs.items() if isinstance(value, list)]
    if untensored:
        raise ValueError(
            f"inputs {untensored} are lists, not tensors: call the tokenizer or processor with return_tensors='pt'"
        )
    if structure.modality == "image":
        pixels = inputs.get("pixel_values")
        if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4:
            raise ValueError("image inputs need 'pixel_values' of shape (batch, channels, height, width)")
        if structure.num_channels and pixels.shape[1] != structure.num_channels:
            raise ValueError(
                f"the image has {pixels.shape[1]} channels but the model expects {structure.num_channels}; "
                "convert it (e.g. PIL's .convert('RGB')) before explaining"
            )
        if structure.image_size and tuple(pixels.shape[-2:]) != structure.image_size:
            raise ValueError(
                f"the image is {tuple(pixels.shape[-2:])} pixels but the model expects {structure.image_size}; "
                "resize it (the model's image processor does this)"
            )
        return
    ids = inputs.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise ValueError("text inputs need 'input_ids' of shape (batch, tokens)")
    if ids.shape[1] == 0 or (inputs.get("attention_mask") is not None and (inputs["attention_mask"].sum(-1) == 0).any()):
        raise ValueError("empty text: there is nothing to explain")

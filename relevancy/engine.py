"""The one contract every method, evaluation and viewer uses: model inputs + target -> Attribution.

A ``Run`` is one forward of the model inside a ``RelevanceScope``; methods then ask it for a
gradient pass and/or a relevance pass over the same graph, and read what they need at the
block boundaries, the input, or each attention layer (through observers).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .adapters.outputs import model_logits
from .adapters.structure import ModelStructure, describe, family_name
from .errors import UnsupportedModelError
from .progress import progress_bar
from .rules.base import Pass
from .targets import Predicted, Target, as_target
from .tracing import RelevanceScope


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


_WITHOUT_MAPS = "Methods that need no attention maps: attnlrp, cp_lrp, full_lrp, input_x_gradient, integrated_gradients."


class Run:
    """One forward of ``model`` on ``inputs`` under the scope; gradient and relevance passes on demand."""

    def __init__(
        self, model: nn.Module, structure: ModelStructure, inputs: dict, target: Target, scope: RelevanceScope,
        checkpoint: bool = False,
    ):
        self.model = model
        self.checkpoint = checkpoint  # keep no block's graph: each backward pass recomputes blocks one at a time
        self._block_inputs: list[tuple[tuple, dict, int]] = []  # checkpointing: (args, kwargs, first attention call)
        self._grad_outputs: dict[int, torch.Tensor] = {}  # checkpointing: each attention layer's dO, kept between passes
        self._map_shapes: list[tuple[int, int, int]] = []  # checkpointing: each attention layer's map shape (calls are dropped)
        self._grad_mode = True  # checkpointing: grad mode to restore after a block run without a graph
        self.structure = structure
        self.inputs = inputs
        self.target = target
        self.scope = scope
        self.logits: torch.Tensor | None = None
        self.input_leaf: torch.Tensor | None = None
        self.boundaries: dict[Pass, dict[int, torch.Tensor]] = {Pass.GRADIENT: {}, Pass.RELEVANCE: {}}
        self._boundary_tensors: dict[int, torch.Tensor] = {}
        self._seed: torch.Tensor | None = None
        self._readout_magnitude: torch.Tensor | None = None
        self._forwarded = False
        self._head: tuple[torch.Tensor, torch.Tensor] | None = None  # a causal LM's (head input, head weight)
        self._head_columns: tuple[torch.Tensor, torch.Tensor] | None = None  # set per target by head_seed
        self._batched = False  # inside attribute_targets' batched backward: no forward may run
        self._reading_out = False  # inside the gradient pass that finds the readout
        self.progress: bool | None = None  # checkpointing: a bar over the recomputed blocks (see progress_bar)

    class NeedsOwnForward(RuntimeError):
        """A method that runs forwards of its own (integrated gradients) cannot share one batched backward."""

    @property
    def token_mask(self) -> torch.Tensor | None:
        return self.inputs.get("attention_mask")

    # -- forward -------------------------------------------------------------------------------
    def forward(self, input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Run the model; ``input_transform`` maps the input leaf (embeddings or pixels) first.

        Without a transform the forward is done once per Run: later calls (another target, see
        ``retarget``) reuse its graph and replay its attention calls to new observers (with
        checkpointing, which keeps neither, they run it again)."""
        structure, scope = self.structure, self.scope
        if input_transform is None and self._forwarded and not self.checkpoint:
            for call in scope.dispatcher.calls:
                for observer in scope.observers:
                    observer.on_forward(call)
            return self.logits
        if self._batched:
            raise Run.NeedsOwnForward("a new forward inside a batched backward")
        scope.dispatcher.reset_calls()
        transform = input_transform or (lambda x: x)
        handles = []
        self._boundary_tensors = {}
        self.boundaries = {Pass.GRADIENT: {}, Pass.RELEVANCE: {}}
        self._readout_magnitude = None
        self._head = None
        model_inputs = dict(self.inputs)
        head_seen = {}
        try:
            head = self.model.get_output_embeddings() if structure.causal and hasattr(self.model, "get_output_embeddings") else None
            if isinstance(head, nn.Linear):
                handles.append(head.register_forward_hook(lambda module, args, output: head_seen.update(x=args[0], out=output)))
            if self.checkpoint:
                self._block_inputs, self._grad_outputs, self._map_shapes = [], {}, []
                for block in structure.blocks:
                    handles.append(block.register_forward_pre_hook(self._enter_unrecorded_block, with_kwargs=True))
                    handles.append(block.register_forward_hook(self._leave_unrecorded_block))
                if "use_cache" in inspect.signature(self.model.forward).parameters:
                    model_inputs.setdefault("use_cache", False)  # a recomputed block must not extend a cache
            else:
                for index, block in enumerate(structure.blocks):
                    handles.append(block.register_forward_pre_hook(self._tap_block_input(index), with_kwargs=True))
                handles.append(structure.blocks[-1].register_forward_hook(self._tap_block_output(len(structure.blocks))))
            if structure.modality == "image":
                pixels = model_inputs.pop("pixel_values")
                with scope.paused(), torch.enable_grad():
                    self.input_leaf = pixels.detach().clone().requires_grad_(True)
                    model_inputs["pixel_values"] = scope.mark_input(transform(self.input_leaf), pixels=True)
            else:
                handles.append(structure.input_embeddings.register_forward_hook(self._replace_embeddings(transform)))
            with torch.enable_grad(), scope.tracing():
                output = self.model(**model_inputs)
        finally:
            for handle in handles:
                handle.remove()
        logits = model_logits(output)
        if not isinstance(logits, torch.Tensor):
            raise TypeError(
                f"{type(self.model).__name__} returns no logits: relevancy explains models with a prediction head "
                "(e.g. *ForSequenceClassification, *ForImageClassification, *ForCausalLM)."
            )
        if not logits.requires_grad:
            raise RuntimeError("the model's logits do not depend on its input: nothing to explain")
        self.logits = logits
        self._forwarded = input_transform is None
        if head_seen.get("out") is logits and scope.is_live(head_seen["x"]):
            self._head = (head_seen["x"], head.weight)
        return logits

    def attention_layers(self) -> int:
        """The number of attention layers the forward ran (a layer module run twice counts twice),
        checked to be what a rollout over token positions needs: one (tokens x tokens) map per
        layer, over the same tokens in every layer."""
        shapes = self._map_shapes if self.checkpoint else [call.map_shape for call in self.scope.dispatcher.calls]
        if not shapes:
            raise UnsupportedModelError(
                f"{family_name(self.model)}: no attention map was observed in its forward. relevancy observes "
                "torch's scaled_dot_product_attention and eager softmax(scores) @ values; this model computes "
                f"attention otherwise (or has none). {_WITHOUT_MAPS}"
            )
        batch = self.logits.shape[0]
        first = shapes[0]
        for layer, shape in enumerate(shapes):
            if shape != first or shape[0] != batch or first[1] != first[2]:
                raise UnsupportedModelError(
                    f"{family_name(self.model)}: attention layer {layer} has maps of shape (batch {shape[0]}, "
                    f"{shape[1]} queries, {shape[2]} keys), layer 0 {first}, for a batch of {batch}: "
                    "its attention is windowed, pooled or reduced, not one token x token map over the same tokens in "
                    f"every layer, so rolling attention out over token positions is undefined. {_WITHOUT_MAPS}"
                )
        return len(shapes)

    def release(self) -> None:
        """Drop every reference into the forward's graph (hooks and rules point back here)."""
        self.logits = self.input_leaf = None
        self._head = None
        self._boundary_tensors = {}
        self.boundaries = {Pass.GRADIENT: {}, Pass.RELEVANCE: {}}
        self.scope.dispatcher.reset_calls()
        self.scope.observers.clear()

    def retarget(self, target: Target) -> None:
        """Explain another target with the same forward: new seed, readout and observers."""
        self.target = target
        self._seed = None
        self._head_columns = None
        self._readout_magnitude = None
        self.boundaries = {Pass.GRADIENT: {}, Pass.RELEVANCE: {}}
        self.scope.observers.clear()

    def _replace_embeddings(self, transform):
        def hook(module, args, output):
            ids = self.inputs.get("input_ids")
            if isinstance(ids, torch.Tensor) and tuple(output.shape[:2]) != tuple(ids.shape):
                raise UnsupportedModelError(
                    f"{family_name(self.model)}: its input embeddings ({type(module).__name__}) have shape "
                    f"{tuple(output.shape)} for input_ids of shape {tuple(ids.shape)}: not (batch, tokens, features) "
                    "(a sequence-first model), which relevancy's token scores do not read"
                )
            with self.scope.paused():
                if self.input_leaf is None or self.input_leaf.shape != output.shape:
                    # a differentiable map keeps its path to the embedding table; otherwise a fresh leaf
                    fresh = output if self.scope.differentiable else output.detach().clone().requires_grad_(True)
                    self.input_leaf = fresh
                return self.scope.mark_input(transform(self.input_leaf))

        return hook

    # -- checkpointing: blocks run without a graph, and are recomputed one at a time per backward --
    def _enter_unrecorded_block(self, block, args, kwargs):
        hidden = _hidden_states(args, kwargs)
        if not self._block_inputs:
            self._boundary_tensors[0] = hidden  # the graph below the blocks (embeddings) is kept
        with self.scope.paused():
            kept = self.scope.dispatcher.mark(hidden.detach())
        self._block_inputs.append((*_with_hidden_states(args, kwargs, kept), len(self.scope.dispatcher.calls)))
        self._grad_mode = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def _leave_unrecorded_block(self, block, args, output):
        torch.set_grad_enabled(self._grad_mode)
        calls = self.scope.dispatcher.calls
        first = self._block_inputs[-1][2]
        self._map_shapes += [call.map_shape for call in calls[first:]]
        calls[first:] = [None] * (len(calls) - first)  # observers have seen them; keep no q, k, v
        if len(self._block_inputs) < len(self.structure.blocks):
            return None
        hidden = output[0] if isinstance(output, (tuple, list)) else output
        with self.scope.paused():  # the graph above the blocks starts here
            leaf = self.scope.dispatcher.mark(hidden.detach().requires_grad_(True))
        self._boundary_tensors[len(self.structure.blocks)] = leaf
        return (leaf, *output[1:]) if isinstance(output, (tuple, list)) else leaf

    def _recompute_block(self, index: int) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Block ``index`` again, with a graph: (input leaf, output, its attention calls)."""
        args, kwargs, first_call = self._block_inputs[index]
        leaf = self.scope.dispatcher.mark(_hidden_states(args, kwargs).detach().requires_grad_(True))
        args, kwargs = _with_hidden_states(args, kwargs, leaf)
        dispatcher = self.scope.dispatcher
        with dispatcher.replay(first_call), torch.enable_grad(), self.scope.tracing():
            output = self.structure.blocks[index](*args, **kwargs)
            calls = dispatcher.calls[first_call:]
        return leaf, output[0] if isinstance(output, (tuple, list)) else output, calls

    def _record_boundary(self, pass_: Pass, index: int, grad: torch.Tensor) -> None:
        self.boundaries[pass_][index] = grad.sum(-1)
        if pass_ is Pass.GRADIENT and index == len(self.structure.blocks):
            self._readout_magnitude = grad.detach().abs().sum(-1)

    def _sweep_blocks(self, pass_: Pass, grad: torch.Tensor, stop: int) -> torch.Tensor:
        """Carry ``grad`` (gradient or relevance at the last block's output) down to block ``stop``'s
        input, holding one block's graph at a time."""
        self._record_boundary(pass_, len(self.structure.blocks), grad)
        with progress_bar(len(self.structure.blocks) - stop, f"{pass_.value} pass", self.progress, unit="block") as bar:
            for index in reversed(range(stop, len(self.structure.blocks))):
                grad = self._sweep_block(pass_, index, grad)
                bar.update()
        return grad

    def _sweep_block(self, pass_: Pass, index: int, grad: torch.Tensor) -> torch.Tensor:
        """Recompute block ``index`` and carry ``grad`` from its output to its input."""
        leaf, output, calls = self._recompute_block(index)
        if pass_ is Pass.RELEVANCE:
            for call in calls:
                call.grad_output = self._grad_outputs.get(call.layer)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(output, leaf, grad_outputs=grad)
        if pass_ is Pass.GRADIENT:
            self._grad_outputs.update({call.layer: call.grad_output for call in calls})
        del leaf, output, calls
        self._record_boundary(pass_, index, grad)
        return grad

    def _tap(self, index: int, tensor) -> None:
        if not isinstance(tensor, torch.Tensor) or not tensor.requires_grad:
            return
        self._boundary_tensors[index] = tensor

        tensor.register_hook(lambda grad: self._record_boundary(self.scope.current_pass, index, grad))

    def _tap_block_input(self, index: int):
        def hook(module, args, kwargs):
            hidden = _hidden_states(args, kwargs)
            batch = self.scope.dispatcher.input_batch
            if isinstance(hidden, torch.Tensor) and self.scope.is_live(hidden) and batch and hidden.shape[0] != batch:
                raise UnsupportedModelError(
                    f"{family_name(self.model)}: block {index} ({type(module).__name__}) takes hidden states of shape "
                    f"{tuple(hidden.shape)} for a batch of {batch}: not batch-first (sequence-first blocks, or "
                    "windows folded into the batch), which relevancy's block boundaries do not read"
                )
            if index in self._boundary_tensors:
                raise UnsupportedModelError(
                    f"{family_name(self.model)}: block module {index} ({type(module).__name__}) runs more "
                    "than once per forward (layers sharing their parameters, as in ALBERT); relevancy needs one "
                    "block module per layer to find the block boundaries"
                )
            self._tap(index, hidden)

        return hook

    def _tap_block_output(self, index: int):
        def hook(module, args, output):
            self._tap(index, output[0] if isinstance(output, (tuple, list)) else output)

        return hook

    # -- backward passes -----------------------------------------------------------------------
    @property
    def seed(self) -> torch.Tensor:
        """d target / d logits: where both passes start (one-hot for a class)."""
        if self._seed is None:
            logits = self.logits.detach().requires_grad_(True)
            with torch.enable_grad():
                (self._seed,) = torch.autograd.grad(self.target(logits).sum(), logits)
        return self._seed

    def head_seed(self, seed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A causal LM's seed on the vocabulary columns it touches: (columns, seed[..., columns]).

        A next-token target touches one or two of the vocabulary's tens of thousands of logits; both
        passes then start at the head's input from those rows of the head's weight (the same alpha-beta
        rule, without the columns whose relevance is 0), never from a dense (tokens x vocabulary) map."""
        if self._head is None:
            return None
        seed = self.seed if seed is None else seed
        columns = seed.reshape(-1, seed.shape[-1]).ne(0).any(0).nonzero().squeeze(1)
        return columns, seed[..., columns]

    def backward(self, pass_: Pass, to: str = "blocks") -> torch.Tensor | None:
        """One backward over the forward's graph. ``to``: "readout" (last block's output only),
        "blocks" (down to the first block's input), a block index (down to that block's input) or
        "input" (the embeddings or pixels).
        Returns the gradient or relevance at that point."""
        blocks = len(self.structure.blocks)
        key = {"readout": blocks, "blocks": 0, "input": 0}.get(to, to)
        sweep = self.checkpoint and key != blocks  # checkpointed: the blocks below the top are recomputed
        if sweep:
            reached = 0 in self._boundary_tensors and key in range(blocks)
        else:
            reached = key in self._boundary_tensors
        if not reached:
            raise UnsupportedModelError(
                f"{family_name(self.model)}: the explained input did not reach the input of block {key} "
                f"({type(self.structure.blocks[0]).__name__}, the repeated blocks relevancy found) as that block's "
                "hidden-state argument; relevancy reads relevance at the blocks' hidden-state inputs (passed first "
                "or as hidden_states=)"
            )
        self.scope.set_pass(pass_)
        if self._head is None:
            start, start_grad = self.logits, self.seed
        else:
            start, weight = self._head
            if self._head_columns is None:
                self._head_columns = self.head_seed()
            columns, seed = self._head_columns
            rows = weight[columns]
            if pass_ is Pass.GRADIENT:
                start_grad = seed @ rows
            else:
                start_grad = self.scope.dispatcher.head_relevance(seed, start, rows)
        if sweep:
            with torch.enable_grad():
                (top,) = torch.autograd.grad(start, self._boundary_tensors[blocks], grad_outputs=start_grad, retain_graph=True)
            result = self._sweep_blocks(pass_, top, key)
            if to != "input":
                return result
            start, start_grad = self._boundary_tensors[0], result
        destination = self.input_leaf if to == "input" else self._boundary_tensors[key]
        with torch.enable_grad():
            (result,) = torch.autograd.grad(
                start,
                destination,
                grad_outputs=start_grad,
                retain_graph=True,
                create_graph=self.scope.differentiable,
                allow_unused=True,
            )
        if self.checkpoint and to == "readout":
            self._record_boundary(pass_, len(self.structure.blocks), result)
        return result

    def block_input(self, index: int = 0) -> torch.Tensor:
        """The hidden states block ``index`` received in the forward (B, N, features)."""
        return self._boundary_tensors[index]

    def content_mask(self, like: torch.Tensor) -> torch.Tensor:
        """(B, N) 1 for positions that show input content (real tokens; image patches, not the
        class/distillation tokens before them), 0 elsewhere."""
        n = like.shape[-1]
        if self.structure.modality == "image":
            grid = self.structure.grid
            prefix = n - grid[0] * grid[1] if grid else 1
            mask = torch.ones(like.shape[0], n, dtype=like.dtype, device=like.device)
            mask[:, :prefix] = 0
            return mask
        if self.token_mask is None:
            return torch.ones(like.shape[0], n, dtype=like.dtype, device=like.device)
        return self.token_mask.to(like.dtype)

    @property
    def readout(self) -> torch.Tensor:
        """(B, N) weight of each output position in the prediction: |d target / d h_L| summed over
        features, normalised. The CLS position alone for a CLS-pooled classifier."""
        if self._readout_magnitude is None:
            if self._reading_out:  # an attention layer above the last block asked for it
                raise UnsupportedModelError(
                    f"{family_name(self.model)}: attention runs above the last of the repeated blocks relevancy found "
                    f"({type(self.structure.blocks[-1]).__name__}), so no block boundary lies between it and the "
                    "prediction; relevancy reads the readout at the last block's output"
                )
            self._reading_out = True
            try:
                self.backward(Pass.GRADIENT, to="readout")
            finally:
                self._reading_out = False
        weights = self._readout_magnitude
        return weights / weights.sum(-1, keepdim=True).clamp_min(1e-30)


def _hidden_states(args: tuple, kwargs: dict):
    """A block's hidden-state input, passed positionally or as ``hidden_states=``."""
    return args[0] if args else kwargs.get("hidden_states")


def _with_hidden_states(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    """A block's arguments with ``hidden`` in place of its hidden-state input."""
    return ((hidden, *args[1:]), dict(kwargs)) if args else (args, dict(kwargs, hidden_states=hidden))


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
    from .methods import get_method

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
    if run._head is not None:  # the union of the targets' vocabulary columns, a few per target
        columns = torch.cat([c for c, _ in head_columns]).unique()
        stacked = torch.stack([seed[..., columns] for seed in seeds])
    else:
        columns, stacked = None, torch.stack(seeds)
    kinds = []

    def one(seed):
        run.retarget(targets[0])
        if columns is None:
            run._seed = seed
        else:
            run._head_columns = (columns, seed)
        scores, kind = method.compute(run)
        kinds.append(kind)
        return scores

    run._batched = True
    try:
        with warnings.catch_warnings():
            # SDPA's fused CPU backward has no vmap rule: PyTorch loops over the targets for that one op
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")
            scores = torch.func.vmap(one)(stacked)
    except Run.NeedsOwnForward:
        return None
    finally:
        run._batched = False
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

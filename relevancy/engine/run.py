"""A ``Run``: one forward of the model inside a ``RelevanceScope``; methods then ask it for a
gradient pass and/or a relevance pass over the same graph, and read what they need at the block
boundaries (``boundaries.py``), the input, or each attention layer (through observers).
``checkpointing.py`` trades the kept graph for recomputation."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn

from ..adapters.outputs import model_logits
from ..adapters.structure import ModelStructure, family_name
from ..errors import UnsupportedModelError
from ..rules.base import Pass
from ..targets import Target
from ..tracing import RelevanceScope
from .boundaries import BlockBoundaries
from .checkpointing import BlockCheckpoint


_WITHOUT_MAPS = "Methods that need no attention maps: attnlrp, cp_lrp, full_lrp, input_x_gradient, integrated_gradients."


class Run:
    """One forward of ``model`` on ``inputs`` under the scope; gradient and relevance passes on demand."""

    def __init__(
        self, model: nn.Module, structure: ModelStructure, inputs: dict, target: Target, scope: RelevanceScope,
        checkpoint: bool = False,
    ):
        self.model = model
        self.checkpoint = checkpoint  # keep no block's graph: each backward pass recomputes blocks one at a time
        self.checkpointed = BlockCheckpoint(self)
        self.block_boundaries = BlockBoundaries(self)
        self.structure = structure
        self.inputs = inputs
        self.target = target
        self.scope = scope
        self.logits: torch.Tensor | None = None
        self.input_leaf: torch.Tensor | None = None
        self._seed: torch.Tensor | None = None
        self._forwarded = False
        self._head: tuple[torch.Tensor, torch.Tensor] | None = None  # a causal LM's (head input, head weight)
        self._head_columns: tuple[torch.Tensor, torch.Tensor] | None = None  # set per target by head_seed
        self._batched = False  # inside attribute_targets' batched backward: no forward may run
        self._reading_out = False  # inside the gradient pass that finds the readout
        self.progress: bool | None = None  # checkpointing: a bar over the recomputed blocks (see progress_bar)

    class NeedsOwnForward(RuntimeError):
        """A method that runs forwards of its own (integrated gradients) cannot share one batched backward."""

    @property
    def boundaries(self) -> dict[Pass, dict[int, torch.Tensor]]:
        """Per pass, the gradient or relevance at each block boundary, summed over features."""
        return self.block_boundaries.sums

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
        self.block_boundaries.clear()
        self._head = None
        model_inputs = dict(self.inputs)
        head_seen = {}
        try:
            head = self.model.get_output_embeddings() if structure.causal and hasattr(self.model, "get_output_embeddings") else None
            if isinstance(head, nn.Linear):
                handles.append(head.register_forward_hook(lambda module, args, output: head_seen.update(x=args[0], out=output)))
            handles += self.checkpointed.hooks(model_inputs) if self.checkpoint else self.block_boundaries.hooks()
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
        shapes = self.checkpointed.map_shapes if self.checkpoint else [call.map_shape for call in self.scope.dispatcher.calls]
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
        self.block_boundaries.clear()
        self.scope.dispatcher.reset_calls()
        self.scope.observers.clear()

    def retarget(self, target: Target) -> None:
        """Explain another target with the same forward: new seed, readout and observers."""
        self.target = target
        self._seed = None
        self._head_columns = None
        self.block_boundaries.clear_passes()
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

    @property
    def reads_head(self) -> bool:
        """A causal LM whose passes start at its head's input (see ``head_seed``)."""
        return self._head is not None

    def start_from(self, seed: torch.Tensor, columns: torch.Tensor | None = None) -> None:
        """Start both passes from ``seed`` instead of the target's own: d target / d logits, or with
        ``columns`` its entries on those vocabulary columns of a causal LM's head."""
        if columns is None:
            self._seed = seed
        else:
            self._head_columns = (columns, seed)

    @contextmanager
    def sharing_backward(self):
        """Inside: one backward serves several targets (vmapped), so no forward may run."""
        self._batched = True
        try:
            yield
        finally:
            self._batched = False

    def backward(self, pass_: Pass, to: str = "blocks") -> torch.Tensor | None:
        """One backward over the forward's graph. ``to``: "readout" (last block's output only),
        "blocks" (down to the first block's input), a block index (down to that block's input) or
        "input" (the embeddings or pixels).
        Returns the gradient or relevance at that point."""
        blocks = len(self.structure.blocks)
        key = {"readout": blocks, "blocks": 0, "input": 0}.get(to, to)
        sweep = self.checkpoint and key != blocks  # checkpointed: the blocks below the top are recomputed
        hidden = self.block_boundaries.hidden
        reached = (0 in hidden and key in range(blocks)) if sweep else key in hidden
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
                (top,) = torch.autograd.grad(start, hidden[blocks], grad_outputs=start_grad, retain_graph=True)
            result = self.checkpointed.sweep(pass_, top, key)
            if to != "input":
                return result
            start, start_grad = hidden[0], result
        destination = self.input_leaf if to == "input" else hidden[key]
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
            self.block_boundaries.record(pass_, blocks, result)
        return result

    def block_input(self, index: int = 0) -> torch.Tensor:
        """The hidden states block ``index`` received in the forward (B, N, features)."""
        return self.block_boundaries.hidden[index]

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
        if self.block_boundaries.readout_magnitude is None:
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
        weights = self.block_boundaries.readout_magnitude
        return weights / weights.sum(-1, keepdim=True).clamp_min(1e-30)

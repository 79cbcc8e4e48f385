"""Checkpointed runs: the blocks run without a graph in the forward, and each backward pass
recomputes them one at a time from their saved inputs (about one forward more per pass), so that
long inputs whose graph does not fit in memory can be explained. The scores are the same."""

from __future__ import annotations

import inspect

import torch

from ..progress import progress_bar
from ..rules.base import Pass
from .boundaries import hidden_states, with_hidden_states


class BlockCheckpoint:
    def __init__(self, run) -> None:
        self.run = run
        self.block_inputs: list[tuple[tuple, dict, int]] = []  # (args, kwargs, first attention call) per block
        self.grad_outputs: dict[int, torch.Tensor] = {}  # each attention layer's dO, kept between passes
        self.map_shapes: list[tuple[int, int, int]] = []  # each attention layer's map shape (calls are dropped)
        self._grad_mode = True  # grad mode to restore after a block ran without a graph

    def hooks(self, model_inputs: dict) -> list:
        """Forward hooks that run every block without a graph; turns the model's cache off in
        ``model_inputs`` (a recomputed block must not extend a cache)."""
        self.block_inputs, self.grad_outputs, self.map_shapes = [], {}, []
        handles = []
        for block in self.run.structure.blocks:
            handles.append(block.register_forward_pre_hook(self._enter_block, with_kwargs=True))
            handles.append(block.register_forward_hook(self._leave_block))
        if "use_cache" in inspect.signature(self.run.model.forward).parameters:
            model_inputs.setdefault("use_cache", False)
        return handles

    def _enter_block(self, block, args, kwargs):
        run = self.run
        hidden = hidden_states(args, kwargs)
        if not self.block_inputs:
            run.block_boundaries.hidden[0] = hidden  # the graph below the blocks (embeddings) is kept
        with run.scope.paused():
            kept = run.scope.dispatcher.mark(hidden.detach())
        self.block_inputs.append((*with_hidden_states(args, kwargs, kept), len(run.scope.dispatcher.calls)))
        self._grad_mode = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def _leave_block(self, block, args, output):
        run = self.run
        torch.set_grad_enabled(self._grad_mode)
        calls = run.scope.dispatcher.calls
        first = self.block_inputs[-1][2]
        self.map_shapes += [call.map_shape for call in calls[first:]]
        calls[first:] = [None] * (len(calls) - first)  # observers have seen them; keep no q, k, v
        blocks = len(run.structure.blocks)
        if len(self.block_inputs) < blocks:
            return None
        hidden = output[0] if isinstance(output, (tuple, list)) else output
        with run.scope.paused():  # the graph above the blocks starts here
            leaf = run.scope.dispatcher.mark(hidden.detach().requires_grad_(True))
        run.block_boundaries.hidden[blocks] = leaf
        return (leaf, *output[1:]) if isinstance(output, (tuple, list)) else leaf

    def _recompute(self, index: int) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Block ``index`` again, with a graph: (input leaf, output, its attention calls)."""
        run = self.run
        args, kwargs, first_call = self.block_inputs[index]
        dispatcher = run.scope.dispatcher
        leaf = dispatcher.mark(hidden_states(args, kwargs).detach().requires_grad_(True))
        args, kwargs = with_hidden_states(args, kwargs, leaf)
        with dispatcher.replay(first_call), torch.enable_grad(), run.scope.tracing():
            output = run.structure.blocks[index](*args, **kwargs)
            calls = dispatcher.calls[first_call:]
        return leaf, output[0] if isinstance(output, (tuple, list)) else output, calls

    def sweep(self, pass_: Pass, grad: torch.Tensor, stop: int) -> torch.Tensor:
        """Carry ``grad`` (gradient or relevance at the last block's output) down to block ``stop``'s
        input, holding one block's graph at a time."""
        blocks = len(self.run.structure.blocks)
        self.run.block_boundaries.record(pass_, blocks, grad)
        with progress_bar(blocks - stop, f"{pass_.value} pass", self.run.progress, unit="block") as bar:
            for index in reversed(range(stop, blocks)):
                grad = self._sweep_block(pass_, index, grad)
                bar.update()
        return grad

    def _sweep_block(self, pass_: Pass, index: int, grad: torch.Tensor) -> torch.Tensor:
        """Recompute block ``index`` and carry ``grad`` from its output to its input."""
        leaf, output, calls = self._recompute(index)
        if pass_ is Pass.RELEVANCE:
            for call in calls:
                call.grad_output = self.grad_outputs.get(call.layer)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(output, leaf, grad_outputs=grad)
        if pass_ is Pass.GRADIENT:
            self.grad_outputs.update({call.layer: call.grad_output for call in calls})
        del leaf, output, calls
        self.run.block_boundaries.record(pass_, index, grad)
        return grad

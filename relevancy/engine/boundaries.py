"""Block boundaries: the hidden states entering each repeated block (and leaving the last one) in a
forward, and what each backward pass carries through them. Methods read relevance and gradients
there; boundary ``i`` is block ``i``'s input, boundary ``len(blocks)`` the last block's output."""

from __future__ import annotations

import torch

from ..adapters.structure import family_name
from ..errors import UnsupportedModelError
from ..rules.base import Pass


class BlockBoundaries:
    def __init__(self, run) -> None:
        self.run = run
        self.hidden: dict[int, torch.Tensor] = {}  # the forward's hidden states at each boundary
        self.sums: dict[Pass, dict[int, torch.Tensor]] = {Pass.GRADIENT: {}, Pass.RELEVANCE: {}}  # per pass, summed over features
        self.readout_magnitude: torch.Tensor | None = None  # |d target / d h_L| summed over features

    @property
    def count(self) -> int:
        return len(self.run.structure.blocks)

    def clear_passes(self) -> None:
        """Forget what the backward passes recorded (a new target); keep the forward's tensors."""
        self.sums = {Pass.GRADIENT: {}, Pass.RELEVANCE: {}}
        self.readout_magnitude = None

    def clear(self) -> None:
        self.hidden = {}
        self.clear_passes()

    def record(self, pass_: Pass, index: int, grad: torch.Tensor) -> None:
        self.sums[pass_][index] = grad.sum(-1)
        if pass_ is Pass.GRADIENT and index == self.count:
            self.readout_magnitude = grad.detach().abs().sum(-1)

    def hooks(self) -> list:
        """Forward hooks that tap every block's input and the last block's output."""
        blocks = self.run.structure.blocks
        handles = [block.register_forward_pre_hook(self._tap_input(index), with_kwargs=True) for index, block in enumerate(blocks)]
        handles.append(blocks[-1].register_forward_hook(self._tap_output(len(blocks))))
        return handles

    def _tap(self, index: int, tensor) -> None:
        if not isinstance(tensor, torch.Tensor) or not tensor.requires_grad:
            return
        self.hidden[index] = tensor
        tensor.register_hook(lambda grad: self.record(self.run.scope.current_pass, index, grad))

    def _tap_input(self, index: int):
        def hook(module, args, kwargs):
            hidden = hidden_states(args, kwargs)
            scope, model = self.run.scope, self.run.model
            batch = scope.dispatcher.input_batch
            if isinstance(hidden, torch.Tensor) and scope.is_live(hidden) and batch and hidden.shape[0] != batch:
                raise UnsupportedModelError(
                    f"{family_name(model)}: block {index} ({type(module).__name__}) takes hidden states of shape "
                    f"{tuple(hidden.shape)} for a batch of {batch}: not batch-first (sequence-first blocks, or "
                    "windows folded into the batch), which relevancy's block boundaries do not read"
                )
            if index in self.hidden:
                raise UnsupportedModelError(
                    f"{family_name(model)}: block module {index} ({type(module).__name__}) runs more "
                    "than once per forward (layers sharing their parameters, as in ALBERT); relevancy needs one "
                    "block module per layer to find the block boundaries"
                )
            self._tap(index, hidden)

        return hook

    def _tap_output(self, index: int):
        def hook(module, args, output):
            self._tap(index, output[0] if isinstance(output, (tuple, list)) else output)

        return hook


def hidden_states(args: tuple, kwargs: dict):
    """A block's hidden-state input, passed positionally or as ``hidden_states=``."""
    return args[0] if args else kwargs.get("hidden_states")


def with_hidden_states(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    """A block's arguments with ``hidden`` in place of its hidden-state input."""
    return ((hidden, *args[1:]), dict(kwargs)) if args else (args, dict(kwargs, hidden_states=hidden))

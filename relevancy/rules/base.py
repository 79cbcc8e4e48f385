"""What every relevance rule shares: the two backward passes and the stabilised division.

A rule node sits in the autograd graph on top of an operation's true output.  One forward
builds the graph once; a backward in the GRADIENT pass hands the incoming gradient to the true
output (exact gradients, computed by PyTorch itself), a backward in the RELEVANCE pass calls the
rule and hands relevance to the operation's inputs.  Rules are written with differentiable
torch operations, so a relevance map can itself be differentiated (``create_graph=True``).
"""

from __future__ import annotations

import enum

import torch


class Pass(enum.Enum):
    GRADIENT = "gradient"
    RELEVANCE = "relevance"


class PassState:
    """Which pass the next backward runs; shared by every rule node of one scope."""

    def __init__(self) -> None:
        self.current = Pass.GRADIENT


def safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """The reference's stabiliser: a / (b + 1e-9), and 0 where b == 0 (no epsilon rule)."""
    return numerator / (denominator + 1e-9) * (denominator != 0)


def sum_to(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast relevance back onto an operand's own shape (a tensor used many times)."""
    if tensor.shape == shape:
        return tensor
    return tensor.sum_to_size(shape)


def per_sample_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Total of each sample (dim 0 is the batch), shaped to broadcast back: sums never mix samples."""
    return tensor.reshape(tensor.shape[0], -1).sum(dim=1).reshape((-1,) + (1,) * (tensor.dim() - 1))


class Rule:
    """A relevance rule: maps the relevance of an output to one relevance per tensor input."""

    # False for rules that read only their inputs' shapes: the graph then keeps no values for them,
    # which frees e.g. a rotary embedding's intermediate products as soon as the forward is done.
    needs_values = True

    def relevance(self, relevance: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        raise NotImplementedError


class _RuleNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rule: Rule, state: PassState, output: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        ctx.rule = rule
        ctx.state = state
        ctx.count = len(inputs)
        if rule.needs_values:
            ctx.save_for_backward(*inputs)
        else:
            ctx.placeholders = [torch.empty(x.shape, dtype=x.dtype, device="meta") for x in inputs]
        return output

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.state.current is Pass.GRADIENT:
            return (None, None, grad) + (None,) * ctx.count
        inputs = ctx.saved_tensors if ctx.rule.needs_values else ctx.placeholders
        shares = ctx.rule.relevance(grad, *inputs)
        return (None, None, None, *shares)


def attach(rule: Rule, state: PassState, output: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    """Put ``rule`` on top of ``output``: gradients keep flowing exactly, relevance follows the rule."""
    return _RuleNode.apply(rule, state, output, *inputs)

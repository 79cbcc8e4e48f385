"""Per-operation dispatch: which rule each torch operation gets while a model runs in a scope.

Operations are matched by name, so ``x + y``, ``torch.add`` and ``Tensor.add`` share a rule.
A tensor is *live* when it depends on the explained input; only operations on live tensors
need a rule. Anything else that computes a live float tensor is an error naming the module.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from ..rules import attention
from ..rules.base import PassState, attach
from ..rules.elementwise import Bilinear, FirstOperand, Identity, Product, Reduce, Sum
from ..rules.linear import AlphaBetaConv2d, AlphaBetaLinear, ZBetaConv2d


class UnsupportedOperationError(TypeError):
    """An operation on the explained input that has no relevance rule."""


# Operations that only move, copy, select or re-type elements: their gradient routes relevance
# exactly (a copy used twice sums), so autograd's own backward is the relevance rule.
ROUTING = frozenset(
    """view view_as reshape reshape_as transpose permute contiguous flatten unflatten squeeze unsqueeze
    expand expand_as broadcast_to repeat repeat_interleave tile cat concat concatenate stack hstack vstack
    split split_with_sizes tensor_split chunk unbind narrow select __getitem__ index_select gather
    take_along_dim to type type_as float double half bfloat16 clone masked_fill where pad roll flip
    movedim moveaxis swapaxes swapdims t __get__ _unsafe_view alias""".split()
)

IDENTITY = frozenset(
    """layer_norm group_norm rms_norm gelu relu relu6 silu mish elu selu celu leaky_relu hardtanh tanh
    sigmoid softmax dropout dropout1d dropout2d alpha_dropout feature_alpha_dropout neg __neg__ negative
    positive""".split()
)

ADD = frozenset("add __add__ __radd__ sub __sub__ __rsub__ subtract".split())
MUL = frozenset("mul __mul__ __rmul__ multiply div __truediv__ true_divide divide".split())
MATMUL = frozenset("matmul __matmul__ __rmatmul__ bmm einsum".split())
INPLACE_SUFFIX = "_"


def _name(function: Callable) -> str:
    name = getattr(function, "__name__", None) or repr(function)
    return "__get__" if name == "__get__" else name


def _tensors(values) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(_tensors(value))
    return found


class Dispatcher:
    """Applies rules to operations; ``mark``/``is_live`` track which tensors carry relevance."""

    def __init__(
        self, state: PassState, observers: list, module_path: Callable[[], str], rules: bool, explicit_attention: bool = False
    ) -> None:
        self.state = state
        self.observers = observers
        self.module_path = module_path
        self.rules = rules  # False: only attention is observed (gradient-only methods)
        self.explicit_attention = explicit_attention  # differentiable maps need a twice-differentiable attention
        self.calls: list = []  # the attention calls of the last forward, in order
        self.replaying = False  # recomputing one block (checkpointing): observers saw its forward already
        self.linear_rule = AlphaBetaLinear()
        self._token = object()

    def reset_calls(self) -> None:
        self.calls = []

    @contextlib.contextmanager
    def replay(self, first_layer: int):
        """Recompute one block whose first attention call was number ``first_layer``: its calls keep
        their layer numbers, are collected in ``calls[first_layer:]`` and are not shown to the
        observers' ``on_forward`` a second time."""
        saved = self.calls, self.replaying
        self.calls, self.replaying = [None] * first_layer, True
        try:
            yield
        finally:
            self.calls, self.replaying = saved

    # -- liveness -----------------------------------------------------------------------------
    def mark(self, value: Any) -> Any:
        for tensor in _tensors([value]):
            if tensor.is_floating_point():
                tensor._relevancy_scope = self._token
        return value

    def is_live(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor) and getattr(value, "_relevancy_scope", None) is self._token

    # -- dispatch ------------------------------------------------------------------------------
    def __call__(self, function: Callable, args: tuple, kwargs: dict) -> Any:
        name = _name(function)
        live = [t for t in _tensors(args) + _tensors(list(kwargs.values())) if self.is_live(t)]
        if name == "scaled_dot_product_attention" and live:
            output, call = attention.scaled_dot_product_attention(
                function, self.state, self.observers, len(self.calls), args, kwargs, self.explicit_attention,
                announce=not self.replaying,
            )
            self.calls.append(call)
            return self.mark(output)
        if name == "embedding":
            return self.mark(function(*args, **kwargs))
        output = function(*args, **kwargs)
        if not live or not any(t.is_floating_point() for t in _tensors([output])):
            return output
        if name in ROUTING:
            return self._inherit_origin(self.mark(output), live[0])
        if name.endswith(INPLACE_SUFFIX) or name.startswith("__i"):
            self._unsupported(name, "in-place arithmetic on a tensor that carries relevance")
        if not self.rules:
            return self.mark(output)
        return self.mark(self._apply_rule(name, function, args, kwargs, output))

    def _apply_rule(self, name, function, args, kwargs, output):
        state = self.state
        if name in IDENTITY:
            return self._inherit_origin(attach(Identity(), state, output, args[0]), args[0])
        if name in ADD:
            a, b = (args[1], args[0]) if name == "__rsub__" else (args[0], args[1])
            if self._is_rotation(a, b):
                return attach(FirstOperand(), state, output, a, b)
            sign = -1.0 if name in ("sub", "__sub__", "__rsub__", "subtract") else 1.0
            return attach(Sum(sign), state, output, self._as_tensor(a, output), self._as_tensor(b, output))
        if name in MUL:
            a, b = args[0], args[1]
            if self.is_live(a) and self.is_live(b):
                if name in ("mul", "__mul__", "__rmul__", "multiply"):
                    return attach(Product(), state, output, a, b)
                self._unsupported(name, "division by a tensor that carries relevance")
            if not self.is_live(a) and name in ("__rtruediv__",):
                self._unsupported(name, "division by a tensor that carries relevance")
            scaled = a if self.is_live(a) else b
            wrapped = attach(Identity(), state, output, scaled)
            wrapped._relevancy_scaled_from = self._origin(scaled)
            return wrapped
        if name == "linear":
            x, weight, bias = _bind(args, kwargs, ("input", "weight", "bias"), (None,))
            return self._linear(x, weight, output, name, bias)
        if name == "addmm":
            bias, x, weight_t = args[0], args[1], args[2]
            # beta * bias + alpha * x W^T: the forward's product is reusable only with the default scales
            scaled = any(value != 1 for value in list(args[3:]) + [kwargs.get("beta", 1), kwargs.get("alpha", 1)])
            return self._linear(x, weight_t.t(), output, name, bias, reuse_output=not scaled)
        if name in MATMUL:
            return self._matmul(name, function, args, kwargs, output)
        if name == "conv2d":
            x, weight, _, stride, padding, dilation, groups = _bind(
                args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation", "groups"), (None, 1, 0, 1, 1)
            )
            if isinstance(padding, str):
                self._unsupported(name, "string padding")
            rule_type = ZBetaConv2d if getattr(x, "_relevancy_pixels", False) else AlphaBetaConv2d
            return attach(rule_type(stride, padding, dilation, groups), state, output, x, weight)
        if name in ("sum", "mean"):
            x, dims, keepdim = _bind(args, kwargs, ("input", "dim", "keepdim"), (None, False))
            if isinstance(dims, int):
                dims = (dims,)
            return attach(Reduce(dims, keepdim), state, output, x)
        self._unsupported(name, "no relevance rule for this operation")

    def _linear(self, x, weight, output, name, bias=None, reuse_output: bool = True):
        if self.is_live(weight):
            self._unsupported(name, "a weight that depends on the input")
        if bias is not None and self.is_live(bias):
            self._unsupported(name, "a bias that depends on the input")
        if not reuse_output:
            return attach(self.linear_rule, self.state, output, x, weight)
        bias = bias.detach() if isinstance(bias, torch.Tensor) else None
        return attach(self.linear_rule, self.state, output, x, weight, output.detach(), bias)

    def _matmul(self, name, function, args, kwargs, output):
        if name == "einsum":
            equation, operands = args[0], args[1:]
            if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
                operands = operands[0]
            if len(operands) != 2:
                self._unsupported(name, "einsum with other than two operands")
            a, b = operands
            product = lambda x, y: torch.einsum(equation, x, y)  # noqa: E731
        else:
            a, b = args[0], args[1]
            if name == "__rmatmul__":
                a, b = b, a
            product = torch.matmul
        if self.is_live(a) and self.is_live(b):
            return attach(Bilinear(product), self.state, output, a, b)
        if self.is_live(a) and name != "einsum" and b.dim() == 2:
            return attach(self.linear_rule, self.state, output, a, b.t(), output.detach(), None)
        self._unsupported(name, "a product of the input with a constant that is not a weight matrix")

    # -- rotary position embeddings ----------------------------------------------------------------
    # q * cos + rotate_half(q) * sin: two constant-scaled copies of one tensor, the second with its
    # features permuted. Routing and negation keep a tensor's origin; a sum of two scalings of the
    # same origin is a rotation of that tensor, whose relevance stays where it is.
    @staticmethod
    def _origin(tensor: torch.Tensor) -> torch.Tensor:
        return getattr(tensor, "_relevancy_origin", tensor)

    def _inherit_origin(self, output, source):
        # not when an operation returns its input (.to() to its own dtype): a tensor that is its own
        # origin is a cycle through autograd's saved tensors that gc cannot free, and keeps the graph
        if isinstance(output, torch.Tensor) and isinstance(source, torch.Tensor) and output is not source:
            output._relevancy_origin = self._origin(source)
        return output

    def _is_rotation(self, a, b) -> bool:
        origin_a = getattr(a, "_relevancy_scaled_from", None)
        return origin_a is not None and origin_a is getattr(b, "_relevancy_scaled_from", None)

    @staticmethod
    def _as_tensor(value, like: torch.Tensor) -> torch.Tensor:
        return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=like.dtype, device=like.device)

    def _unsupported(self, name: str, why: str):
        raise UnsupportedOperationError(
            f"relevancy cannot propagate relevance through `{name}` in module {self.module_path()}: {why}. "
            "Add a rule for it (relevancy.rules) or wrap the module with a module rule "
            "(relevancy.tracing.register_module_rule)."
        )


def _bind(args: tuple, kwargs: dict, names: tuple, defaults: tuple) -> list:
    """Positional and keyword arguments as one list in signature order, defaults filled in."""
    values = list(args) + [None] * (len(names) - len(args))
    first_default = len(names) - len(defaults)
    for index, name in enumerate(names):
        if name in kwargs:
            values[index] = kwargs[name]
        elif index >= len(args) and index >= first_default:
            values[index] = defaults[index - first_default]
    return values

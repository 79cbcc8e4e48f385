"""Per-operation dispatch: which rule each torch operation gets while a model runs in a scope.

Operations are matched by name, so ``x + y``, ``torch.add`` and ``Tensor.add`` share a rule.
A tensor is *live* when it depends on the explained input; only operations on live tensors
need a rule. Anything else that computes a live float tensor is an error naming the module.
"""

from __future__ import annotations

import contextlib
import dis
import os
import sys
from typing import Any, Callable

import torch

from ..errors import UnsupportedOperationError
from ..rules import attention
from ..rules.base import PassState, attach
from ..rules.composites import LRP, Composite
from ..rules.elementwise import Bilinear, FirstOperand, Identity, LinearMap, Product, Reduce, Sum
from ..rules.gradient import DivisorHeld, HeldConstant, IdentityImplicit, LayerNormHeld, NormalizeHeld, Scaled
from ..rules.linear import AlphaBetaConv2d, AlphaBetaLinear, AlphaBetaProduct, ZBetaConv2d


# Operations that only move, copy, select or re-type elements: their gradient routes relevance
# exactly (a copy used twice sums), so autograd's own backward is the relevance rule.
ROUTING = frozenset(
    """view view_as reshape reshape_as transpose permute contiguous flatten unflatten squeeze unsqueeze
    expand expand_as broadcast_to repeat repeat_interleave tile cat concat concatenate stack hstack vstack
    split split_with_sizes tensor_split chunk unbind narrow select __getitem__ index_select gather
    take_along_dim to type type_as float double half bfloat16 clone masked_fill where pad roll flip
    movedim moveaxis swapaxes swapdims t __get__ _unsafe_view alias topk sort max min amax amin kthvalue
    masked_scatter index_put scatter index_copy diagonal tril triu unfold as_strided""".split()
)

# Normalisations and activations pass relevance on unchanged (the paper's rule for LayerNorm and GELU;
# batch norm and L2-normalisation are normalisations like LayerNorm).
IDENTITY = frozenset(
    """layer_norm group_norm rms_norm batch_norm instance_norm normalize gelu relu relu6 silu mish elu selu
    celu leaky_relu hardtanh hardswish hardsigmoid tanh sigmoid softplus softmax log_softmax dropout dropout1d
    dropout2d alpha_dropout feature_alpha_dropout neg __neg__ negative positive""".split()
)

# Results that do not depend on the input's values (shapes, fresh constants, a cut graph): no relevance.
CONSTANT = frozenset(
    """zeros_like ones_like empty_like full_like rand_like randn_like randint_like new_zeros new_ones new_full
    new_empty new_tensor detach detach_ size dim numel""".split()
)

# Under AttnLRP / CP-LRP these pass the modified gradient on unchanged (plain gradient x input); the
# other IDENTITY operations are normalisations (scale held constant) or non-linearities (identity rule).
GRADIENT_PASSES = frozenset(
    """softmax log_softmax dropout dropout1d dropout2d alpha_dropout feature_alpha_dropout neg __neg__ negative
    positive""".split()
)
NORMALISATIONS = frozenset("layer_norm group_norm rms_norm batch_norm instance_norm normalize".split())

# Normalisers computed from the input (1 / max, 1 / sqrt(variance)) are held constant, as LayerNorm's
# scale is: gradients still flow through them, relevance goes to what they scale.
NORMALISERS = frozenset("reciprocal rsqrt sqrt __rtruediv__ var std norm".split())

# Fixed linear maps without weights: relevance is split in proportion to each input's contribution.
LINEAR_MAPS = frozenset(
    """avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
    interpolate upsample cumsum""".split()
)

# Eager attention: the probabilities travel from the softmax to their product with the values
# through these without changing (dropout in eval mode, casts, reshapes).
CARRIES_PROBABILITIES = frozenset("dropout to type type_as float half bfloat16 double contiguous view reshape clone".split())

ADD = frozenset("add __add__ __radd__ sub __sub__ __rsub__ subtract".split())
MUL = frozenset("mul __mul__ __rmul__ multiply div __truediv__ true_divide divide".split())
MATMUL = frozenset("matmul __matmul__ __rmatmul__ bmm einsum".split())
# Out-of-place forms of in-place arithmetic, for ``x op= y`` (see ``Dispatcher._in_place``).
AUGMENTED = {"add_": "add", "sub_": "sub", "mul_": "mul", "div_": "div", "true_divide_": "div"}
_PACKAGE_DIRS = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(torch.__file__))


def _is_in_place(name: str) -> bool:
    """``add_``, ``masked_fill_``, ``__iadd__``…, but not reflected or other dunders (``__rsub__``)."""
    if name.startswith("__") and name.endswith("__"):
        return name.startswith("__i") and name not in ("__index__", "__int__", "__invert__", "__init__", "__iter__")
    return name.endswith("_") and not name.startswith("_")


def _augmented_assignment() -> bool:
    """Whether the model's own code is executing ``x op= y`` (then Python rebinds ``x`` to the
    operator's result) rather than calling ``x.add_(y)`` for its side effect. PyTorch dispatches
    both as ``add_``; the calling instruction tells them apart."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIRS):
        frame = frame.f_back
    if frame is None or sys.version_info < (3, 11):
        return False
    code, at = frame.f_code.co_code, frame.f_lasti
    return dis.opname[code[at]] == "BINARY_OP" and 13 <= code[at + 1] <= 25  # NB_INPLACE_ADD .. NB_INPLACE_XOR


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
        self, state: PassState, observers: list, module_path: Callable[[], str], rules: bool, explicit_attention: bool = False,
        composite: Composite = LRP,
    ) -> None:
        self.state = state
        self.composite = composite  # which rules: the paper's (LRP) or a gradient form (AttnLRP, CP-LRP)
        self.gradient_form = rules and composite.gradient_form
        self.observers = observers
        self.module_path = module_path
        self.rules = rules  # False: only attention is observed (gradient-only methods)
        self.explicit_attention = explicit_attention  # differentiable maps need a twice-differentiable attention
        self.calls: list = []  # the attention calls of the last forward, in order
        self.replaying = False  # recomputing one block (checkpointing): observers saw its forward already
        self.linear_rule = AlphaBetaLinear()
        self.input_batch: int | None = None  # batch size of the explained input (attention maps are per sample)
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
        if not live or name in CONSTANT:
            return function(*args, **kwargs)
        if name in NORMALISERS and self.rules:
            return self._hold(function(*args, **kwargs)) if self.gradient_form else function(*args, **kwargs)
        if _is_in_place(name):
            return self._in_place(name, function, args, kwargs)
        if self.gradient_form:
            held = self._held_operands(name, function, args, kwargs)
            if held is not None:
                return held
        if name == "scaled_dot_product_attention":
            if self.gradient_form:
                output, call = attention.gradient_form_attention(
                    function, self.state, len(self.calls), args, kwargs, self.composite.hold_attention, self.explicit_attention
                )
            else:
                output, call = attention.scaled_dot_product_attention(
                    function, self.state, self.observers, len(self.calls), args, kwargs, self.explicit_attention,
                    announce=not self.replaying,
                )
            self.calls.append(call)
            return self.mark(output)
        output = function(*args, **kwargs)
        if not any(t.is_floating_point() for t in _tensors([output])):
            return output
        if name in MATMUL and self._is_attention_product(args) and not self.gradient_form:
            return self.mark(self._eager_attention(args, output))
        if name in ROUTING:
            result = self._inherit_origin(self.mark(output), live[0])
        elif not self.rules:
            result = self.mark(output)
        elif self.gradient_form:
            result = self.mark(self._gradient_rule(name, args, kwargs, output))
        else:
            result = self.mark(self._apply_rule(name, function, args, kwargs, output))
        if name == "softmax" or name in CARRIES_PROBABILITIES:
            self._carry_probabilities(name, args, result)
        return result

    def _in_place(self, name, function, args, kwargs):
        """``x op= y`` on tensors that carry relevance runs out of place under the rules, and Python
        rebinds ``x`` to the result. An in-place method called for its side effect (``x.add_(y)``)
        cannot be rebound: refused before it runs, so nothing is ever applied twice."""
        if name in AUGMENTED and _augmented_assignment():
            return self(getattr(torch.Tensor, AUGMENTED[name]), args, kwargs)
        self._unsupported(
            name, "an in-place operation on a tensor that carries relevance (refused before it ran; "
            "`x = x + y` style code is supported)"
        )

    # -- eager attention: softmax(scores) @ v, as the model computes it --------------------------
    def _carry_probabilities(self, name, args, result) -> None:
        if not isinstance(result, torch.Tensor):
            return
        if name == "softmax":
            result._relevancy_probabilities = True
            return
        source = args[0] if args else None
        if getattr(source, "_relevancy_probabilities", False) and result.shape[-1] == source.shape[-1]:
            result._relevancy_probabilities = True

    def _is_attention_product(self, args) -> bool:
        """Whether ``args`` are (attention probabilities, values), both carrying relevance."""
        if len(args) < 2 or not (self.is_live(args[0]) and self.is_live(args[1])):
            return False
        return getattr(args[0], "_relevancy_probabilities", False)

    def _eager_attention(self, args, output):
        operand, value = args[0], args[1]
        batch = self.input_batch or operand.shape[0]
        if operand.dim() < 3 or operand.shape[0] % batch:
            self._unsupported("matmul", "attention probabilities whose first dimension is not the batch")
        map_ = operand.reshape(batch, -1, *operand.shape[-2:])  # (B, H, N, M); bmm's (B*H, N, M) is batch-major
        map_ = map_ if self.explicit_attention else map_.detach()  # a differentiable map keeps its graph
        wrapped, call = attention.observed_product(
            output, operand, value, map_, self.state, self.observers, len(self.calls), announce=not self.replaying
        )
        self.calls.append(call)
        return wrapped

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
            if self.is_live(a) and self.is_live(b) and name in ("mul", "__mul__", "__rmul__", "multiply"):
                return attach(Product(), state, output, a, b)
            # a scaling by a constant, or x / n(x) (a router's weights over their sum): a normalisation
            # whose divisor is held constant as LayerNorm's is, so the numerator keeps the relevance
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
        if name == "baddbmm":
            # beta * bias + alpha * (a @ b), e.g. ALiBi + q k^T: the bias is held like an attention mask
            bias, a, b, _, alpha = _bind(args, kwargs, ("input", "batch1", "batch2", "beta", "alpha"), (1, 1))
            if self.is_live(bias):
                self._unsupported(name, "an added term that depends on the input")
            return attach(Bilinear(lambda x, y, s=alpha: torch.bmm(x, y) * s), state, output, a, b)
        if name == "_grouped_mm":  # a mixture of experts: each group of tokens times its expert's weight
            x, weight = args[0], args[1]
            self._refuse_live_parameters(name, weight)
            return attach(AlphaBetaProduct(lambda a, w: function(a, w, *args[2:], **kwargs)), state, output, x, weight)
        if name in LINEAR_MAPS:
            x = args[0]
            return attach(LinearMap(lambda t: function(t, *args[1:], **kwargs)), state, output, x)
        if name in ("conv1d", "conv2d"):
            x, weight, _, stride, padding, dilation, groups = _bind(
                args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation", "groups"), (None, 1, 0, 1, 1)
            )
            rule_type = ZBetaConv2d if getattr(x, "_relevancy_pixels", False) else AlphaBetaConv2d
            dims = 1 if name == "conv1d" else 2
            return attach(rule_type(stride, padding, dilation, groups, dims), state, output, x, weight)
        if name in ("sum", "mean"):
            x, dims, keepdim = _bind(args, kwargs, ("input", "dim", "keepdim"), (None, False))
            if isinstance(dims, int):
                dims = (dims,)
            return attach(Reduce(dims, keepdim), state, output, x)
        self._unsupported(name, "no relevance rule for this operation")

    def _refuse_live_parameters(self, name, weight, bias=None) -> None:
        """A layer's weight and bias are constants of the rules (both composites)."""
        if self.is_live(weight):
            self._unsupported(name, "a weight that depends on the input")
        if bias is not None and self.is_live(bias):
            self._unsupported(name, "a bias that depends on the input")

    def _linear(self, x, weight, output, name, bias=None, reuse_output: bool = True):
        self._refuse_live_parameters(name, weight, bias)
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

    def head_relevance(self, seed: torch.Tensor, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """A causal LM head's rule for the few vocabulary ``rows`` a target touches."""
        if self.gradient_form:
            return seed @ rows
        return self.linear_rule.relevance(seed, x, rows)[0]

    # -- AttnLRP / CP-LRP: the relevance pass carries a modified gradient (rules/gradient.py) -------
    def _hold(self, tensor):
        """Held constant in the relevance pass: no relevance flows through ``tensor``."""
        if not (isinstance(tensor, torch.Tensor) and tensor.requires_grad and tensor.is_floating_point()):
            return tensor
        held = attach(HeldConstant(), self.state, tensor, tensor)
        for attribute in ("_relevancy_scope", "_relevancy_probabilities", "_relevancy_activation"):
            if hasattr(tensor, attribute):
                setattr(held, attribute, getattr(tensor, attribute))
        return held

    def _held_operands(self, name, function, args, kwargs):
        """CP-LRP holds the attention probabilities in A @ v and the gate in act(gate) * up (the other
        operand keeps the whole gradient): the product is computed from the held operand. None
        where nothing is held; then autograd's own backward is the rule except where
        ``_gradient_rule`` puts a node."""
        if len(args) < 2 or not (self.is_live(args[0]) and self.is_live(args[1])):
            return None
        if name in MATMUL and self._is_attention_product(args) and self.composite.hold_attention:
            return self.mark(function(self._hold(args[0]), *args[1:], **kwargs))
        if name in ("mul", "__mul__", "__rmul__", "multiply") and self.composite.hold_gates:
            gates = [getattr(a, "_relevancy_activation", False) for a in args[:2]]
            if gates[0] != gates[1]:
                operands = [self._hold(a) if gate else a for a, gate in zip(args[:2], gates)]
                return self.mark(function(*operands, *args[2:], **kwargs))
        return None

    def _gradient_rule(self, name, args, kwargs, output):
        """The identity rule, held normalisations and divisors, and the uniform rule on products of
        two live tensors; operations without a rule are refused as under LRP."""
        state, x = self.state, args[0]
        both_live = len(args) >= 2 and self.is_live(args[0]) and self.is_live(args[1])
        if name in IDENTITY:
            if name in GRADIENT_PASSES:
                return output
            if name == "layer_norm":
                _, shape, weight, _, eps = _bind(args, kwargs, ("input", "normalized_shape", "weight", "bias", "eps"), (None, None, 1e-5))
                return attach(LayerNormHeld(shape, weight, eps), state, output, x)
            if name == "normalize":
                _, p, dim, eps = _bind(args, kwargs, ("input", "p", "dim", "eps"), (2.0, 1, 1e-12))
                return attach(NormalizeHeld(p, dim, eps), state, output, x)
            if name == "batch_norm" and not _bind(args, kwargs, ("input", "rm", "rv", "w", "b", "training"), (None, None, False))[5]:
                return output  # running statistics: an affine map
            if name in NORMALISATIONS and name != "rms_norm":
                self._unsupported(name, f"{self.composite.name} holds a normalisation's scale constant, not yet for `{name}`")
            wrapped = attach(IdentityImplicit(), state, output, x, output.detach())  # rms_norm: y / x = w / rms
            wrapped._relevancy_activation = name not in NORMALISATIONS
            return wrapped
        if name in MUL:
            a, b = args[0], args[1]
            if both_live:
                if name in ("mul", "__mul__", "__rmul__", "multiply"):
                    return attach(Scaled(0.5), state, output, output)
                return attach(DivisorHeld(), state, output, a, b.detach())
            if name in ("div", "__truediv__", "true_divide", "divide") and self.is_live(b):
                return self._hold(output)  # c / x: a normaliser, held constant
            return output
        if name in ("linear", "addmm"):
            _, weight, bias = (args[1], args[2], args[0]) if name == "addmm" else _bind(args, kwargs, ("input", "weight", "bias"), (None,))
            self._refuse_live_parameters(name, weight, bias)
            return output
        if name in MATMUL or name == "baddbmm":
            if name == "baddbmm" and self.is_live(args[0]):
                self._unsupported(name, "an added term that depends on the input")
            operands = args[1:3] if name == "baddbmm" else args[1:] if name == "einsum" else args[:2]
            if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
                operands = operands[0]
            if sum(self.is_live(t) for t in operands) == 2:
                return attach(Scaled(0.5), state, output, output)
            return output
        if name == "_grouped_mm":
            self._refuse_live_parameters(name, args[1])
        if name in ADD or name in LINEAR_MAPS or name in ("_grouped_mm", "conv1d", "conv2d", "sum", "mean"):
            return output
        self._unsupported(name, "no relevance rule for this operation")

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

"""The scope in which a model runs with relevance rules, and which always gives the model back as it was.

Inside ``with RelevanceScope(model) as scope:``, and ``with scope.tracing():`` around the model's
forward call, every torch operation goes through the dispatcher (a ``TorchFunctionMode``, so
nothing global is patched); norm and activation modules
get module-level identity rules, the model is in eval mode, and parameters do not require
gradients unless the map must be differentiable. The model keeps its own attention
implementation (SDPA and eager attention are both observed as they run). On exit — errors
included — the hooks are removed and train/eval mode and ``requires_grad`` flags are restored
exactly.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import UnsupportedModelError
from ..rules.base import Pass, PassState, attach
from ..rules.composites import COMPOSITES, Composite
from ..rules.elementwise import Identity
from ..rules.gradient import IdentityImplicit
from .dispatch import Dispatcher

_ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Mish, nn.ELU, nn.LeakyReLU, nn.Hardtanh, nn.ReLU6)
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)

# (predicate, rule factory): modules treated as one operation. Users may add their own.
_MODULE_RULES: list[tuple[Callable[[nn.Module], bool], Callable[[nn.Module], object]]] = []


def register_module_rule(predicate: Callable[[nn.Module], bool], rule_factory: Callable[[nn.Module], object]) -> None:
    """Treat every module for which ``predicate`` holds as one operation with ``rule_factory(module)``'s
    rule (a ``relevancy.rules.base.Rule`` taking the module's first input)."""
    _MODULE_RULES.append((predicate, rule_factory))


def _is_norm(module: nn.Module) -> bool:
    if isinstance(module, _NORMS):
        return True
    name = type(module).__name__
    params = list(module.parameters(recurse=False))
    return name.endswith(("RMSNorm", "LayerNorm", "NoNorm")) and not list(module.children()) and len(params) <= 2


def _is_activation(module: nn.Module) -> bool:
    return isinstance(module, _ACTIVATIONS) or type(module).__module__ == "transformers.activations"


register_module_rule(lambda m: _is_norm(m) or _is_activation(m), lambda m: Identity())


def module_rule(module: nn.Module):
    for predicate, factory in reversed(_MODULE_RULES):
        if predicate(module):
            return factory(module)
    return None


def gradient_form_module_rule(module: nn.Module):
    """AttnLRP / CP-LRP: the identity rule for activation modules and RMSNorm (whose scale is held
    constant). Other norm modules run op by op under the dispatcher, which holds ``layer_norm``'s
    scale (the rules registered for LRP are relevance rules, which do not apply to a modified gradient)."""
    if _is_activation(module):
        return IdentityImplicit()
    if _is_norm(module) and (isinstance(module, nn.RMSNorm) or type(module).__name__.endswith("RMSNorm")):
        return IdentityImplicit()  # y / x = weight / rms
    return None


class _Mode(TorchFunctionMode):
    def __init__(self, scope: "RelevanceScope") -> None:
        super().__init__()
        self.scope = scope

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.scope.suspended:
            return func(*args, **kwargs)
        return self.scope.dispatcher(func, args, kwargs)


class RelevanceScope:
    """Run a model with relevance rules (``rules=False``: observe attention only, for gradient methods)."""

    def __init__(
        self, model: nn.Module, *, rules: bool = True, observers: list | None = None, differentiable: bool = False,
        composite: Composite | str = "lrp",
    ):
        self.model = model
        self.composite = COMPOSITES[composite] if isinstance(composite, str) else composite
        self.state = PassState()
        self.observers = list(observers or [])
        self.differentiable = differentiable
        self.suspended = 0
        self._module_stack: list[str] = []
        self._opaque_inputs: list = []
        self.dispatcher = Dispatcher(
            self.state, self.observers, self._module_path, rules, explicit_attention=differentiable, composite=self.composite
        )
        self._rules = rules
        self._handles: list = []
        self._saved: dict = {}

    # -- public helpers ------------------------------------------------------------------------
    @property
    def current_pass(self) -> Pass:
        return self.state.current

    def set_pass(self, pass_: Pass) -> None:
        self.state.current = pass_

    def mark_input(self, tensor: torch.Tensor, pixels: bool = False) -> torch.Tensor:
        """Declare ``tensor`` as the explained input: relevance flows towards it."""
        if pixels:
            tensor._relevancy_pixels = True
        self.dispatcher.input_batch = tensor.shape[0]
        return self.dispatcher.mark(tensor)

    def is_live(self, tensor) -> bool:
        return self.dispatcher.is_live(tensor)

    @contextlib.contextmanager
    def tracing(self):
        """Dispatch every torch operation to its rule: wrap the model's forward call in this."""
        with _Mode(self):
            yield

    @contextlib.contextmanager
    def paused(self):
        """Plain PyTorch inside: for hooks and backward passes, whose operations are not the model's."""
        self.suspended += 1
        try:
            yield
        finally:
            self.suspended -= 1

    def add_handle(self, handle) -> None:
        """A hook handle that the scope removes on exit."""
        self._handles.append(handle)

    # -- enter / exit ----------------------------------------------------------------------------
    def __enter__(self) -> "RelevanceScope":
        model = self.model
        self._saved = {
            "training": {name: m.training for name, m in model.named_modules()},
            "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        }
        try:
            self._check_attention_implementation()
            model.eval()
            if not self.differentiable:
                for parameter in model.parameters():
                    parameter.requires_grad_(False)
            self._install_module_hooks()
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        saved = self._saved
        modules = dict(self.model.named_modules())
        for name, training in saved.get("training", {}).items():
            modules[name].training = training
        parameters = dict(self.model.named_parameters())
        for name, flag in saved.get("requires_grad", {}).items():
            parameters[name].requires_grad_(flag)
        self._saved = {}

    def _check_attention_implementation(self) -> None:
        """Fused kernels other than SDPA (flash, flex) hide the attention map from PyTorch's dispatch."""
        for module in self.model.modules():
            config = getattr(module, "config", None)
            implementation = getattr(config, "_attn_implementation", None) if config is not None else None
            if isinstance(implementation, str) and implementation not in ("eager", "sdpa"):
                raise UnsupportedModelError(
                    f"{type(self.model).__name__} runs attention with {implementation!r} (module "
                    f"{type(module).__name__}), whose attention maps relevancy cannot observe; relevancy explains "
                    "'eager' and 'sdpa' attention: load the model with attn_implementation='sdpa' or 'eager'"
                )

    # -- module hooks ------------------------------------------------------------------------------
    def _module_path(self) -> str:
        if not self._module_stack:
            return "<top level>"
        return self._module_stack[-1]

    def _install_module_hooks(self) -> None:
        for name, module in self.model.named_modules():
            label = f"`{name or type(module).__name__}` ({type(module).__name__})"
            if not self._rules:
                rule = None
            else:
                rule = gradient_form_module_rule(module) if self.composite.gradient_form else module_rule(module)
            self._handles.append(module.register_forward_pre_hook(self._enter_module(label, rule is not None)))
            self._handles.append(module.register_forward_hook(self._leave_module(rule)))

    def _enter_module(self, label: str, opaque: bool):
        def hook(module, args):
            self._module_stack.append(label)
            if opaque:
                self.suspended += 1
                self._opaque_inputs.append(args[0] if args else None)

        return hook

    def _leave_module(self, rule):
        def hook(module, args, output):
            self._module_stack.pop()
            if rule is None:
                return None
            self.suspended -= 1
            x = self._opaque_inputs.pop()
            if not (isinstance(output, torch.Tensor) and self.is_live(x)):
                return None
            self.suspended += 1
            try:
                inputs = (x, output.detach()) if getattr(rule, "with_output", False) else (x,)
                wrapped = attach(rule, self.state, output, *inputs)
            finally:
                self.suspended -= 1
            if _is_activation(module):
                wrapped._relevancy_activation = True  # CP-LRP holds a gate act(x) in act(x) * y
            return self.dispatcher.mark(wrapped)

        return hook

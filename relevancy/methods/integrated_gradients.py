"""Integrated gradients (Sundararajan et al. 2017), midpoint Riemann sum, from a zero baseline or,
for text, from the embeddings of given baseline token ids."""

from __future__ import annotations

import torch

from ..progress import progress_bar
from ..rules.base import Pass
from .base import Method, input_scores, register


@register
class IntegratedGradients(Method):
    name = "integrated_gradients"
    signed = True
    uses_rules = False
    description = "Integrated gradients from a zero input (signed)"

    def __init__(
        self, steps: int = 20, baseline_ids: torch.Tensor | None = None, stratified: bool = False,
        progress: bool | None = None,
    ) -> None:
        """``stratified``: each step's point is drawn uniformly in its 1/steps of the path (torch's
        random generator) instead of its midpoint: an unbiased estimate with few steps, which a
        model trained against it cannot game by being flat at fixed points.
        ``baseline_ids`` (text only, the shape of ``input_ids``): the path starts at these tokens'
        embeddings. With the input's ids except [MASK] at some positions, only those positions have
        a path, and by completeness their scores sum to about the target's change when those tokens
        are masked (the audit's removal test).
        ``progress``: a bar over the steps (None: on a terminal, for calls longer than 2 s)."""
        if steps < 1:
            raise ValueError("integrated_gradients needs steps >= 1")
        self.steps = steps
        self.baseline_ids = baseline_ids
        self.stratified = stratified
        self.progress = progress

    def compute(self, run):
        baseline = self._baseline(run)
        total = None
        with progress_bar(self.steps, "integrated gradients", self.progress, unit="step") as bar:
            for step in range(self.steps):
                alpha = (step + (torch.rand(()).item() if self.stratified else 0.5)) / self.steps
                alpha = max(alpha, 1e-6)  # the gradient is divided by it
                if baseline is None:
                    run.forward(input_transform=lambda x, a=alpha: x * a)
                else:
                    run.forward(input_transform=lambda x, a=alpha: baseline + a * (x - baseline))
                # the leaf is the input, not the path point: d/dx f(b + a (x - b)) = a f'(...)
                gradient = run.backward(Pass.GRADIENT, to="input") / alpha
                total = gradient if total is None else total + gradient
                bar.update()
        difference = run.input_leaf if baseline is None else run.input_leaf - baseline
        attributions = difference * total / self.steps
        run.forward()  # the logits of the real input, for the result
        return input_scores(run, attributions)

    def _baseline(self, run) -> torch.Tensor | None:
        if self.baseline_ids is None:
            return None
        ids = run.inputs.get("input_ids")
        if run.structure.modality != "text" or ids is None:
            raise ValueError("baseline_ids need a text model called with input_ids (images start from a zero input)")
        if tuple(self.baseline_ids.shape) != tuple(ids.shape):
            raise ValueError(
                f"baseline_ids have shape {tuple(self.baseline_ids.shape)} but input_ids {tuple(ids.shape)}: "
                "give one baseline id per input token"
            )
        with run.scope.paused(), torch.enable_grad():
            return run.structure.input_embeddings(self.baseline_ids.to(ids.device))

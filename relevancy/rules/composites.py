"""Composites: which family of rules the relevance pass applies (zennit's word for a rule set)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Composite:
    """``gradient_form``: the relevance pass carries a modified gradient (``rules/gradient.py``)
    instead of relevance; ``hold_attention`` / ``hold_gates``: CP-LRP's constant attention
    probabilities and gates, where AttnLRP splits those products uniformly."""

    name: str
    gradient_form: bool = False
    hold_attention: bool = False
    hold_gates: bool = False


LRP = Composite("lrp")  # Chefer et al.: alpha-beta, halved attention products, normalised sums
ATTNLRP = Composite("attnlrp", gradient_form=True)  # Achtibat et al. ICML 2024
CP_LRP = Composite("cp_lrp", gradient_form=True, hold_attention=True, hold_gates=True)  # Ali et al. ICML 2022

COMPOSITES = {composite.name: composite for composite in (LRP, ATTNLRP, CP_LRP)}

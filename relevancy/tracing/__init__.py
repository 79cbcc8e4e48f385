"""Running a model under relevance rules: per-operation dispatch inside a restoring scope."""

from .dispatch import UnsupportedOperationError
from .scope import RelevanceScope, register_module_rule

__all__ = ["RelevanceScope", "UnsupportedOperationError", "register_module_rule"]

"""Running a model under relevance rules: per-operation dispatch inside a restoring scope."""

from ..errors import UnsupportedModelError, UnsupportedOperationError
from .scope import RelevanceScope, register_module_rule

__all__ = ["RelevanceScope", "UnsupportedModelError", "UnsupportedOperationError", "register_module_rule"]

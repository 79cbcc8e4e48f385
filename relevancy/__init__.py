"""relevancy: class-specific relevance maps for Transformers (Chefer, Gur & Wolf, CVPR 2021)."""

from .engine import Attribution, attribute, attribute_targets
from .methods import available as available_methods
from .targets import ClassIndex, Contrast, Predicted
from .errors import UnsupportedModelError, UnsupportedOperationError
from .tracing import RelevanceScope

__version__ = "0.1.0"

__all__ = [
    "Attribution", "ClassIndex", "Contrast", "Predicted", "RelevanceScope", "UnsupportedModelError", "UnsupportedOperationError",
    "attribute", "attribute_targets", "available_methods",
]

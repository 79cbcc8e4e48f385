"""The errors that say a model or one of its operations cannot be explained (yet), and why.

They are not ``TypeError``s on purpose: PyTorch turns a ``TypeError`` raised inside an in-place
operator (``x += y``) into ``NotImplemented``, and Python would then silently retry ``x = x + y``.
"""

from __future__ import annotations


class UnsupportedModelError(RuntimeError):
    """The model, as it runs, is outside what relevancy can explain; the message names the family,
    the module and the operation that blocks, and what is supported."""


class UnsupportedOperationError(UnsupportedModelError):
    """An operation on the explained input that has no relevance rule."""

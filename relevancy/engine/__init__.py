"""The one contract every method, evaluation and viewer uses: model inputs + target -> Attribution.

``run.py``: one forward inside a ``RelevanceScope`` and the gradient and relevance passes over it;
``boundaries.py``: what those passes carry through the block boundaries; ``checkpointing.py``: the
same passes with blocks recomputed instead of kept; ``attribute.py``: the public calls.
"""

from .attribute import attribute, attribute_targets
from .attribution import Attribution
from .run import Run

__all__ = ["Attribution", "Run", "attribute", "attribute_targets"]

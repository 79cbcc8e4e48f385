"""``relevancy serve``: a local web page to explore explanations (text, images, answers of causal LMs),
audit folders and evaluation folders. Needs the ``serve`` extra: ``pip install -e ".[serve]"``."""

from .app import Limits, create_app
from .models import ServedModel, load_models

__all__ = ["Limits", "ServedModel", "create_app", "load_models"]

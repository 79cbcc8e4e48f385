"""The models the explorer serves: each loaded once at start-up, under the name it was given, with a
lock, since a model's relevance hooks let one explanation run on it at a time."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..explainer import Explainer

DEFAULT_MODELS = ("default", "default-image")  # the embedded sentiment model and Fashion-MNIST classifier


@dataclass
class ServedModel:
    name: str
    explainer: Explainer
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def kind(self) -> str:
        """"text" or "image" (classifiers), or "answer" (causal language models)."""
        structure = self.explainer.structure
        return "answer" if structure.causal else structure.modality

    @property
    def labels(self) -> list[str]:
        labels = self.explainer.structure.labels or {}
        count = getattr(self.explainer.model.config, "num_labels", len(labels)) if self.kind != "answer" else 0
        return [str(labels.get(i, i)) for i in range(count)]

    @property
    def window(self) -> int | None:
        """The most tokens the model reads (text and answer models), None when it does not say."""
        if self.kind == "image":
            return None
        limits = (getattr(self.explainer.processor, "model_max_length", None),
                  getattr(self.explainer.model.config, "max_position_embeddings", None))
        limits = [x for x in limits if isinstance(x, int) and 0 < x < 10**8]
        return min(limits) if limits else None

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "labels": self.labels, "window": self.window}


def load_models(names: list[str] | tuple[str, ...]) -> dict[str, ServedModel]:
    """Each named model loaded once (hub names, local folders, "default", "default-image"); remote
    code is never run (``relevancy.adapters.loading`` does not pass ``trust_remote_code``)."""
    models = {}
    for name in dict.fromkeys(names):
        models[name] = ServedModel(name, Explainer.from_pretrained(name))
    return models

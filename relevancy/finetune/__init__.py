"""Relevance-guided fine-tuning: cross-entropy plus terms on a differentiable relevance map
(``relevancy finetune`` on the command line). ``RelevanceTrainer`` (Hugging Face Trainer) is
imported on first use, since the Trainer needs the ``accelerate`` package."""

from .batches import RelevanceCollator, audit_words, penalised_token_ids, training_examples
from .loss import RelevanceLoss, RelevanceLossOutput
from .train import FineTuneResult, fine_tune

__all__ = [
    "FineTuneResult", "RelevanceCollator", "RelevanceLoss", "RelevanceLossOutput", "RelevanceTrainer", "audit_words",
    "fine_tune", "penalised_token_ids", "training_examples",
]


def __getattr__(name):
    if name == "RelevanceTrainer":
        from .trainer import RelevanceTrainer

        return RelevanceTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

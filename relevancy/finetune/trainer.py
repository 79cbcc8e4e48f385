"""RelevanceLoss inside the Hugging Face ``Trainer`` (which needs the ``accelerate`` package)."""

from __future__ import annotations

from transformers import Trainer

from .loss import RelevanceLoss


class RelevanceTrainer(Trainer):
    """``Trainer`` whose loss is a ``RelevanceLoss``. Use ``RelevanceCollator`` as the data collator
    and ``remove_unused_columns=False``, so the masks reach the loss.

    >>> trainer = RelevanceTrainer(model=model, args=args, train_dataset=examples,
    ...     data_collator=RelevanceCollator(tokenizer), relevance_loss=RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=ids))
    """

    def __init__(self, *args, relevance_loss: RelevanceLoss, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.relevance_loss = relevance_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        output = self.relevance_loss(model, inputs)
        return (output.loss, {"logits": output.logits}) if return_outputs else output.loss

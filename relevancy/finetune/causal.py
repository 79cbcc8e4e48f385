"""Fine-tune a decoder LLM on (prompt, answer) pairs with the deletion penalty on given words.

The task loss is the answer's negative log-likelihood given the prompt (mean per answer token). The
deletion penalty (as ``penalty_mode="deletion"`` of the classifiers' ``RelevanceLoss``) is, per prompt
that contains a penalised word, the squared change of the answer's log-likelihood when the word's
tokens are deleted from the prompt: exact, two forwards, no baseline token whose meaning the model
could move. ``insert_word`` also penalises the word inserted at a random word position into the input
of the prompts without it, so its effect is penalised in every context, not only the class it came with.

Prompts are ``template`` with ``{text}`` replaced by the example's text; the answer follows the prompt
directly (write its leading space into the answer, " positive"). Sequences are padded on the right,
so a causal model's real positions are unaffected by the padding, and logits are computed only at the
positions that predict answer tokens (``logits_to_keep``): the vocabulary projection is the largest
matrix of a small LLM.

``fine_tune_causal`` trains a copy (full fine-tuning, or LoRA adapters through the optional ``peft``
package, merged back into plain weights), so the given model never changes and the result saves and
loads with plain transformers.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from .loss import _delete
from .train import FineTuneResult, fine_tune

TEXT_FIELD = "{text}"


def check_template(template: str) -> None:
    if not isinstance(template, str) or template.count(TEXT_FIELD) != 1:
        raise ValueError(
            f"the prompt template must contain {TEXT_FIELD} exactly once, where each example's text goes "
            f"(e.g. \"Review: {TEXT_FIELD}\\nSentiment:\"); got {template!r}"
        )


def render(template: str, text: str) -> tuple[str, tuple[int, int]]:
    """The prompt and the character span of the text inside it."""
    start = template.index(TEXT_FIELD)
    return template[:start] + text + template[start + len(TEXT_FIELD) :], (start, start + len(text))


def word_spans(text: str, words: Iterable[str]) -> list[tuple[int, int]]:
    """Character spans of whole-word, case-insensitive occurrences of ``words`` in ``text``."""
    spans = []
    for word in words:
        pattern = r"(?<!\w)" + re.escape(word) + r"(?!\w)"
        spans += [match.span() for match in re.finditer(pattern, text, flags=re.IGNORECASE)]
    return sorted(spans)


def insert_word(text: str, word: str, rng: random.Random) -> str:
    words = text.split()
    words.insert(rng.randrange(len(words) + 1), word)
    return " ".join(words)


def encode_pair(tokenizer, prompt: str, answer: str, offsets: bool = False):
    """Prompt ids and answer ids as ``relevancy.generation.explain_answer`` tokenises them (the prompt
    with the tokenizer's special tokens, the answer without), plus the prompt's character offsets."""
    encoded = tokenizer(prompt, return_offsets_mapping=offsets)
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise ValueError(f"the answer {answer!r} has no tokens: every example needs a non-empty answer")
    return encoded["input_ids"], answer_ids, (encoded["offset_mapping"] if offsets else None)


def reference_answer(text: str) -> str:
    """A free-form answer as read from a data column (stripped) follows the prompt after one space."""
    return " " + text.strip()


def causal_examples(dataset, answers: list[str] | None = None, label_map=None) -> list[dict]:
    """``{"text", "answer"}`` per example of a ``TextDataset``: with ``answers`` (one per label, the LLM as a
    classifier) the answer of the example's label; without, the label column holds the reference answer
    (``reference_answer``: after one space)."""
    from ..audit.data import encode_labels

    if answers is None:
        empty = [e.id for e in dataset.examples if not isinstance(e.label, str) or not e.label.strip()]
        if empty:
            raise ValueError(f"documents {', '.join(empty[:5])} have no reference answer (an empty or non-text answer column)")
        return [{"text": e.text, "answer": reference_answer(e.label)} for e in dataset.examples]
    labels = encode_labels(dataset, {i: a.strip() for i, a in enumerate(answers)}, label_map)
    return [{"text": e.text, "answer": answers[label]} for e, label in zip(dataset.examples, labels)]


class CausalCollator:
    """Example dicts ``{"text", "answer"}`` -> a batch: ``input_ids``/``attention_mask`` (right padded),
    ``answer_mask`` (the answer's positions), and with ``penalised_words`` the penalty rows:
    ``penalty_input_ids``/``penalty_attention_mask``/``penalty_answer_mask`` and ``penalty_mask``
    (the word's tokens). Penalty rows are the prompts with a penalised word and, with ``insert``, the
    others with the first word inserted (from a generator seeded by ``seed``)."""

    def __init__(self, tokenizer, template: str, penalised_words: Iterable[str] = (), insert: bool = False,
                 max_length: int | None = None, seed: int = 0) -> None:
        check_template(template)
        self.tokenizer = tokenizer
        self.template = template
        self.words = [w.strip() for w in penalised_words if w and w.strip()]
        if insert and not self.words:
            raise ValueError("insert needs a penalised word (the word to insert)")
        if self.words and not getattr(tokenizer, "is_fast", False):
            raise ValueError("penalising words needs a fast tokenizer (its character offsets place the words on tokens)")
        self.insert = insert
        self.max_length = max_length
        self.rng = random.Random(seed)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    def __call__(self, examples: list[dict]) -> dict:
        rows, penalty_rows = [], []
        for example in examples:
            rows.append(self._row(example["text"], example["answer"], mark=False))
            if self.words:
                text = example["text"]
                if not word_spans(text, self.words):
                    if not self.insert:
                        continue
                    text = insert_word(text, self.words[0], self.rng)
                penalty_rows.append(self._row(text, example["answer"], mark=True))
        batch = self._stack(rows, "")
        if penalty_rows:
            batch.update(self._stack(penalty_rows, "penalty_"))
        return batch

    def _row(self, text: str, answer: str, mark: bool):
        prompt, (start, end) = render(self.template, text)
        prompt_ids, answer_ids, offsets = encode_pair(self.tokenizer, prompt, answer, offsets=mark)
        if self.max_length is not None and len(prompt_ids) + len(answer_ids) > self.max_length:
            keep = max(self.max_length - len(answer_ids), 1)  # the answer is kept whole: it is what is learnt
            prompt_ids, offsets = prompt_ids[:keep], offsets[:keep] if offsets else offsets
        marked = [False] * len(prompt_ids)
        if mark:
            spans = [(start + a, start + b) for a, b in word_spans(prompt[start:end], self.words)]
            marked = [any(o[0] < b and o[1] > a for a, b in spans) for o in offsets]
        return prompt_ids + answer_ids, len(prompt_ids), marked + [False] * len(answer_ids)

    def _stack(self, rows, prefix: str) -> dict:
        width = max(len(ids) for ids, _, _ in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        answer = torch.zeros((len(rows), width), dtype=torch.bool)
        marked = torch.zeros((len(rows), width), dtype=torch.bool)
        for row, (sequence, prompt_length, mark) in enumerate(rows):
            ids[row, : len(sequence)] = torch.tensor(sequence)
            attention[row, : len(sequence)] = 1
            answer[row, prompt_length : len(sequence)] = True
            marked[row, : len(sequence)] = torch.tensor(mark)
        batch = {f"{prefix}input_ids": ids, f"{prefix}attention_mask": attention, f"{prefix}answer_mask": answer}
        if prefix:
            batch["penalty_mask"] = marked
        return batch


def answer_log_likelihood(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, answer_mask: torch.Tensor):
    """Per row: the sum of the answer tokens' log-probabilities and their count. Logits are computed
    only at the positions that predict an answer token (the vocabulary projection is costly)."""
    predicting = torch.zeros_like(answer_mask)
    predicting[:, :-1] = answer_mask[:, 1:]  # position p predicts the token at p + 1
    positions = predicting.any(0).nonzero().flatten()
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=positions).logits
    if logits.shape[1] != len(positions):
        raise ValueError(f"{type(model).__name__} ignores logits_to_keep: give a transformers causal LM")
    log_probs = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)  # half -> float
    targets = input_ids[:, positions + 1]
    picked = log_probs.gather(-1, targets[..., None])[..., 0]
    weights = predicting[:, positions].to(picked.dtype)
    return (picked * weights).sum(-1), weights.sum(-1)


@dataclass
class CausalLossOutput:
    loss: torch.Tensor
    classification: torch.Tensor  # the answer's negative log-likelihood per token (named as RelevanceLoss's parts)
    penalty: torch.Tensor  # mean squared change of the answer's log-likelihood when the penalised words are deleted
    effects: torch.Tensor | None = None  # per penalty row: log-likelihood with the words minus without

    def parts(self) -> dict[str, float]:
        return {name: float(getattr(self, name).detach()) for name in ("loss", "classification", "penalty")}


class CausalRelevanceLoss(nn.Module):
    """``loss = nll_weight * NLL(answer | prompt) + penalty_weight * mean_rows (LL(answer | prompt)
    - LL(answer | prompt without the penalised words))^2`` (LL: summed log-likelihood of the answer).
    The penalty's forwards run in eval mode (no dropout), so the two differ only by the deleted tokens."""

    def __init__(self, *, nll_weight: float = 1.0, penalty_weight: float = 1.0) -> None:
        super().__init__()
        if nll_weight < 0 or penalty_weight < 0:
            raise ValueError("nll_weight and penalty_weight must be >= 0")
        self.nll_weight = nll_weight
        self.penalty_weight = penalty_weight

    def forward(self, model: nn.Module, batch: dict, relevance_scale: float = 1.0) -> CausalLossOutput:
        total, count = answer_log_likelihood(model, batch["input_ids"], batch["attention_mask"], batch["answer_mask"])
        nll = -(total / count.clamp_min(1)).mean()
        penalty, effects = nll.new_zeros(()), None
        if self.penalty_weight > 0 and "penalty_input_ids" in batch:
            effects = self.deletion_effects(model, batch)
            penalty = (effects**2).mean()
        loss = self.nll_weight * nll + self.penalty_weight * relevance_scale * penalty
        return CausalLossOutput(loss, nll, penalty, effects)

    @staticmethod
    def deletion_effects(model: nn.Module, batch: dict) -> torch.Tensor:
        """Per penalty row: the answer's log-likelihood with the marked tokens minus without them."""
        from ..adapters.outputs import evaluating

        ids, attention = batch["penalty_input_ids"], batch["penalty_attention_mask"]
        answer, mark = batch["penalty_answer_mask"], batch["penalty_mask"]
        deleted = _delete({"input_ids": ids, "attention_mask": attention, "answer_mask": answer.long()}, mark)
        rows = ids.shape[0]
        with evaluating(model):  # one forward for both versions
            both, _ = answer_log_likelihood(
                model, torch.cat([ids, deleted["input_ids"]]), torch.cat([attention, deleted["attention_mask"]]),
                torch.cat([answer, deleted["answer_mask"].bool()]),
            )
        return both[:rows] - both[rows:]


@dataclass
class LoraSettings:
    """LoRA adapters (``peft``) on the attention and MLP projections; merged into the weights after training."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | str = "all-linear"
    extra: dict = field(default_factory=dict)  # more LoraConfig options


def fine_tune_causal(
    model: nn.Module, tokenizer, examples: list[dict], loss: CausalRelevanceLoss, *, template: str,
    penalised_words: Iterable[str] = (), insert: bool = False, lora: LoraSettings | None = None,
    max_length: int | None = None, seed: int = 0, **options,
) -> FineTuneResult:
    """Fine-tune a copy of ``model`` on ``examples`` (``{"text", "answer"}``) with ``loss``; ``options``
    go to ``relevancy.finetune.fine_tune`` (steps, batch_size, learning_rate, on_step, ...). With
    ``lora`` only LoRA adapters train (``pip install relevancy[lora]``); they are merged into the
    copy's weights at the end, so the result is a plain transformers model."""
    if not examples:
        raise ValueError("no training examples: the data set is empty")
    missing = [key for key in ("text", "answer") if key not in examples[0]]
    if missing:
        raise ValueError(f"causal training examples need 'text' and 'answer'; missing {', '.join(missing)}")
    collator = CausalCollator(tokenizer, template, penalised_words, insert=insert, max_length=max_length, seed=seed)
    words = collator.words
    if words and not insert and not any(word_spans(e["text"], words) for e in examples):
        raise ValueError(
            f"none of the training texts contains the penalised words ({', '.join(words)}): nothing to penalise; "
            "check the words, or insert them (insert=True, CLI: --insert-penalised)"
        )
    trained = copy.deepcopy(model)
    if lora is not None:
        trained = _with_lora(trained, lora)
    result = fine_tune(trained, tokenizer, examples, loss, seed=seed, in_place=True, collator=collator, **options)
    if lora is not None:
        result.model = result.model.merge_and_unload().eval()
    _drop_gguf_marker(result.model)
    return result


def _drop_gguf_marker(model: nn.Module) -> None:
    """A model read from a GGUF file holds dequantized float weights but keeps transformers' GGUF
    quantizer, which refuses ``save_pretrained``; the trained copy is plain, so it loses the marker."""
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)).lower() == "gguf":
        model.hf_quantizer = None
        for attribute in ("is_quantized", "quantization_method"):
            if attribute in vars(model):
                delattr(model, attribute)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config


def _with_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("LoRA needs the peft package: pip install 'relevancy[lora]' (or --no-deps peft)") from error
    config = LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, task_type="CAUSAL_LM",
        target_modules=list(settings.target_modules) if not isinstance(settings.target_modules, str) else settings.target_modules,
        **settings.extra,
    )
    return get_peft_model(model, config)


__all__ = [
    "CausalCollator", "CausalLossOutput", "causal_examples", "CausalRelevanceLoss", "LoraSettings", "answer_log_likelihood", "check_template",
    "encode_pair", "fine_tune_causal", "reference_answer", "render", "word_spans",
]

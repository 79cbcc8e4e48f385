"""Decoder LLMs: explain the next token, or every token of a generated answer (a T x n matrix).

The answer is generated once; then one forward of prompt + answer is shared by the T targets
(``attribute_targets``), each target being the logit of answer token t at the position before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .engine import attribute_targets
from .targets import TokenAt


@dataclass
class AnswerExplanation:
    """``matrix[t]``: relevance of every position (prompt and earlier answer tokens) for answer token t."""

    tokens: list[str]
    prompt_length: int
    answer_ids: list[int]
    matrix: np.ndarray  # (T, prompt_length + T)
    method: str
    signed: bool

    @property
    def answer_tokens(self) -> list[str]:
        return self.tokens[self.prompt_length :]

    def normalised(self, drop_sink: bool = False) -> np.ndarray:
        """Rows scaled by their largest |score|; ``drop_sink`` leaves the first (beginning-of-sequence)
        position out of that scale and sets it to 0, since attention sinks dominate it."""
        matrix = self.matrix.copy()
        if drop_sink:
            matrix[:, 0] = 0.0
        scale = np.abs(matrix).max(axis=1, keepdims=True)
        return np.divide(matrix, scale, out=np.zeros_like(matrix), where=scale > 0)

    def summed(self, drop_sink: bool = False) -> np.ndarray:
        """The whole answer's map over the prompt: the sum of the normalised rows."""
        return self.normalised(drop_sink)[:, : self.prompt_length].sum(0)

    def top_prompt_tokens(self, k: int = 5, drop_sink: bool = True) -> list[tuple[str, float]]:
        scores = self.summed(drop_sink)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.tokens[i], float(scores[i])) for i in order]


@torch.no_grad()
def generate(model, tokenizer, prompt: str, max_new_tokens: int) -> tuple[list[int], list[int]]:
    """Greedy answer token ids for ``prompt`` (prompt ids, answer ids)."""
    if not prompt.strip():
        raise ValueError("empty prompt: there is nothing to explain")
    encoded = tokenizer(prompt, return_tensors="pt")
    output = model.generate(
        **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id
    )
    prompt_ids = encoded["input_ids"][0].tolist()
    return prompt_ids, output[0, len(prompt_ids) :].tolist()


def explain_answer(model, tokenizer, prompt: str, *, answer: str | None = None, max_new_tokens: int = 16,
                   method="transformer_attribution") -> AnswerExplanation:
    """Generate (or take) an answer and explain each of its tokens from one shared forward."""
    if answer is None:
        prompt_ids, answer_ids = generate(model, tokenizer, prompt, max_new_tokens)
    else:
        prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise ValueError("the answer is empty: nothing was generated to explain")
    ids = torch.tensor([prompt_ids + answer_ids])
    n = len(prompt_ids)
    targets = [TokenAt(token, n + t - 1) for t, token in enumerate(answer_ids)]
    results = attribute_targets(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, method, targets)
    matrix = torch.stack([r.scores[0] for r in results]).float().numpy()
    return AnswerExplanation(
        tokens=tokenizer.convert_ids_to_tokens(ids[0].tolist()),
        prompt_length=n,
        answer_ids=answer_ids,
        matrix=matrix,
        method=results[0].method,
        signed=results[0].signed,
    )

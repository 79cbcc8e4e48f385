"""The coverage test's one table: what each zoo family does under each method (issue 11).

``OK``: the method explains the model's own logits, the model comes back exactly as it was, the
scores are finite, and full LRP keeps the relevance total across block boundaries.
``refused(error class, substring)``: a single clear refusal from relevancy (its own error class,
or a ValueError/TypeError raised by relevancy's code) whose message contains ``substring``.
``xfail(what happens now)``: a silently wrong result (WRONG-LOGITS), a raw internal error, or a
failed check; the test runs strict, so when a fix makes it right (or a clear refusal) the test
fails until this table says so. ``python3 -m tests.coverage.probe --suggest-expected`` prints
the table for the current code.

A family maps to one expectation, or to ``{"*": default, method: expectation, ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = "ok"


@dataclass(frozen=True)
class Refused:
    error: str  # the exception's class name (or one of its bases')
    substring: str  # a piece of the message that says what is unsupported


@dataclass(frozen=True)
class XFail:
    now: str  # what the current code does instead


def refused(error: str, substring: str) -> Refused:
    return Refused(error, substring)


def xfail(now: str) -> XFail:
    return XFail(now)


EXPECTED = {
    'bert': OK,
    'distilbert': OK,
    'roberta': OK,
    'xlm-roberta': OK,
    'camembert': OK,
    'data2vec-text': OK,
    'ernie': OK,
    'megatron-bert': {
        "*": xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': xfail('WRONG-LOGITS'),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': xfail('WRONG-LOGITS'),
    },
    'layoutlm': OK,
    'electra': OK,
    'albert': {
        "*": OK,
        'transformer_attribution': xfail('error: RuntimeError: attention was observed in layers [1] but the model has 1 blocks: its attention '),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [1] but the model has 1 blocks: its attention '),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'lrp_rollout': xfail('error: RuntimeError: attention was observed in layers [1] but the model has 1 blocks: its attention '),
        'partial_lrp': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
    },
    'convbert': {
        "*": refused('UnsupportedOperationError', 'through `conv1d`'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': OK,
    },
    'squeezebert': {
        "*": refused('UnsupportedOperationError', 'through `conv1d`'),
        'gradient_x_attention': xfail("error: RuntimeError: the model's blocks were not reached with the explained input (boundary 0)"),
        'input_x_gradient': xfail("error: RuntimeError: the model's blocks were not reached with the explained input (boundary 0)"),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the model's blocks were not reached with the explained input (boundary 1)"),
        'integrated_gradients': xfail("error: RuntimeError: the model's blocks were not reached with the explained input (boundary 0)"),
    },
    'mobilebert': OK,
    'roformer': {
        "*": xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'full_lrp': xfail('relevance not conserved across block boundaries (0.0027)'),
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'partial_lrp': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': OK,
    },
    'mpnet': {
        "*": xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': xfail('WRONG-LOGITS'),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': xfail('WRONG-LOGITS'),
    },
    'nystromformer': {
        "*": xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': xfail('WRONG-LOGITS'),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': xfail('WRONG-LOGITS'),
    },
    'fnet': {
        "*": xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': xfail('WRONG-LOGITS'),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': xfail('WRONG-LOGITS'),
    },
    'deberta': {
        "*": refused('UnsupportedOperationError', 'through `matmul`'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': OK,
    },
    'deberta-v2': {
        "*": refused('UnsupportedOperationError', 'through `zeros_like`'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': OK,
    },
    'longformer': {
        "*": xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': xfail('WRONG-LOGITS'),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': xfail('WRONG-LOGITS'),
    },
    'big_bird': {
        "*": refused('UnsupportedOperationError', 'through `unsqueeze_`'),
        'transformer_attribution': xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'full_lrp': xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'lrp_rollout': xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'partial_lrp': xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
    },
    'funnel': {
        "*": xfail("error: TypeError: unsupported operand type(s) for -: 'int' and 'Tensor'"),
        'transformer_attribution': refused('UnsupportedOperationError', 'through `new_ones`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `new_ones`'),
        'lrp_rollout': refused('UnsupportedOperationError', 'through `new_ones`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `new_ones`'),
    },
    'xlnet': {
        "*": refused('UnsupportedOperationError', 'through `detach`'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': xfail('error: RuntimeError: The size of tensor a (2) must match the size of tensor b (8) at non-singleton d'),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': xfail('error: RuntimeError: The size of tensor a (2) must match the size of tensor b (8) at non-singleton d'),
    },
    'vit': OK,
    'deit': {
        "*": OK,
        'full_lrp': xfail('relevance not conserved across block boundaries (0.49)'),
    },
    'beit': OK,
    'data2vec-vision': OK,
    'dinov2': OK,
    'dinov2-with-registers': OK,
    'swin': {
        "*": refused('UnsupportedOperationError', 'through `adaptive_avg_pool1d`'),
        'gradient_x_attention': xfail('error: RuntimeError: The size of tensor a (2) must match the size of tensor b (8) at non-singleton d'),
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: The size of tensor a (2) must match the size of tensor b (8) at non-singleton d'),
        'raw_attention': OK,
        'attention_gradcam': OK,
        'integrated_gradients': OK,
    },
    'swinv2': {
        "*": refused('UnsupportedOperationError', 'through `normalize`'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': OK,
    },
    'levit': {
        "*": refused('UnsupportedOperationError', 'through `batch_norm`'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 3 blocks: its attention d'),
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': OK,
    },
    'mobilevit': {
        "*": refused('UnsupportedOperationError', 'through `batch_norm`'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 4 blocks: its attention d'),
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': OK,
    },
    'convnext': {
        "*": xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'transformer_attribution': xfail('error: RuntimeError: attention was observed in layers [] but the model has 4 blocks: its attention d'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 4 blocks: its attention d'),
        'full_lrp': OK,
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'lrp_rollout': xfail('error: RuntimeError: attention was observed in layers [] but the model has 4 blocks: its attention d'),
        'integrated_gradients': OK,
    },
    'pvt': {
        "*": xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'full_lrp': xfail('relevance not conserved across block boundaries (1)'),
        'input_x_gradient': OK,
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'partial_lrp': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': OK,
    },
    'siglip': {
        "*": OK,
        'transformer_attribution': refused('UnsupportedOperationError', 'through `conv2d`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `conv2d`'),
        'lrp_rollout': refused('UnsupportedOperationError', 'through `conv2d`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `conv2d`'),
    },
    'llama': OK,
    'mistral': OK,
    'qwen2': OK,
    'qwen3': OK,
    'gemma': OK,
    'gemma2': xfail('error: ValueError: `sdpa` attention does not support `softcap`. Try using `eager`, `flex_attention`,'),
    'gemma3': OK,
    'phi': OK,
    'phi3': OK,
    'stablelm': OK,
    'olmo': OK,
    'starcoder2': OK,
    'cohere': OK,
    'granite': OK,
    'smollm3': OK,
    'mixtral': {
        "*": xfail('WRONG-LOGITS'),
        'transformer_attribution': refused('UnsupportedOperationError', 'through `topk`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `topk`'),
        'lrp_rollout': refused('UnsupportedOperationError', 'through `topk`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `topk`'),
    },
    'qwen2_moe': {
        "*": OK,
        'transformer_attribution': refused('UnsupportedOperationError', 'through `topk`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `topk`'),
        'lrp_rollout': refused('UnsupportedOperationError', 'through `topk`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `topk`'),
    },
    'falcon': {
        "*": xfail('WRONG-LOGITS'),
        'transformer_attribution': xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'full_lrp': xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'lrp_rollout': xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
        'partial_lrp': xfail('error: RuntimeError: Output 0 of _RuleNode is a view and is being modified inplace. This view was cr'),
    },
    'bloom': {
        "*": refused('UnsupportedOperationError', 'through `baddbmm`'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'input_x_gradient': xfail('WRONG-LOGITS'),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'integrated_gradients': xfail('WRONG-LOGITS'),
    },
    'gpt2': OK,
    'gpt_neo': {
        "*": xfail('WRONG-LOGITS'),
        'transformer_attribution': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'gradient_x_attention': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'rollout': xfail('error: RuntimeError: attention was not observed in every block (no scaled_dot_product_attention call'),
        'raw_attention': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'lrp_rollout': xfail('error: RuntimeError: attention was observed in layers [] but the model has 2 blocks: its attention d'),
        'partial_lrp': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
        'attention_gradcam': xfail("error: RuntimeError: the last block's attention was not observed (no scaled_dot_product_attention ca"),
    },
    'gpt_neox': OK,
    'gptj': OK,
    'opt': OK,
    't5': xfail("error: RuntimeError: the model's logits do not depend on its input: nothing to explain"),
    'bart': xfail("error: RuntimeError: the model's logits do not depend on its input: nothing to explain"),
    'clip': xfail('error: NotImplementedError: `get_input_embeddings` not auto‑handled for CLIPModel; please override i'),
}


def expectation(family: str, method: str):
    entry = EXPECTED[family]
    return entry.get(method, entry["*"]) if isinstance(entry, dict) else entry

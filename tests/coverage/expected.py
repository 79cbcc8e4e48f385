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
    'megatron-bert': OK,
    'layoutlm': OK,
    'electra': OK,
    'albert': refused('UnsupportedModelError', 'albert (AlbertForSequenceClassification): block module 0'),
    'convbert': OK,
    'squeezebert': refused('UnsupportedModelError', 'squeezebert (SqueezeBertForSequenceClassification): the'),
    'mobilebert': OK,
    'roformer': OK,
    'mpnet': OK,
    'nystromformer': {
        "*": OK,
        'transformer_attribution': refused('UnsupportedOperationError', 'through `pow`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `pow`'),
        'lrp_rollout': refused('UnsupportedOperationError', 'through `pow`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `pow`'),
        'attnlrp': refused('UnsupportedOperationError', 'through `pow`'),
        'cp_lrp': refused('UnsupportedOperationError', 'through `pow`'),
    },
    'fnet': {
        "*": refused('UnsupportedModelError', 'fnet (FNetForSequenceClassification): no attention map was'),
        'full_lrp': xfail('relevance not conserved across block boundaries (0.98)'),
        'input_x_gradient': OK,
        'integrated_gradients': OK,
        'attnlrp': OK,
        'cp_lrp': OK,
    },
    'deberta': {
        "*": OK,
        'transformer_attribution': refused('UnsupportedOperationError', 'through `matmul`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `matmul`'),
        'lrp_rollout': refused('UnsupportedOperationError', 'through `matmul`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `matmul`'),
        'attnlrp': refused('UnsupportedOperationError', 'through `pow`'),
        'cp_lrp': refused('UnsupportedOperationError', 'through `pow`'),
    },
    'deberta-v2': {
        "*": OK,
        'transformer_attribution': refused('UnsupportedOperationError', 'through `bmm`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `bmm`'),
        'lrp_rollout': refused('UnsupportedOperationError', 'through `bmm`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `bmm`'),
    },
    'longformer': {
        "*": refused('UnsupportedModelError', 'longformer (LongformerForSequenceClassification): attention'),
        'transformer_attribution': refused('UnsupportedOperationError', 'through `einsum`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `einsum`'),
        'input_x_gradient': OK,
        'lrp_rollout': refused('UnsupportedOperationError', 'through `einsum`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `einsum`'),
        'integrated_gradients': OK,
        'attnlrp': OK,
        'cp_lrp': OK,
    },
    'big_bird': refused('UnsupportedOperationError', 'through `unsqueeze_`'),
    'funnel': {
        "*": refused('UnsupportedModelError', 'funnel (FunnelForSequenceClassification): no attention map'),
        'transformer_attribution': refused('UnsupportedOperationError', 'through `einsum`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `einsum`'),
        'input_x_gradient': refused('UnsupportedModelError', 'funnel (FunnelForSequenceClassification): the explained'),
        'lrp_rollout': refused('UnsupportedOperationError', 'through `einsum`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `einsum`'),
        'integrated_gradients': refused('UnsupportedModelError', 'funnel (FunnelForSequenceClassification): the explained'),
        'attnlrp': refused('UnsupportedOperationError', 'through `max_pool2d`'),
        'cp_lrp': refused('UnsupportedOperationError', 'through `max_pool2d`'),
    },
    'xlnet': refused('UnsupportedModelError', 'xlnet (XLNetForSequenceClassification): its input'),
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
        "*": refused('UnsupportedModelError', 'swin (SwinForImageClassification): attention layer 0 has'),
        'full_lrp': OK,
        'input_x_gradient': OK,
        'integrated_gradients': OK,
        'attnlrp': OK,
        'cp_lrp': OK,
    },
    'swinv2': {
        "*": OK,
        'full_lrp': xfail('relevance not conserved across block boundaries (0.26)'),
    },
    'levit': {
        "*": refused('UnsupportedModelError', 'levit (LevitForImageClassification): attention layer 1 has'),
        'full_lrp': xfail('relevance not conserved across block boundaries (0.95)'),
        'input_x_gradient': OK,
        'integrated_gradients': OK,
        'attnlrp': OK,
        'cp_lrp': OK,
    },
    'mobilevit': refused('UnsupportedModelError', 'mobilevit (MobileViTForImageClassification): block 0'),
    'convnext': {
        "*": refused('UnsupportedModelError', 'convnext (ConvNextForImageClassification): no attention map'),
        'full_lrp': OK,
        'input_x_gradient': OK,
        'integrated_gradients': OK,
        'attnlrp': OK,
        'cp_lrp': OK,
    },
    'pvt': {
        "*": refused('UnsupportedModelError', 'pvt (PvtForImageClassification): attention layer 0 has maps'),
        'full_lrp': xfail('relevance not conserved across block boundaries (1)'),
        'input_x_gradient': OK,
        'integrated_gradients': OK,
        'attnlrp': OK,
        'cp_lrp': OK,
    },
    'siglip': {
        "*": OK,
        'transformer_attribution': refused('UnsupportedOperationError', 'through `multi_head_attention_forward`'),
        'full_lrp': refused('UnsupportedOperationError', 'through `multi_head_attention_forward`'),
        'lrp_rollout': refused('UnsupportedOperationError', 'through `multi_head_attention_forward`'),
        'partial_lrp': refused('UnsupportedOperationError', 'through `multi_head_attention_forward`'),
        'attnlrp': refused('UnsupportedOperationError', 'through `multi_head_attention_forward`'),
        'cp_lrp': refused('UnsupportedOperationError', 'through `multi_head_attention_forward`'),
    },
    'llama': OK,
    'mistral': OK,
    'qwen2': OK,
    'qwen3': OK,
    'gemma': OK,
    'gemma2': OK,
    'gemma3': OK,
    'phi': OK,
    'phi3': OK,
    'stablelm': OK,
    'olmo': OK,
    'starcoder2': OK,
    'cohere': {
        "*": OK,
        'attnlrp': refused('UnsupportedOperationError', 'through `pow`'),
        'cp_lrp': refused('UnsupportedOperationError', 'through `pow`'),
    },
    'granite': OK,
    'smollm3': OK,
    'mixtral': OK,
    'qwen2_moe': OK,
    'falcon': OK,
    'bloom': {
        "*": OK,
        'full_lrp': xfail('relevance not conserved across block boundaries (0.0012)'),
    },
    'gpt2': OK,
    'gpt_neo': OK,
    'gpt_neox': OK,
    'gptj': OK,
    'opt': OK,
    't5': refused('UnsupportedModelError', 't5 (T5ForConditionalGeneration): encoder-decoder and'),
    'bart': refused('UnsupportedModelError', 'bart (BartForConditionalGeneration): encoder-decoder and'),
    'clip': refused('UnsupportedModelError', 'clip (CLIPModel): encoder-decoder and two-tower'),
}


def expectation(family: str, method: str):
    entry = EXPECTED[family]
    return entry.get(method, entry["*"]) if isinstance(entry, dict) else entry

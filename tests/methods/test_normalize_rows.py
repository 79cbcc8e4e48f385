"""transformer_attribution(normalize_rows=True) against the authors' BERT formula written out
densely (BERT_explainability/modules/BERT/ExplanationGenerator.py, generate_LRP and
compute_rollout_attention): per block cam = mean_heads((grad A * R_A)+), I + cam with each row
divided by its sum, multiplied from ``start_layer`` up, [CLS] row, its [CLS] entry set to the row's
minimum. grad A comes from a plain eager forward of the model; R_A, the relevance reaching the
attention probabilities, from the engine's relevance pass (whose rules the dense ViT test checks)."""

from __future__ import annotations

import pytest
import torch

import relevancy
from relevancy.adapters.structure import describe
from relevancy.engine import Run
from relevancy.methods import get_method
from relevancy.rules.attention import AttentionObserver
from relevancy.rules.base import Pass
from relevancy.targets import ClassIndex
from relevancy.tracing import RelevanceScope
from tests.models import build, inputs_for


class _DenseRelevance(AttentionObserver):
    """Each layer's whole R_A (B, H, N, N), put together from the chunks of query rows."""

    def __init__(self) -> None:
        self.maps: dict[int, torch.Tensor] = {}

    def on_relevance(self, call, probabilities, relevance):
        part = call.widen(relevance.detach())
        previous = self.maps.get(call.layer)
        self.maps[call.layer] = part if previous is None else torch.cat([previous, part], dim=-2)


def _attention_relevance(model, inputs, target):
    observer = _DenseRelevance()
    with RelevanceScope(model) as scope:
        run = Run(model, describe(model), inputs, ClassIndex(target), scope)
        scope.observers.append(observer)
        run.forward()
        run.backward(Pass.GRADIENT)
        run.backward(Pass.RELEVANCE)
    return [observer.maps[layer] for layer in range(len(observer.maps))]


def _attention_gradients(model, inputs, target):
    """d logit / d A of every layer from the model's own eager attention (no relevancy code)."""
    model.set_attn_implementation("eager")
    try:
        output = model(**inputs, output_attentions=True)
        for attention in output.attentions:
            attention.retain_grad()
        output.logits[0, target].backward()
        return [attention.grad for attention in output.attentions]
    finally:
        model.set_attn_implementation("sdpa")
        model.zero_grad(set_to_none=True)


def _authors_rollout(gradients, relevances, start_layer):
    cams = [(gradient * relevance).clamp(min=0).mean(1) for gradient, relevance in zip(gradients, relevances)]
    eye = torch.eye(cams[0].shape[-1], dtype=cams[0].dtype)
    augmented = [(cam + eye) / (cam + eye).sum(-1, keepdim=True) for cam in cams]
    joint = augmented[start_layer]
    for layer in range(start_layer + 1, len(augmented)):
        joint = augmented[layer] @ joint
    row = joint[:, 0].clone()
    row[:, 0] = row.min()
    return row


@pytest.mark.parametrize("seed, target", [(0, 0), (1, 2)])
@pytest.mark.parametrize("start_layer", [0, 2])  # 2: the last block only, as the authors' ERASER run
def test_normalize_rows_equals_the_authors_bert_formula(seed, target, start_layer):
    model = build("bert", seed=seed, dtype=torch.float64)
    inputs = inputs_for(model, seed=seed, batch=1, length=9)  # one unpadded sentence, as theirs
    relevances = _attention_relevance(model, inputs, target)
    gradients = _attention_gradients(model, inputs, target)
    expected = _authors_rollout(gradients, relevances, start_layer)
    method = get_method("transformer_attribution", normalize_rows=True, start_layer=start_layer)
    ours = relevancy.attribute(model, inputs, method, target=target).scores
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-12)
    plain = relevancy.attribute(model, inputs, get_method("transformer_attribution", start_layer=start_layer), target=target)
    assert not torch.allclose(plain.scores, ours)  # the option changes the values


def test_normalize_rows_batch_equals_one_at_a_time():
    model = build("bert", dtype=torch.float64)
    inputs = inputs_for(model, batch=2)  # the second sample is padded
    method = get_method("transformer_attribution", normalize_rows=True)
    batched = relevancy.attribute(model, inputs, method, target=1).scores
    single = relevancy.attribute(model, {k: v[1:, :5] for k, v in inputs.items()}, method, target=1).scores
    torch.testing.assert_close(batched[1, :5], single[0], rtol=1e-9, atol=1e-12)
    assert (batched[1, 5:] == 0).all()

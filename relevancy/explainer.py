"""Explain raw inputs (strings, images) with a model and its tokenizer or image processor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .adapters.structure import describe
from .engine import Attribution, attribute
from .explanation import Explanation
from .methods import DEFAULT_METHOD, get_method


class Explainer:
    """``Explainer(model, tokenizer)`` or ``Explainer(model, image_processor)``; call it on inputs.

    >>> explainer = Explainer.from_pretrained("default")
    >>> explainer("a gorgeous, moving film", target="positive").words()
    """

    def __init__(
        self, model: nn.Module, processor=None, *, method: str = DEFAULT_METHOD, batch_size: int = 16,
        checkpoint: bool = False,
    ):
        self.model = model
        self.checkpoint = checkpoint  # recompute blocks per backward pass (long inputs; see relevancy.attribute)
        self.processor = processor
        self.structure = describe(model)
        self.method = method
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, name_or_path: str = "default", *, allow_random_head: bool = False, **kwargs) -> "Explainer":
        """A hub name or local folder; "default" (text) or "default-image" for the embedded models.
        A checkpoint without its classification head is refused unless ``allow_random_head=True``."""
        from .adapters.loading import load

        model, processor = load(name_or_path, allow_random_head=allow_random_head)
        return cls(model, processor, **kwargs)

    def __call__(self, inputs, target=None, method=None, **method_options):
        """One Explanation for one input, a list for a list. Batches internally."""
        single = isinstance(inputs, (str, Path, np.ndarray)) or _is_pil(inputs) or (
            isinstance(inputs, torch.Tensor) and inputs.dim() == 3
        )
        items = [inputs] if single else list(inputs)
        if not items:
            raise ValueError("nothing to explain: the list of inputs is empty")
        resolved = get_method(method or self.method, **method_options)
        explanations = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            explanations.extend(self._explain_batch(chunk, target, resolved))
        return explanations[0] if single else explanations

    explain = __call__

    # -- batches ----------------------------------------------------------------------------------
    def _explain_batch(self, items, target, method) -> list[Explanation]:
        if self.structure.modality == "text":
            texts = [str(item) for item in items]
            inputs, encodings = self._tokenize(texts)
            attribution = attribute(self.model, inputs, method, target, structure=self.structure, checkpoint=self.checkpoint)
            return [self._text_explanation(attribution, i, inputs, encodings, texts[i]) for i in range(len(texts))]
        images = [self._load_image(item) for item in items]
        inputs, shown = self._preprocess_images(images)
        attribution = attribute(self.model, inputs, method, target, structure=self.structure, checkpoint=self.checkpoint)
        return [self._image_explanation(attribution, i, shown[i]) for i in range(len(images))]

    def _common(self, attribution: Attribution, index: int) -> dict:
        logits = attribution.logits[index].float()
        probabilities = torch.softmax(logits, -1).numpy()
        predicted = int(logits.argmax())
        labels = self.structure.labels
        target_class = None if attribution.target_classes is None else int(attribution.target_classes[index])
        return dict(
            method=attribution.method,
            signed=attribution.signed,
            target=attribution.extras["target"],
            target_class=target_class,
            predicted_class=predicted,
            predicted_label=labels.get(predicted, str(predicted)),
            probabilities=probabilities,
            labels=labels,
        )

    # -- text ------------------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]):
        if self.processor is None:
            raise ValueError("explaining text needs the model's tokenizer: Explainer(model, tokenizer)")
        for text in texts:
            if not text.strip():
                raise ValueError("empty text: there is nothing to explain")
        limit = getattr(self.processor, "model_max_length", None)
        positions = getattr(self.model.config, "max_position_embeddings", None)
        encodings = self.processor(texts, padding=True, return_tensors="pt", return_offsets_mapping=_is_fast(self.processor))
        length = encodings["input_ids"].shape[1]
        maximum = min(x for x in (limit, positions) if x) if (limit or positions) else None
        if maximum and length > maximum:
            raise ValueError(
                f"the text is {length} tokens long but the model reads at most {maximum}; "
                "split it into parts (nothing is truncated silently)"
            )
        inputs = {k: v for k, v in encodings.items() if k != "offset_mapping"}
        return inputs, encodings

    def _text_explanation(self, attribution, index, inputs, encodings, text) -> Explanation:
        mask = inputs["attention_mask"][index].bool()
        ids = inputs["input_ids"][index][mask].tolist()
        tokens = self.processor.convert_ids_to_tokens(ids)
        special_ids = set(self.processor.all_special_ids)
        offsets = word_ids = None
        if "offset_mapping" in encodings:
            offsets = [tuple(map(int, pair)) for pair in encodings["offset_mapping"][index][mask].tolist()]
            word_ids = [w for w, keep in zip(encodings.word_ids(index), mask.tolist()) if keep]
        return Explanation(
            modality="text",
            scores=attribution.scores[index][mask].float().numpy(),
            tokens=tokens,
            special=[i in special_ids for i in ids],
            word_ids=word_ids,
            text=text,
            offsets=offsets,
            **self._common(attribution, index),
        )

    # -- images ----------------------------------------------------------------------------------
    def _load_image(self, item):
        from PIL import Image

        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.exists():
                raise FileNotFoundError(f"no image at {path}")
            return Image.open(path)
        return item

    def _preprocess_images(self, images):
        """Model inputs, and each image as shown (H, W, 3 in [0,1]) at the model's resolution."""
        from PIL import Image

        size = self.structure.image_size
        channels = self.structure.num_channels or 3
        shown, batch = [], []
        for image in images:
            if _is_pil(image):
                image = image.convert("RGB" if channels == 3 else "L")
                array = np.asarray(image.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32) / 255.0
                array = array if array.ndim == 3 else array[..., None]
            elif isinstance(image, np.ndarray):
                array = image.astype(np.float32)
                array = array / 255.0 if array.max() > 1.0 else array
                array = array if array.ndim == 3 else array[..., None]
                if array.shape[:2] != tuple(size):
                    raise ValueError(f"the image is {array.shape[:2]} pixels but the model expects {tuple(size)}; resize it first")
            elif isinstance(image, torch.Tensor):  # already in the model's input space (C, H, W)
                if image.dim() != 3:
                    raise ValueError(f"an image tensor must be (channels, height, width), got shape {tuple(image.shape)}")
                batch.append(image)
                shown.append(self._denormalise(image))
                continue
            else:
                raise TypeError(f"cannot read an image from {type(image).__name__}: give a path, a PIL image or an array")
            if array.shape[-1] != channels:
                raise ValueError(f"the image has {array.shape[-1]} channels but the model expects {channels}")
            shown.append(array)
            batch.append(self._normalise(array))
        pixels = torch.stack(batch).to(self.model.dtype)
        return {"pixel_values": pixels}, shown

    def _statistics(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """The processor's normalisation (ViT's 0.5/0.5 when there is no processor)."""
        mean = getattr(self.processor, "image_mean", None) or [0.5] * channels
        std = getattr(self.processor, "image_std", None) or [0.5] * channels
        return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)

    def _normalise(self, array: np.ndarray) -> torch.Tensor:
        mean, std = self._statistics(array.shape[-1])
        return torch.from_numpy(((array - mean) / std).transpose(2, 0, 1).copy())

    def _denormalise(self, pixels: torch.Tensor) -> np.ndarray:
        mean, std = self._statistics(pixels.shape[0])
        array = pixels.detach().float().permute(1, 2, 0).numpy() * std + mean
        return np.clip(array, 0.0, 1.0)

    def _image_explanation(self, attribution, index, shown) -> Explanation:
        from .viz.image import upsample

        scores = attribution.scores[index].float().numpy()
        prefix_scores = None
        if attribution.kind == "tokens":
            grid = self.structure.grid
            prefix = scores.shape[0] - grid[0] * grid[1]
            prefix_scores, patch_scores = scores[:prefix], scores[prefix:].reshape(grid)
            heatmap = upsample(patch_scores, self.structure.image_size)
        else:
            patch_scores = heatmap = scores
        return Explanation(
            modality="image",
            scores=patch_scores,
            image=shown,
            heatmap=heatmap,
            prefix_scores=prefix_scores,
            **self._common(attribution, index),
        )


def _is_pil(value) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(value, Image.Image)


def _is_fast(tokenizer) -> bool:
    return bool(getattr(tokenizer, "is_fast", False))

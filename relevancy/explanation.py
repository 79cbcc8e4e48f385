"""What a person gets back: one explained input, with its scores per token, word or patch and the
pictures and files to show them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Methods whose definition keeps only a positive part, so that a map can be all zero on a real input.
_WHY_EMPTY = {
    "attention_gradcam": "attention GradCAM keeps only the positive part of the last layer's gradient-weighted "
    "attention, and it is zero or negative at every {unit} here",
    "partial_lrp": "partial LRP keeps only the positive part of the last layer's attention relevance, and it is "
    "zero or negative at every {unit} here",
}


@dataclass
class Explanation:
    """One input's map for one method and target.

    Text: ``tokens`` and ``scores`` per token (special tokens included, marked in ``special``),
    ``words()`` aggregates word pieces. Images: ``scores`` over the patch grid (``grid``),
    ``heatmap`` upsampled to the image, ``image`` the input in [0,1] for overlays.
    ``empty`` says when the map is zero everywhere (a blank picture) and ``notice`` why.
    """

    method: str
    signed: bool
    modality: str
    scores: np.ndarray
    target: str
    target_class: int | None
    predicted_class: int
    predicted_label: str
    probabilities: np.ndarray
    labels: dict[int, str] = field(default_factory=dict)
    tokens: list[str] | None = None
    special: list[bool] | None = None
    word_ids: list[int | None] | None = None
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None
    image: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    prefix_scores: np.ndarray | None = None  # class/distillation token positions of a ViT

    @property
    def empty(self) -> bool:
        """Every real token (special tokens aside) or every patch scores exactly zero: the map shows nothing."""
        scores = np.asarray(self.scores)
        if self.tokens is not None and self.special is not None:
            scores = scores[~np.asarray(self.special, dtype=bool)]
        return not np.any(scores)

    @property
    def notice(self) -> str | None:
        """Why the map is empty, for people reading a blank picture; None when it is not."""
        if not self.empty:
            return None
        if self.tokens is not None:
            unit = "token"
        else:
            pixels = self.image is not None and np.shape(self.scores) == np.shape(self.image)[:2]
            unit = "pixel" if pixels else "patch"
        reason = _WHY_EMPTY.get(self.method, "{method} gives every {unit} a score of exactly zero")
        return "this method's map is empty for this input: " + reason.format(method=self.method, unit=unit)

    # -- text -----------------------------------------------------------------------------------
    def words(self, aggregate: str = "sum", relative: bool = False) -> list[tuple[str, float]]:
        """(word, score) pairs: word pieces combined by ``aggregate`` ("sum", "max" or "mean").
        ``relative`` divides by the largest |word score|, so the strongest word reads 1 whatever the
        method's scale (raw relevance of a whole map is often of order 1e-3 per word)."""
        if self.tokens is None:
            raise TypeError("words() is for text explanations")
        reduce = {"sum": np.sum, "max": np.max, "mean": np.mean}[aggregate]
        groups: dict[int, list[int]] = {}
        for position, word in enumerate(self.word_ids or []):
            if word is not None:
                groups.setdefault(word, []).append(position)
        words = []
        for word, positions in groups.items():
            if self.text is not None and self.offsets is not None:
                start, end = self.offsets[positions[0]][0], self.offsets[positions[-1]][1]
                surface = self.text[start:end]
            else:
                surface = "".join(self.tokens[p].removeprefix("##") for p in positions)
            words.append((surface, float(reduce(self.scores[positions]))))
        scale = max((abs(score) for _, score in words), default=0.0)
        if relative and scale > 0:
            words = [(word, score / scale) for word, score in words]
        return words

    def top_tokens(self, k: int = 5) -> list[tuple[str, float]]:
        content = [(t, float(s)) for t, s, special in zip(self.tokens, self.scores, self.special) if not special]
        return sorted(content, key=lambda item: -item[1])[:k]

    # -- output ---------------------------------------------------------------------------------
    @property
    def title(self) -> str:
        return f"{self.method} — explaining {self.target}; predicted {self.predicted_label} ({self.probabilities[self.predicted_class]:.1%})"

    def to_html(self, standalone: bool = True) -> str:
        from .viz.text import render_html

        if self.tokens is None:
            return self._image_html(standalone)
        return render_html(
            self.tokens, self._display_scores(), signed=self.signed, title=self.title, subtitle=self.notice or "",
            standalone=standalone,
        )

    def _display_scores(self) -> list[float]:
        """Special tokens shown at 0 so that [CLS] (which a rollout's identity term favours) does not
        set the colour scale; their scores stay in ``scores`` and the JSON."""
        return [0.0 if special else float(score) for score, special in zip(self.scores, self.special)]

    def _repr_html_(self) -> str:
        return self.to_html(standalone=False)

    def _image_html(self, standalone: bool) -> str:
        import base64
        import html
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(self.overlay()).save(buffer, format="PNG")
        encoded = base64.b64encode(buffer.getvalue()).decode()
        notice = f"<p><strong>{html.escape(self.notice)}</strong></p>" if self.notice else ""
        body = f'<div><p>{html.escape(self.title)}</p>{notice}<img src="data:image/png;base64,{encoded}"/></div>'
        return f"<!doctype html><html><body>{body}</body></html>" if standalone else body

    def to_terminal(self, use_color: bool = True) -> str:
        from .viz.text import render_terminal

        if self.tokens is None:
            raise TypeError("terminal view is for text explanations; save_png() shows images")
        shown = np.asarray(self._display_scores())
        scale = np.abs(shown).max() if shown.size else 0.0
        return render_terminal(self.tokens, list(shown / scale) if scale > 0 else list(shown), signed=self.signed, use_color=use_color)

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        from .viz.image import overlay

        if self.image is None:
            raise TypeError("overlay() is for image explanations")
        return overlay(self.image, self.heatmap, signed=self.signed, alpha=alpha)

    def save_png(self, path: str | Path) -> Path:
        from .viz.image import save_png

        path = Path(path)
        save_png(path, self.overlay())
        return path

    def save_html(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def to_dict(self) -> dict:
        data = {
            "method": self.method,
            "signed": self.signed,
            "modality": self.modality,
            "target": self.target,
            "target_class": self.target_class,
            "predicted_class": self.predicted_class,
            "predicted_label": self.predicted_label,
            "probabilities": {self.labels.get(i, str(i)): float(p) for i, p in enumerate(self.probabilities)},
            "empty": self.empty,
            "notice": self.notice,
        }
        if self.tokens is not None:
            data["tokens"] = [
                {"token": t, "score": float(s), "special": bool(sp)} for t, s, sp in zip(self.tokens, self.scores, self.special)
            ]
            data["words"] = [{"word": w, "score": s} for w, s in self.words()]
        else:
            data["patch_scores"] = np.asarray(self.scores).tolist()
            if self.prefix_scores is not None:
                data["prefix_token_scores"] = np.asarray(self.prefix_scores).tolist()
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

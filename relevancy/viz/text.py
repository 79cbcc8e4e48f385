"""Highlighted text: HTML (standalone page or notebook fragment) and a coloured terminal line."""

from __future__ import annotations

import html

import numpy as np

from .colors import colour, normalise

SPECIAL = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>", "<|endoftext|>", "<|begin_of_text|>", "<|im_start|>", "<|im_end|>"}


def _background(tokens, scores, signed):
    values = normalise(scores, signed)
    # text highlighting reads better with white at zero: the sequential map's dark end is for images
    if signed:
        return colour(values, True)
    white, red = np.array([255, 255, 255.0]), np.array([214, 39, 40.0])
    return (white * (1 - values[:, None]) + red * values[:, None]).round().astype(np.uint8)


def render_html(tokens, scores, *, signed: bool, title: str = "", subtitle: str = "", standalone: bool = True) -> str:
    """Each token a coloured span with its score as tooltip; word pieces (##) join their word."""
    rgb = _background(tokens, scores, signed)
    spans = []
    for token, score, (r, g, b) in zip(tokens, scores, rgb):
        piece = token.startswith("##")
        text = html.escape(token[2:] if piece else token.replace("Ġ", "").replace("▁", ""))
        style = f"background:rgb({r},{g},{b});padding:1px 2px;border-radius:3px"
        if token in SPECIAL:
            style += ";color:#999"
        spans.append(("" if piece or not spans else " ") + f'<span style="{style}" title="{float(score):+.4g}">{text}</span>')
    legend = "blue: against, red: for the target" if signed else "darker red: more relevant"
    body = (
        f'<div style="font-family:sans-serif;line-height:1.9">'
        + (f"<h3>{html.escape(title)}</h3>" if title else "")
        + (f"<p>{html.escape(subtitle)}</p>" if subtitle else "")
        + f'<p>{"".join(spans)}</p><p style="color:#666;font-size:small">{legend}</p></div>'
    )
    return f'<!doctype html><html><head><meta charset="utf-8"></head><body>{body}</body></html>' if standalone else body


def render_terminal(tokens, scores, *, signed: bool, use_color: bool = True) -> str:
    """ANSI 24-bit backgrounds; without colour, the five strongest tokens are marked with scores."""
    if not use_color:
        strongest = set(np.argsort(-np.abs(np.asarray(scores, dtype=float)))[:5].tolist())
        return " ".join(f"{t}[{s:+.3f}]" if i in strongest else t for i, (t, s) in enumerate(zip(tokens, scores)))
    rgb = _background(tokens, scores, signed)
    return " ".join(f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;0;0;0m{t}\x1b[0m" for t, (r, g, b) in zip(tokens, rgb))

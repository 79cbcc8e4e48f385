"""Pictures of relevance: highlighted text, heatmaps over images."""

from .image import overlay, save_png, upsample
from .text import render_html, render_terminal

__all__ = ["overlay", "render_html", "render_terminal", "save_png", "upsample"]

"""The pictures: escaping, colours by sign, no NaN on flat maps, PNG round trip."""

import numpy as np
from PIL import Image

from relevancy.viz import overlay, render_html, render_terminal, save_png, upsample


def test_html_escapes_and_has_a_span_per_token():
    page = render_html(["[CLS]", "<script>", "good", "[SEP]"], [0.0, 0.1, 0.9, 0.0], signed=False)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("<span") == 4


def test_signed_colours_red_for_and_blue_against():
    page = render_html(["good", "bad"], [1.0, -1.0], signed=True, standalone=False)
    assert "rgb(178,24,43)" in page and "rgb(33,102,172)" in page


def test_terminal_colour_only_when_asked():
    assert "\x1b[" in render_terminal(["a", "b"], [0.1, 0.5], signed=False)
    assert "\x1b[" not in render_terminal(["a", "b"], [0.1, 0.5], signed=False, use_color=False)


def test_flat_maps_and_png_round_trip(tmp_path):
    assert np.allclose(upsample(np.full((2, 2), 3.0), (8, 8)), 3.0)
    picture = overlay(np.zeros((8, 8, 3)), np.zeros((2, 2)), signed=False)
    assert picture.dtype == np.uint8 and picture.shape == (8, 8, 3) and np.isfinite(picture).all()
    path = save_png(tmp_path / "map.png", picture)
    assert np.array_equal(np.asarray(Image.open(path)), picture)

"""The explorer in a real browser: headless Chromium (Debian's package, driven by Playwright) loads
the page from a live server, types a sentence, picks a target and finds the coloured tokens; uploads
an image and finds the overlay; generates an answer and picks a token; opens an audit folder, sorts
and filters its table, clicks the plot; opens an evaluation folder. Screenshots of each view go to
$RELEVANCY_SCREENSHOTS when it is set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from relevancy.adapters.default_model import IMAGE_SAMPLES

playwright = pytest.importorskip("playwright.sync_api", reason="the browser tests need Playwright: pip install -e '.[serve-test]'")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on this machine: the browser tests drive Debian's chromium "
    "(apt-get install -y --no-install-recommends chromium, as scripts/install.sh does)",
)
SCREENSHOTS = os.environ.get("RELEVANCY_SCREENSHOTS")
TIMEOUT = 120_000  # ms: the explanations run on shared CPU cores


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        instance = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(server + "/")
    tab.wait_for_selector("body[data-ready=true]")
    yield tab
    context.close()
    assert errors == []


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"serve-{name}.png"))


def alpha(background: str) -> float:
    """The opacity of an rgba() colour as the browser reports it (rgb() is opaque)."""
    inside = background[background.index("(") + 1 : -1].split(",")
    return float(inside[3]) if len(inside) == 4 else 1.0


def test_text_tokens_are_coloured_by_the_map_of_the_chosen_target(page, server):
    sentence = "a gorgeous, witty film with a dull ending"
    page.fill("#text-input", sentence)
    page.select_option("#text-target", label="negative")
    page.click("#explain-text")
    page.wait_for_selector(".result[data-method=integrated_gradients] .unit", timeout=TIMEOUT)
    cards = page.locator("#text-results .result")
    assert [cards.nth(i).get_attribute("data-method") for i in range(cards.count())] == [
        "transformer_attribution", "gradient_x_attention", "rollout", "integrated_gradients"]
    assert "Explaining negative" in page.inner_text("#text-classes")
    expected = httpx.post(server + "/api/explain/text", timeout=120, json={
        "model": "default", "text": sentence, "methods": ["gradient_x_attention"], "target": "0"}).json()["results"][0]
    units = page.locator(".result[data-method=gradient_x_attention] .unit")
    assert units.count() == len(expected["tokens"])
    scores = [float(units.nth(i).get_attribute("data-score")) for i in range(units.count())]
    assert scores == pytest.approx([t["score"] for t in expected["tokens"]], rel=1e-6)
    content = [i for i, t in enumerate(expected["tokens"]) if not t["special"]]
    strongest = max(content, key=lambda i: abs(scores[i]))
    background = units.nth(strongest).evaluate("e => getComputedStyle(e).backgroundColor")
    assert alpha(background) == pytest.approx(1.0)  # the strongest token is fully coloured
    assert background.startswith("rgb(220, 40, 40" if scores[strongest] > 0 else "rgb(40, 80, 220")
    weakest = min(content, key=lambda i: abs(scores[i]))
    assert alpha(units.nth(weakest).evaluate("e => getComputedStyle(e).backgroundColor")) < 0.5
    units.nth(strongest).hover()
    assert page.inner_text("#text-hover") == units.nth(strongest).get_attribute("title")
    assert f"{scores[strongest]:.4g}"[:4] in page.inner_text("#text-hover")
    screenshot(page, "text")
    with page.expect_download() as download:
        page.locator(".result[data-method=gradient_x_attention] .downloads a", has_text="PNG").click()
    picture = Image.open(download.value.path())
    assert picture.format == "PNG" and picture.width == 900
    colours = {tuple(c) for c in np.asarray(picture.convert("RGB")).reshape(-1, 3)}
    assert (220, 40, 40) in colours or (40, 80, 220) in colours  # the strongest token, fully coloured
    page.check("#view-words")
    words = page.locator(".result[data-method=gradient_x_attention] .unit")
    assert [words.nth(i).inner_text() for i in range(words.count())] == [w["text"] for w in expected["words"]]
    page.locator("#text-classes .cls[data-index='1']").click()  # a class of the list: explained at once
    page.wait_for_function("document.querySelector('#text-classes').innerText.includes('Explaining positive')",
                           timeout=TIMEOUT)


def test_bad_text_shows_a_message_and_the_page_keeps_working(page):
    page.fill("#text-input", "   ")
    page.click("#explain-text")
    page.wait_for_function("document.querySelector('#text-error').innerText.length > 0", timeout=TIMEOUT)
    assert page.inner_text("#text-error") == "type or paste a text to explain"
    page.fill("#text-input", "fine")
    page.click("#explain-text")
    page.wait_for_selector("#text-results .unit", timeout=TIMEOUT)
    assert page.inner_text("#text-error") == ""


def test_image_overlay_follows_the_opacity_slider(page):
    page.click("button[data-tab=image]")
    page.set_input_files("#image-file", str(IMAGE_SAMPLES / "ankle-boot.png"))
    page.click("#explain-image")
    page.wait_for_selector(".result[data-method=rollout] img.heat", timeout=TIMEOUT)
    assert "Ankle boot (predicted)" in page.inner_text("#image-classes")
    heat = page.locator(".result[data-method=transformer_attribution] img.heat")
    assert heat.evaluate("e => [e.complete, e.naturalWidth, e.naturalHeight]") == [True, 28, 28]
    assert heat.evaluate("e => getComputedStyle(e).opacity") == "0.5"
    page.locator("#opacity").fill("0.8")
    assert heat.evaluate("e => getComputedStyle(e).opacity") == "0.8"
    links = page.locator(".result[data-method=transformer_attribution] .downloads a")
    assert [links.nth(i).inner_text() for i in range(3)] == ["JSON", "HTML", "PNG"]
    screenshot(page, "image")


def test_answer_tokens_show_the_prompt_tokens_that_carried_them(page):
    page.click("button[data-tab=answer]")
    page.fill("#prompt", "the movie was")
    page.fill("#new-tokens", "3")
    page.select_option("#answer-method", "gradient_x_attention")
    page.click("#explain-answer")
    page.wait_for_selector("#answer-tokens button[data-choice='2']", timeout=TIMEOUT)
    prompt_length = page.locator("#answer-map .unit").count()  # the whole answer: over the prompt
    page.click("#answer-tokens button[data-choice='1']")
    assert page.locator("#answer-map .unit").count() == prompt_length + 1
    assert page.locator("#answer-map .unit.answer").count() == 1
    page.check("#drop-sink")
    assert float(page.locator("#answer-map .unit").first.get_attribute("data-score")) == 0.0
    screenshot(page, "answer")


def test_audit_table_sorts_and_filters_and_the_plot_opens_documents(page, audit_folder):
    _, report = audit_folder
    page.click("button[data-tab=audit]")
    page.select_option("#audit-folder", "reviews-audit")
    page.wait_for_selector("#audit-view table#words tbody tr")
    rows = page.locator("#words tbody tr")
    assert rows.count() == len(report.words)
    lift = page.locator("#words th", has_text="lift").first
    lift.click()
    column = [h.inner_text() for h in page.locator("#words th").all()].index("lift")
    values = page.eval_on_selector_all(f"#words tbody tr td:nth-child({column + 1})", "cells => cells.map(c => +c.dataset.v)")
    assert values == sorted(values, reverse=True) and lift.get_attribute("aria-sort") == "descending"
    lift.click()
    values = page.eval_on_selector_all(f"#words tbody tr td:nth-child({column + 1})", "cells => cells.map(c => +c.dataset.v)")
    assert values == sorted(values) and lift.get_attribute("aria-sort") == "ascending"
    top = report.by_relevance()[0].item
    page.fill("#filter", top)
    visible = page.eval_on_selector_all("#words tbody tr", "rows => rows.filter(r => r.style.display !== 'none').map(r => r.dataset.word)")
    assert top in visible and all(top in word for word in visible)
    page.fill("#filter", "")
    page.locator(f"circle.pt[data-word='{top}']").click()
    page.wait_for_selector("#audit-word figure", timeout=TIMEOUT)
    assert f"\u201c{top}\u201d" in page.inner_text("#audit-word h3")
    assert page.locator("#audit-word .hit").count() >= 1
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "audit")


def test_static_audit_report_has_the_same_working_table(browser, audit_folder):
    folder, report = audit_folder
    tab = browser.new_page()
    tab.goto((folder / "report.html").as_uri())  # a file, no server: the script is inline
    count = tab.locator("th", has_text="count").first
    count.click()
    column = [h.inner_text() for h in tab.locator("#words th").all()].index("count")
    values = tab.eval_on_selector_all(f"#words tbody tr td:nth-child({column + 1})", "cells => cells.map(c => +c.dataset.v)")
    assert len(values) == len(report.words) and values == sorted(values, reverse=True)
    tab.close()


def test_evaluation_table_and_plot(page, evaluation_folder):
    page.click("button[data-tab=evaluation]")
    page.select_option("#evaluation-folder", "reviews-eval")
    page.wait_for_selector("#evaluation-view table tr td")
    header = page.locator("#evaluation-view table tr").first.inner_text()
    assert "transformer_attribution" in header and "rollout" in header
    page.wait_for_function("document.querySelector('#evaluation-view .plots img').naturalWidth > 0", timeout=TIMEOUT)
    screenshot(page, "evaluation")

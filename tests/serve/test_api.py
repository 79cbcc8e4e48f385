"""Every endpoint of the explorer with good and bad input: the answers equal the library's own calls,
refusals are one message (never a traceback), and no request reaches a path outside the folders given."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relevancy.adapters.default_model import IMAGE_SAMPLES
from relevancy.generation import explain_answer
from relevancy.serve import create_app
from relevancy.serve.app import STATIC
from relevancy.serve.folders import load_audit_report
from tests.serve.conftest import ANSWER_WINDOW

PULLOVER = IMAGE_SAMPLES / "pullover.png"


def png_array(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def refused(response, status: int, *phrases: str) -> str:
    """A refusal: the status, a JSON message naming the problem, and no traceback."""
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert "Traceback" not in message and 'File "' not in message
    for phrase in phrases:
        assert phrase in message, message
    return message


# -- the page and its configuration ----------------------------------------------------------------
def test_config_names_the_models_folders_and_limits(client):
    config = client.get("/api/config").json()
    kinds = {m["name"]: m["kind"] for m in config["models"]}
    assert kinds == {"default": "text", "default-image": "image", "tiny-lm": "answer"}
    text = next(m for m in config["models"] if m["name"] == "default")
    assert text["labels"] == ["negative", "positive"] and text["window"] == 512
    assert config["compared"] == ["transformer_attribution", "gradient_x_attention", "rollout", "integrated_gradients"]
    assert config["audits"] == ["reviews-audit"] and config["evaluations"] == ["reviews-eval"]
    assert config["limits"]["upload_bytes"] == 10 * 1024 * 1024


def test_page_and_assets_are_served_locally_without_network_links(client):
    page = client.get("/")
    assert page.status_code == 200 and "relevancy explorer" in page.text
    assets = ["/static/explorer.js", "/static/explorer.css", "/audit.js", "/audit.css"]
    for url in assets:
        assert url in page.text
    for url in ["/", *assets]:
        body = client.get(url).text
        assert client.get(url).status_code == 200 and body
        assert "http://" not in body and "https://" not in body and "//cdn" not in body, url
    assert "function relevancyAudit(root)" in client.get("/audit.js").text  # the static report's own script


# -- 1. text ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [None, 0, "positive vs negative"])
def test_text_maps_equal_the_explainers_side_by_side(client, models, target):
    methods = ["transformer_attribution", "gradient_x_attention", "rollout", "integrated_gradients"]
    text = "a gorgeous, witty film with a dull ending"
    answer = client.post("/api/explain/text", json={"model": "default", "text": text, "methods": methods, "target": target})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert [r["method"] for r in data["results"]] == methods
    explainer = models["default"].explainer
    for result in data["results"]:
        expected = explainer(text, target=target, method=result["method"])
        np.testing.assert_allclose([t["score"] for t in result["tokens"]], expected.scores, rtol=1e-6, atol=1e-9)
        assert [t["text"] for t in result["tokens"]] == expected.tokens
        assert [(w["text"], w["score"]) for w in result["words"]] == pytest.approx(expected.words())
        assert result["json"] == json.loads(expected.to_json())
        assert result["title"] == expected.title and result["html"] == expected.to_html()
        for token in result["tokens"]:  # each token names its word
            if token["word"] is not None:
                assert token["text"].removeprefix("##").lower() in result["words"][token["word"]]["text"].lower()
    assert data["target"] == {None: "predicted class", 0: "negative"}.get(target, "positive vs negative")
    probabilities = [c["probability"] for c in data["classes"]]
    np.testing.assert_allclose(probabilities, explainer(text).probabilities, rtol=1e-6)
    assert [c["label"] for c in data["classes"]] == ["negative", "positive"] and data["predicted"] == 1


def test_text_default_methods_are_the_four_compared(client):
    data = client.post("/api/explain/text", json={"model": "default", "text": "a fine film"}).json()
    assert [r["method"] for r in data["results"]] == [
        "transformer_attribution", "gradient_x_attention", "rollout", "integrated_gradients"]


@pytest.mark.parametrize("body, status, phrases", [
    ({"model": "default", "text": "   "}, 400, ["type or paste a text"]),
    ({"model": "default"}, 400, ["type or paste a text"]),
    ({"model": "default", "text": "x" * 20_001}, 400, ["20001 characters", "at most 20000"]),
    ({"model": "default", "text": "good " * 600}, 400, ["602 tokens long", "reads at most 512"]),
    ({"model": "nope", "text": "good"}, 404, ["no model called 'nope'", "default, default-image, tiny-lm"]),
    ({"model": "bert-base-uncased", "text": "good"}, 404, ["no model called 'bert-base-uncased'"]),
    ({"model": "default-image", "text": "good"}, 400, ["default-image explains images; this view needs a model that explains text"]),
    ({"model": "default", "text": "good", "methods": ["magic"]}, 400, ["unknown method 'magic'", "transformer_attribution"]),
    ({"model": "default", "text": "good", "methods": "rollout"}, 400, ["list of method names"]),
    ({"model": "default", "text": "good", "methods": [" "]}, 400, ["choose at least one method"]),
    ({"model": "default", "text": "good", "target": "joyful"}, 400, ["joyful"]),
    ({"model": "default", "text": "good", "target": 7}, 400, ["out of range"]),
    ({"model": "default", "text": "good", "target": [1]}, 400, ["class index, a label name or 'a vs b'"]),
])
def test_bad_text_requests_get_one_message(client, body, status, phrases):
    refused(client.post("/api/explain/text", json=body), status, *phrases)


def test_malformed_and_oversized_json_is_refused(client):
    refused(client.post("/api/explain/text", content=b"{not json"), 400, "not valid JSON")
    refused(client.post("/api/explain/text", content=b"[1, 2]"), 400, "JSON object")
    big = json.dumps({"model": "default", "text": "a" * (1024 * 1024)}).encode()
    refused(client.post("/api/explain/text", content=big), 413, "larger than the explorer takes")


# -- 2. images -------------------------------------------------------------------------------------
def test_image_map_equals_the_explainers_with_the_blend_the_slider_shows(client, models):
    methods = ["transformer_attribution", "rollout"]
    answer = client.post(f"/api/explain/image?model=default-image&methods={','.join(methods)}&target=Coat",
                         content=PULLOVER.read_bytes())
    assert answer.status_code == 200, answer.text
    data = answer.json()
    explainer = models["default-image"].explainer
    shown = png_array(data["image"])
    for result in data["results"]:
        expected = explainer(PULLOVER, target="Coat", method=result["method"])
        assert result["json"] == json.loads(expected.to_json())
        heatmap = png_array(result["heatmap"]).astype(float)
        np.testing.assert_array_equal(heatmap, expected.overlay(alpha=1.0))
        np.testing.assert_array_equal(png_array(result["overlay"]), expected.overlay())
        # the page lays the heatmap over the image at the slider's opacity: the library's own blend
        image = np.repeat(shown[..., None], 3, -1).astype(float) if shown.ndim == 2 else shown.astype(float)
        blended = np.round(0.5 * image + 0.5 * heatmap)
        assert np.abs(blended - expected.overlay(alpha=0.5).astype(float)).max() <= 1.0
    assert data["target"] == "Coat"
    assert [c["label"] for c in data["classes"]][2] == "Pullover" and data["predicted"] == 2


def encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


@pytest.mark.parametrize("content, status, phrases", [
    (b"", 400, ["no image was uploaded"]),
    (b"just some text, not a picture", 400, ["not an image", "PNG, JPEG"]),
    (encoded(Image.new("L", (8, 8)), "PPM"), 400, ["PPM images are not read here"]),
    (encoded(Image.new("1", (5000, 4000)), "PNG"), 400, ["5000x4000 pixels", "at most 16,777,216 pixels"]),
    (PULLOVER.read_bytes()[:200], 400, ["damaged"]),
    (b"\0" * (10 * 1024 * 1024 + 1), 413, ["larger than the explorer takes (10 MB at most)"]),
], ids=["empty", "text", "ppm", "too-many-pixels", "truncated", "over-10-MB"])
def test_bad_uploads_get_one_message(client, content, status, phrases):
    refused(client.post("/api/explain/image?model=default-image", content=content), status, *phrases)


def test_image_request_for_a_text_model_or_unknown_method_is_refused(client):
    refused(client.post("/api/explain/image?model=default", content=PULLOVER.read_bytes()), 400, "default explains text; this view needs a model that explains images")
    refused(client.post("/api/explain/image?model=default-image&methods=rollout,nope", content=PULLOVER.read_bytes()),
            400, "unknown method 'nope'")
    refused(client.post("/api/explain/image?model=default-image&methods=", content=PULLOVER.read_bytes()),
            400, "choose at least one method")


# -- 3. answers of a causal LM ---------------------------------------------------------------------
def test_answer_matrix_equals_explain_answer(client, models):
    prompt = "the movie was"
    data = client.post("/api/explain/answer", json={"model": "tiny-lm", "prompt": prompt, "new_tokens": 3,
                                                    "method": "gradient_x_attention"}).json()
    explainer = models["tiny-lm"].explainer
    expected = explain_answer(explainer.model, explainer.processor, prompt, max_new_tokens=3, method="gradient_x_attention")
    assert data["tokens"] == expected.tokens and data["prompt_length"] == expected.prompt_length
    assert len(data["tokens"]) == data["prompt_length"] + 3
    np.testing.assert_allclose(data["rows"]["kept"], expected.normalised(False), atol=1e-6)
    np.testing.assert_allclose(data["rows"]["sink_dropped"], expected.normalised(True), atol=1e-6)
    np.testing.assert_allclose(data["whole"]["sink_dropped"], expected.summed(True), atol=1e-5)
    assert np.all(np.asarray(data["rows"]["sink_dropped"])[:, 0] == 0)
    assert data["html"] == expected.to_html()


@pytest.mark.parametrize("body, phrases", [
    ({"prompt": "the movie was", "new_tokens": 0}, ["from 1 to 64"]),
    ({"prompt": "the movie was", "new_tokens": 65}, ["from 1 to 64"]),
    ({"prompt": "the movie was", "new_tokens": "3"}, ["whole number"]),
    ({"prompt": "the movie was", "new_tokens": True}, ["whole number"]),
    ({"prompt": " ", "new_tokens": 2}, ["type a prompt"]),
    ({"prompt": "the movie was " * 7, "new_tokens": 4}, ["23 tokens and 4 more", f"at most {ANSWER_WINDOW}"]),
    ({"prompt": "the movie was", "method": "nope"}, ["unknown method 'nope'"]),
])
def test_bad_answer_requests_get_one_message(client, body, phrases):
    refused(client.post("/api/explain/answer", json={"model": "tiny-lm", **body}), 400, *phrases)


def test_answer_request_for_a_classifier_is_refused(client):
    refused(client.post("/api/explain/answer", json={"model": "default", "prompt": "hi"}), 400, "needs a model that explains the answers of a causal language model")


# -- 4. audit folders ------------------------------------------------------------------------------
def test_audit_folder_reads_back_the_report_the_audit_wrote(audit_folder):
    folder, report = audit_folder
    loaded = load_audit_report(folder)
    assert loaded.word_rows() == report.word_rows()
    assert json.loads(loaded.to_json()) == json.loads(report.to_json())
    assert set(report.examples) <= set(loaded.examples)


def test_audit_view_is_the_static_reports_body(client, audit_folder):
    from relevancy.audit.page import report_body

    folder, report = audit_folder
    view = client.get("/api/audits/reviews-audit")
    assert view.status_code == 200
    assert view.text == report_body(report)
    static = (folder / "report.html").read_text(encoding="utf-8")
    assert view.text in static  # the same table, plot and examples as report.html
    assert "<table id=words" in view.text and "<svg class='plot'" in view.text


def test_audit_word_shows_its_documents_with_their_maps(client, audit_folder):
    _, report = audit_folder
    word = report.by_relevance()[0].item
    page = client.get("/api/audits/reviews-audit/word", params={"word": word})
    assert page.status_code == 200
    stats = next(s for s in report.words if s.item == word)
    assert page.text.count("<figure>") == len(stats.top_evidence) > 0
    assert f"<span class='tok hit' title='{word}: " in page.text
    refused(client.get("/api/audits/reviews-audit/word", params={"word": "zzz-not-there"}), 404, "no word 'zzz-not-there'")


# -- 5. evaluation folders -------------------------------------------------------------------------
def test_evaluation_view_and_plot(client, evaluation_folder):
    data = client.get("/api/evaluations/reviews-eval").json()
    assert data["results"] == json.loads((evaluation_folder / "results.json").read_text())
    assert data["plots"] == ["perturbation.png"]
    plot = client.get("/api/evaluations/reviews-eval/plots/perturbation.png")
    assert plot.status_code == 200 and plot.content == (evaluation_folder / "perturbation.png").read_bytes()


# -- no way out of the folders given at start-up ---------------------------------------------------
@pytest.mark.parametrize("url", [
    "/api/evaluations/reviews-eval/plots/../meta.json",
    "/api/evaluations/reviews-eval/plots/..%2Fmeta.json",
    "/api/evaluations/reviews-eval/plots/%2e%2e%2fitems.jsonl",
    "/api/evaluations/reviews-eval/plots/../../reviews-audit/report.json",
    "/api/evaluations/reviews-eval/plots//etc/passwd",
    "/api/evaluations/reviews-eval/plots/%2Fetc%2Fpasswd",
    "/api/evaluations/reviews-eval/plots/results.json",
    "/api/evaluations/..%2Freviews-eval",
    "/api/evaluations/%2Ftmp",
    "/api/audits/..%2Freviews-audit",
    "/api/audits/%2Fetc",
    "/api/audits/..",
    "/static/../app.py",
    "/static/..%2Fapp.py",
    "/static/%2Fetc%2Fpasswd",
])
def test_paths_cannot_escape_the_served_folders(client, url):
    response = client.get(url)
    assert response.status_code == 404, (url, response.text[:200])
    assert "root:" not in response.text and '"meta"' not in response.text and "import" not in response.text


def test_a_link_inside_an_evaluation_folder_does_not_lead_out(models, evaluation_folder, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"secret")
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "results.json").write_text((evaluation_folder / "results.json").read_text())
    (folder / "leak.png").symlink_to(outside)
    from starlette.testclient import TestClient

    with TestClient(create_app(models, evaluations=[folder])) as client:
        response = client.get("/api/evaluations/eval/plots/leak.png")
    assert response.status_code == 404 and b"secret" not in response.content


def test_folders_that_are_not_outputs_are_refused_at_start_up(models, tmp_path):
    with pytest.raises(FileNotFoundError, match="not an audit folder .*report.json, documents.jsonl missing"):
        create_app(models, audits=[tmp_path])
    with pytest.raises(FileNotFoundError, match="not an evaluation folder .*results.json"):
        create_app(models, evaluations=[tmp_path])


def test_static_files_are_only_the_page_assets():
    assert sorted(p.name for p in Path(STATIC).iterdir()) == ["explorer.css", "explorer.js", "index.html"]


def test_an_unexpected_failure_is_one_line_on_the_page_and_the_server_keeps_serving(caplog):
    """A model whose embedding table is smaller than its tokenizer's vocabulary (a user's mismatched
    pair) fails inside torch on words past the table: the page gets the error in one line, the log
    the traceback, and the model answers the next request, unchanged."""
    from starlette.testclient import TestClient

    from relevancy.explainer import Explainer
    from relevancy.serve import ServedModel
    from tests.audit import toy
    from tests.models import assert_unchanged, snapshot

    tokenizer = toy.tokenizer()
    model = toy.model(vocab_size=tokenizer.convert_tokens_to_ids("bad"))  # "good" fits, "bad" does not
    before = snapshot(model)
    with TestClient(create_app({"mismatched": ServedModel("mismatched", Explainer(model, tokenizer))})) as client:
        failed = client.post("/api/explain/text", json={"model": "mismatched", "text": "bad", "methods": ["rollout"]})
        message = refused(failed, 500, "the server could not answer (IndexError: index out of range in self)")
        assert "\n" not in message
        assert "Traceback" in caplog.text and "request /api/explain/text failed" in caplog.text
        answered = client.post("/api/explain/text", json={"model": "mismatched", "text": "good", "methods": ["rollout"]})
        assert answered.status_code == 200 and [t["text"] for t in answered.json()["results"][0]["tokens"]] == [
            "[CLS]", "good", "[SEP]"]
    assert_unchanged(model, before)

"""``relevancy explain`` as a new user meets it: empty maps announced, formats and file paths refused
clearly, text from files and standard input, files that never overwrite each other, non-UTF-8 input."""

import html
import io
import json
import sys

import numpy as np
from PIL import Image

SENTENCE = "the plot was dull but the actor was superb ."


def _files(folder):
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# -- item 2: an empty map is said to be empty ----------------------------------------------------------------
def test_empty_map_is_announced_in_terminal_json_and_html(cli, silent_text_model, tmp_path):
    code, out, err = cli("explain", SENTENCE, "--model", silent_text_model, "--method", "attention_gradcam", "--out", tmp_path)
    assert code == 0, err
    notice = "this method's map is empty for this input: attention GradCAM keeps only the positive part"
    assert notice in out
    assert "top words" not in out  # no ranking of zeros
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["empty"] is True and data["notice"].startswith(notice)
    assert all(token["score"] == 0 for token in data["tokens"] if not token["special"])
    assert notice in html.unescape(next(tmp_path.glob("*.html")).read_text())


def test_empty_means_zero_over_real_tokens_or_patches():
    from relevancy.explanation import Explanation

    common = dict(signed=False, target="predicted class", target_class=0, predicted_class=0, predicted_label="a",
                  probabilities=np.array([0.6, 0.4]))
    text = Explanation(method="rollout", modality="text", scores=np.array([0.9, 0.0, 0.0, 0.1]),
                       tokens=["[CLS]", "a", "b", "[SEP]"], special=[True, False, False, True], **common)
    assert text.empty and text.notice == "this method's map is empty for this input: rollout gives every token a score of exactly zero"
    text.scores[2] = 1e-12
    assert not text.empty and text.notice is None
    image = Explanation(method="attention_gradcam", modality="image", scores=np.zeros((2, 2)), image=np.zeros((8, 8, 3)),
                        heatmap=np.zeros((8, 8)), prefix_scores=np.array([1.0]), **common)
    assert image.empty and "zero or negative at every patch here" in image.notice
    assert html.escape(image.notice) in image.to_html()


def test_a_map_with_relevance_has_no_notice(cli, text_model, tmp_path):
    code, out, err = cli("explain", SENTENCE, "--model", text_model, "--out", tmp_path)
    assert code == 0, err
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["empty"] is False and data["notice"] is None
    assert "map is empty" not in out and "top words" in out


# -- item 7: formats and file paths ----------------------------------------------------------------------
def test_unknown_format_is_refused_before_anything_is_written(cli, text_model, tmp_path):
    code, out, err = cli("explain", SENTENCE, "--model", text_model, "--format", "pdf", "--out", tmp_path / "out")
    assert code == 2
    assert "unknown --format 'pdf': choose from html, json, png" in err
    assert _files(tmp_path / "out") == []


def test_png_for_a_text_model_is_refused(cli, text_model, tmp_path):
    code, _, err = cli("explain", SENTENCE, "--model", text_model, "--format", "png", "--out", tmp_path / "out")
    assert code == 2 and "--format png is for images" in err
    assert _files(tmp_path / "out") == []


def test_a_text_model_refuses_what_looks_like_a_file_path(cli, text_model, tmp_path):
    picture = tmp_path / "picture.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(picture)
    notes = tmp_path / "notes.txt"
    notes.write_text(SENTENCE)
    for given, found in ((picture, "that file exists"), ("nothere.png", "no such file exists"), (notes, "that file exists")):
        code, _, err = cli("explain", given, "--model", text_model, "--out", tmp_path / "out")
        assert code == 2, given
        assert f"'{given}' looks like a file path ({found})" in err and f"--file {given}" in err and "--literal" in err
    assert "give an image classifier with --model" in cli("explain", picture, "--model", text_model)[2]
    assert _files(tmp_path / "out") == []


def test_text_from_a_file_standard_input_or_literally(cli, text_model, tmp_path, monkeypatch):
    notes = tmp_path / "notes.txt"
    notes.write_text(SENTENCE + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert cli("explain", "--file", notes, "--model", text_model, "--out", out)[0] == 0
    from_file = json.loads((out / "notes-attnlrp-predicted.json").read_text())
    assert [w["word"] for w in from_file["words"]] == SENTENCE.split()

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SENTENCE.encode())))
    code, _, err = cli("explain", "-", "--model", text_model, "--out", out)
    assert code == 0, err
    from_stdin = json.loads((out / "the-plot-was-dull-but-the-actor-was-supe-attnlrp-predicted.json").read_text())
    assert from_stdin["tokens"] == from_file["tokens"]

    code, _, err = cli("explain", "nothere.png", "--literal", "--model", text_model, "--out", out)
    assert code == 0, err
    assert (out / "nothere-png-attnlrp-predicted.json").is_file()
    code, _, err = cli("explain", SENTENCE, "--file", notes, "--model", text_model)
    assert code == 2 and "either as INPUT or with --file" in err
    picture = tmp_path / "picture.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(picture)
    code, _, err = cli("explain", "--file", picture, "--model", text_model)
    assert code == 2 and "--file reads text; give an image as INPUT" in err


# -- item 8: one file per target, never overwritten ----------------------------------------------------------
def test_each_target_gets_its_own_files_and_nothing_is_overwritten(cli, text_model, tmp_path):
    def explain(*extra):
        code, out, err = cli("explain", SENTENCE, "--model", text_model, "--out", tmp_path, *extra)
        assert code == 0, err
        return [line.removeprefix("wrote ") for line in out.splitlines() if line.startswith("wrote ")]

    stem = "the-plot-was-dull-but-the-actor-was-supe-attnlrp"  # the text's first 40 characters
    first = explain("--target", "positive")
    assert first == [str(tmp_path / f"{stem}-positive.html"), str(tmp_path / f"{stem}-positive.json")]
    second = explain("--target", "negative")
    assert second == [str(tmp_path / f"{stem}-negative.html"), str(tmp_path / f"{stem}-negative.json")]
    again = explain("--target", "positive")
    assert again == [str(tmp_path / f"{stem}-positive-2.html"), str(tmp_path / f"{stem}-positive-2.json")]
    targets = {path.name: json.loads(path.read_text())["target"] for path in tmp_path.glob("*.json")}
    assert targets == {f"{stem}-positive.json": "positive", f"{stem}-negative.json": "negative", f"{stem}-positive-2.json": "positive"}
    assert explain("--target", "positive", "--overwrite")[1] == str(tmp_path / f"{stem}-positive.json")
    assert len(list(tmp_path.iterdir())) == 6


# -- item 9: text that is not UTF-8 ----------------------------------------------------------------------
def test_a_non_utf8_argument_is_named_with_the_fix(cli, text_model, tmp_path):
    latin1 = b"the actor was superb caf\xe9".decode("utf-8", "surrogateescape")  # as Python receives such argv bytes
    code, _, err = cli("explain", latin1, "--model", text_model, "--out", tmp_path)
    assert code == 2
    assert "the text argument is not UTF-8 text" in err and "byte 0xe9 after 'actor was superb caf'" in err
    assert "--file PATH" in err and "TextEncodeInput" not in err


def test_a_non_utf8_file_is_named_with_line_and_fix(cli, text_model, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"the plot was dull\nthe caf\xe9 was superb\n")
    code, _, err = cli("explain", "--file", notes, "--model", text_model, "--out", tmp_path / "out")
    assert code == 2
    assert f"{notes} is not UTF-8 text (line 2: byte 0xe9 after 'the caf'" in err
    assert f"iconv -f WINDOWS-1252 -t UTF-8 {notes}" in err


def test_an_image_gets_png_by_default_and_an_empty_map_is_announced(cli, tmp_path):
    import torch

    from tests.models import build

    model = build("vit")
    with torch.no_grad():
        model.classifier.weight.zero_()  # no logit depends on the image: GradCAM's map is zero everywhere
    model.save_pretrained(tmp_path / "vit")
    picture = tmp_path / "cat photo.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(picture)
    code, out, err = cli("explain", picture, "--model", tmp_path / "vit", "--method", "attention_gradcam", "--out", tmp_path / "out")
    assert code == 0, err
    assert "map is empty for this input: attention GradCAM" in out and "at every patch here" in out
    assert _files(tmp_path / "out") == [f"cat-photo-attention_gradcam-predicted.{ext}" for ext in ("html", "json", "png")]
    assert json.loads((tmp_path / "out" / "cat-photo-attention_gradcam-predicted.json").read_text())["empty"] is True

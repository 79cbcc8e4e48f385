"""The runner: resuming without recomputation or duplicates, and ``relevancy evaluate`` end to end."""

import json

import pytest

import relevancy.evaluation.runner as runner
from relevancy.cli.main import main
from relevancy.evaluation import evaluate, load_text_file

from .conftest import require_eraser, write_image_folder

METHODS = ["transformer_attribution", "rollout"]
TEXT_TESTS = ["perturbation", "faithfulness"]


@pytest.fixture
def reviews(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = ["a moving and gorgeous film,positive", "dull,negative", "not bad at all,positive",
            "the plot drags and drags,negative", "superb acting,positive", "a mess,negative"]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return load_text_file(path)


@pytest.fixture
def count_attributions(monkeypatch):
    calls = []

    def counting(model, inputs, method, target=None, **kwargs):
        calls.append((method, inputs["input_ids"].shape[0]))
        return original(model, inputs, method, target, **kwargs)

    original = runner.attribute
    monkeypatch.setattr(runner, "attribute", counting)
    return calls


def keys(folder):
    return [runner.key(json.loads(line)) for line in (folder / "items.jsonl").read_text().splitlines()]


def run(model, tokenizer, data, out, limit, **options):
    return evaluate(model, tokenizer, data, METHODS, TEXT_TESTS, out_dir=out, batch_size=2, limit=limit, progress=False, **options)


def test_an_interrupted_run_resumes_without_recomputing_or_duplicates(tmp_path, tiny_bert, minilm_tokenizer, reviews, count_attributions):
    out = tmp_path / "run"
    first = run(tiny_bert, minilm_tokenizer, reviews, out, limit=4)
    assert len(count_attributions) == 4  # 2 methods x 2 batches
    assert len(keys(out)) == 16 == len(set(keys(out)))  # 2 methods x 2 tests x 4 items

    lines = (out / "items.jsonl").read_text().splitlines(keepends=True)
    (out / "items.jsonl").write_text("".join(lines[:13]) + '{"method": "rollout", "te')  # killed mid-write
    count_attributions.clear()
    resumed = run(tiny_bert, minilm_tokenizer, reviews, out, limit=4)
    assert count_attributions == [("rollout", 2)]  # only the unfinished batch
    assert sorted(keys(out)) == sorted(set(keys(out))) and len(keys(out)) == 16
    assert resumed.to_json()["rows"] == first.to_json()["rows"]

    count_attributions.clear()
    larger = run(tiny_bert, minilm_tokenizer, reviews, out, limit=6)
    assert count_attributions == [("transformer_attribution", 2), ("rollout", 2)]
    assert len(keys(out)) == 24 == len(set(keys(out)))
    assert larger.notes["perturbation items"] == {"transformer_attribution": 6, "rollout": 6}
    assert larger.value("faithfulness", "sufficiency (AOPC)", "rollout") == larger.rows[-1].values["rollout"]

    fresh = run(tiny_bert, minilm_tokenizer, reviews, tmp_path / "fresh", limit=6)
    # batched otherwise (one window of 6 by length, not 4 + 2): equal up to float rounding of the padding
    for got, want in zip(fresh.to_json()["rows"], larger.to_json()["rows"], strict=True):
        assert got["metric"] == want["metric"] and got["values"] == pytest.approx(want["values"], abs=1e-6)


def test_a_folder_with_other_settings_is_refused(tmp_path, tiny_bert, minilm_tokenizer, reviews):
    run(tiny_bert, minilm_tokenizer, reviews, tmp_path, limit=1)
    with pytest.raises(ValueError, match="other settings .*target.*--restart"):
        run(tiny_bert, minilm_tokenizer, reviews, tmp_path, limit=1, target="true")
    run(tiny_bert, minilm_tokenizer, reviews, tmp_path, limit=1, target="true", restart=True)


def test_tests_that_the_data_cannot_support_are_refused(tmp_path, tiny_bert, minilm_tokenizer, reviews):
    with pytest.raises(ValueError, match="rationale test needs human rationales"):
        evaluate(tiny_bert, minilm_tokenizer, reviews, METHODS, ["rationale"], out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown test 'accuracy'"):
        evaluate(tiny_bert, minilm_tokenizer, reviews, METHODS, ["accuracy"], out_dir=tmp_path, progress=False)


def test_cli_on_eraser_movie_reviews(tmp_path, tiny_bert, minilm_tokenizer, capsys):
    data = require_eraser()
    tiny_bert.save_pretrained(tmp_path / "model")
    minilm_tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    code = main([
        "evaluate", "--model", str(tmp_path / "model"), "--data", str(data), "--format", "eraser", "--split", "val",
        "--methods", ",".join(METHODS), "--tests", "perturbation,rationale,faithfulness", "--out", str(out),
        "--limit", "2", "--batch-size", "2", "--target", "true",
    ])
    assert code == 0, capsys.readouterr().err
    for name in ("results.md", "results.csv", "results.json", "items.jsonl", "perturbation.png", "token_f1.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    rows = {(r["test"], r["metric"]): r for r in results["rows"]}
    assert set(rows[("rationale", "token F1@80")]["values"]) == set(METHODS)
    assert rows[("perturbation", "positive AUC (accuracy)")]["higher_is_better"] is False
    assert rows[("faithfulness", "comprehensiveness (AOPC)")]["higher_is_better"] is True
    assert "2 of 2 texts were truncated" in results["notes"]["truncation"]
    markdown = (out / "results.md").read_text()
    assert "| rationale | token F1@5 | ↑ |" in markdown and "| perturbation | positive AUC (accuracy) | ↓ |" in markdown
    records = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert {r["label"] for r in records} <= {0, 1} and all(r["target_class"] == r["label"] for r in records)
    assert all(r["cut"] > 0 for r in records)  # reviews are longer than 64 tokens


def test_cli_on_an_image_folder_with_masks(tmp_path, tiny_vit, capsys):
    tiny_vit.save_pretrained(tmp_path / "vit")
    data = write_image_folder(tmp_path / "images", count=3, two_objects=2)
    out = tmp_path / "out"
    code = main([
        "evaluate", "--model", str(tmp_path / "vit"), "--data", str(data), "--format", "images",
        "--methods", "transformer_attribution,full_lrp", "--tests", "perturbation,segmentation,faithfulness,specificity",
        "--out", str(out), "--batch-size", "3",
    ])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    rows = {(r["test"], r["metric"]): r["values"] for r in results["rows"]}
    for method in ("transformer_attribution", "full_lrp"):
        assert 0 <= rows[("segmentation", "mIoU (%)")][method] <= 100
        assert 0 <= rows[("segmentation", "pixel accuracy (%)")][method] <= 100
        assert 0 <= rows[("specificity", "share on own object")][method] <= 1
        assert 0 <= rows[("perturbation", "negative AUC (accuracy)")][method] <= 90
    assert results["notes"]["segmentation items"] == {"transformer_attribution": 5, "full_lrp": 5}
    assert (out / "perturbation.png").is_file()

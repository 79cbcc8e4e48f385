"""benchmarks/text_evaluation.py end to end on a tiny model: the split in the report, stores per data set and
split, the default report folder (never the shipped one), a clear hint on a store of another model, and
confidence intervals."""

from __future__ import annotations

import json

import pytest

from tests.scripts import ROOT, load_script

from .conftest import eraser_row, write_eraser
METHODS = "transformer_attribution,rollout"


@pytest.fixture(scope="module")
def text_benchmark():
    return load_script("benchmarks/text_evaluation.py")


@pytest.fixture
def setup(tmp_path, tiny_bert, minilm_tokenizer):
    docs = {f"{label}{i}.txt": f"a {'dull' if label == 'neg' else 'fine'} film , number {i} ." for label in ("neg", "pos") for i in range(3)}
    rows = [eraser_row(d, d[:3].upper(), [(1, 2, docs[d].split()[1])]) for d in docs]
    data = write_eraser(tmp_path / "movies", docs, rows, split="val")
    write_eraser(data, docs, rows[::-1], split="test")
    model = tmp_path / "model"
    tiny_bert.config.id2label, tiny_bert.config.label2id = {0: "NEG", 1: "POS"}, {"NEG": 0, "POS": 1}
    tiny_bert.save_pretrained(model)
    minilm_tokenizer.save_pretrained(model)
    return data, model, tmp_path / "work"


def run(text_benchmark, data, model, work, *extra):
    common = ["--model", str(model), "--data", str(data), "--work", str(work), "--methods", METHODS, "--batch-size", "2", *extra]
    text_benchmark.main(["--phase", "rationale", "--rationale-docs", "4", *common])
    text_benchmark.main(["--phase", "perturbation", "--perturbation-docs", "4", *common])
    text_benchmark.main(["--phase", "report", "--rationale-docs", "4", "--perturbation-docs", "4", "--resamples", "50", *common])


def test_another_split_gets_its_own_stores_and_report(text_benchmark, setup, capsys):
    data, model, work = setup
    run(text_benchmark, data, model, work)
    run(text_benchmark, data, model, work, "--split", "test")  # the same --work: no clash with the val stores
    report = work / "movies-test" / "report" / "text_evaluation.md"
    text = report.read_text()
    assert "on 4 test reviews" in text and "(test, 6 reviews)" in text and "val reviews" not in text
    assert (work / "movies-val" / "report" / "text_evaluation.md").is_file()
    assert not (ROOT / "benchmarks" / "results" / "text_evaluation.md").stat().st_mtime > report.stat().st_mtime  # the shipped one untouched
    result = json.loads((report.parent / "text_evaluation.json").read_text())
    assert result["split"] == "test"
    rows = {(r["test"], r["metric"]): r for r in result["intervals"]}
    comprehensiveness = rows[("faithfulness", "comprehensiveness (AOPC)")]
    for method in METHODS.split(","):
        interval = comprehensiveness["intervals"][method]
        assert interval["n"] == 4 and interval["low"] <= interval["estimate"] <= interval["high"]
    assert "rollout" in comprehensiveness["versus_reference"]
    assert "95 % confidence intervals" in text and "significantly better" in text


def test_a_store_of_another_model_names_the_flags_that_help(text_benchmark, setup, tiny_bert):
    data, model, work = setup
    run(text_benchmark, data, model, work)
    with __import__("torch").no_grad():
        tiny_bert.classifier.bias += 1.0
    tiny_bert.save_pretrained(model)
    with pytest.raises(SystemExit, match="pass another --work folder to keep them, or --restart to discard them") as error:
        text_benchmark.main(["--phase", "rationale", "--rationale-docs", "4", "--model", str(model), "--data", str(data), "--work", str(work),
                        "--methods", METHODS])
    assert "--out" not in str(error.value)

"""benchmarks/rationale_supervision.py end to end on a tiny model: the base model's files untouched,
accuracy against plain forwards, the paired differences, resume without retraining, other settings refused."""

import json

import pytest
import torch

from tests.audit import toy
from tests.finetune.test_rationale import write_eraser
from tests.models import redraw
from tests.scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/rationale_supervision.py")


def test_benchmark_end_to_end(script, tmp_path):
    base = tmp_path / "base"
    model = toy.model()
    redraw(model, 1)  # predictions far from chance: the rationale term is not ~0
    model.save_pretrained(base)
    toy.tokenizer().save_pretrained(base)
    files = {p.name: p.read_bytes() for p in base.iterdir()}
    data = tmp_path / "eraser"
    write_eraser(data)
    (data / "val.jsonl").write_text((data / "train.jsonl").read_text())  # the same two reviews as "val"
    results = tmp_path / "results" / "rs"
    argv = [
        "--model", str(base), "--data", str(data), "--work", str(tmp_path / "work"), "--results", str(results),
        "--seeds", "0,1", "--train-reviews", "2", "--batch-size", "2", "--lr", "1e-2", "--eval-docs", "2",
        "--max-length", "32", "--eval-batch-size", "2", "--train-layers", "1", "--no-bf16",
    ]
    assert script.main(argv) == 0
    assert {p.name: p.read_bytes() for p in base.iterdir()} == files
    report = json.loads(results.with_suffix(".json").read_text())
    assert report["seeds_done"] == [0, 1]

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    texts = [(data / "docs" / name).read_text().strip() for name in ("negR_1.txt", "posR_2.txt")]
    with torch.no_grad():
        predicted = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.argmax(-1)
    assert report["figures"]["base"]["accuracy"] == pytest.approx((predicted == torch.tensor([0, 1])).float().mean().item())
    figures, paired = report["figures"], report["paired_rationale_minus_plain"]
    for metric in ("accuracy", "token_f1_mean", "comprehensiveness"):
        expected = [figures[f"rationale-seed{s}"][metric] - figures[f"plain-seed{s}"][metric] for s in (0, 1)]
        assert paired[metric]["per_seed"] == pytest.approx(expected)
    trained = report["training"]["rationale-seed0"]["last_steps"]
    assert trained["rationale_first"] > 0 and report["training"]["plain-seed0"]["last_steps"]["rationale_first"] == 0
    assert "(c) − (b), paired" in results.with_suffix(".md").read_text()

    stored = {p: p.stat().st_mtime_ns for p in (tmp_path / "work" / "models").iterdir()}
    assert script.main(argv) == 0  # resumes: nothing retrained
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "work" / "models").iterdir()} == stored
    with pytest.raises(SystemExit, match="other settings \\(lr\\)"):
        script.main([*argv[:-1], "--lr", "1e-3", "--no-bf16"])

"""``relevancy audit`` and ``relevancy finetune`` with a causal LM saved to disk: the fine-tuned model
loads with transformers and with ``relevancy explain``; the base folder is not written; clear refusals."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from relevancy.cli.main import main
from tests.finetune import causal_toy as ct

TEMPLATE = "review : {text} sentiment :"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("causal")
    model, tokenizer, rows = ct.shortcut_llama()
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    with (folder / "data.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label", "reference"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"], "reference": r["label"]} for r in rows[:40])
    return folder


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("lora", [False, pytest.param(True, marks=pytest.mark.skipif(
    importlib.util.find_spec("peft") is None, reason="LoRA needs peft"))], ids=["full", "lora"])
def test_finetune_saves_a_model_that_transformers_and_explain_load(saved, tmp_path, capsys, lora):
    base_files = _files(saved / "model")
    out = tmp_path / "tuned"
    code, stdout, stderr = _run(
        capsys, "finetune", saved / "data.csv", "--model", saved / "model", "--out", out, "--prompt-template", TEMPLATE,
        "--answers", "negative,positive", "--words", "zq", "--penalty-mode", "deletion", "--insert-penalised",
        "--steps", 3, "--batch-size", 8, "--learning-rate", 1e-2, "--quiet", *(["--lora", "--lora-rank", 4] if lora else []),
    )
    assert code == 0, stderr
    assert "penalised words: zq" in stdout
    assert _files(saved / "model") == base_files
    record = json.loads((out / "finetune.json").read_text())
    assert record["settings"]["answers"] == [" negative", " positive"] and len(record["history"]) == 3
    assert all(step["penalty"] > 0 for step in record["history"])
    tuned = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(saved / "model").eval()
    ids = torch.tensor([[3, 5, 7, 9]])
    with torch.no_grad():
        assert not torch.allclose(tuned(input_ids=ids).logits, base(input_ids=ids).logits)
    code, stdout, stderr = _run(capsys, "explain", "review : good movie sentiment :", "--model", out, "--format", "html",
                                "--out", tmp_path / "explained")
    assert code == 0, stderr
    assert "answer:" in stdout and list((tmp_path / "explained").glob("*.html"))


def test_audit_of_a_causal_lm_writes_the_report_with_the_template_view(saved, tmp_path, capsys):
    out = tmp_path / "audit"
    code, stdout, stderr = _run(
        capsys, "audit", saved / "data.csv", "--model", saved / "model", "--prompt-template", TEMPLATE,
        "--answers", "negative,positive", "--out", out, "--shortcut-candidates", 3, "--quiet",
    )
    assert code == 0, stderr
    assert "shortcut: zq" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["answers"] == [" negative", " positive"] and report["meta"]["template"] == TEMPLATE
    assert 0 < report["prompt"]["template_share"] < 1
    code, stdout, stderr = _run(
        capsys, "audit", saved / "data.csv", "--model", saved / "model", "--prompt-template", TEMPLATE,
        "--answer-column", "reference", "--out", tmp_path / "qa", "--shortcut-candidates", 2, "--quiet",
    )
    assert code == 0, stderr
    assert json.loads((tmp_path / "qa" / "report.json").read_text())["meta"]["answer_column"] == "reference"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["audit", "--answers", "negative,positive"], "give --prompt-template too"),
        (["audit", "--prompt-template", "no field"], "{text}"),
        (["audit", "--prompt-template", TEMPLATE], "either --answers"),
        (["finetune", "--prompt-template", TEMPLATE, "--answers", "negative,positive", "--words", "zq"], "--penalty-mode deletion"),
        (["finetune", "--words", "zq", "--lora"], "--lora is for causal LMs"),
    ],
)
def test_bad_options_are_refused_with_the_fix(saved, tmp_path, capsys, argv, message):
    command, *rest = argv
    extra = ["--out", tmp_path / "out"]
    code, _, stderr = _run(capsys, command, saved / "data.csv", "--model", saved / "model", *rest, *extra)
    assert code == 2 and message in stderr

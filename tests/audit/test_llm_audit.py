"""The causal-LM audit on tiny seeded GPT-2 / Llama / Qwen2 models: records checked against plain
forwards, the template view, the removal test against re-rendered prompts, resume, QA mode, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from relevancy.audit import AuditSettings
from relevancy.audit.llm import audit_causal
from relevancy.generation import explain_answer
from tests.finetune import causal_toy as ct
from tests.models import assert_unchanged, snapshot

SETTINGS = AuditSettings(shortcut_candidates=3, shortcut_documents=8)


def _log_likelihood(model, tokenizer, prompt: str, answer: str) -> float:
    """Independent of the library: one unpadded forward, the answer tokens' log-probabilities summed."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + answer_ids])).logits[0].double()
    log_probs = torch.log_softmax(logits, -1)
    return sum(float(log_probs[len(prompt_ids) + t - 1, token]) for t, token in enumerate(answer_ids))


@pytest.mark.parametrize("kind", ct.KINDS)
def test_records_match_plain_forwards_and_the_answer_map(kind, tmp_path):
    model, tokenizer = ct.model(kind), ct.tokenizer()
    data = ct.rows(12)
    before = snapshot(model)
    report = audit_causal(model, tokenizer, data, template=ct.TEMPLATE, answers=ct.ANSWERS, out=tmp_path, settings=SETTINGS,
                          progress=False, id_column="id")
    assert_unchanged(model, before)
    records = [json.loads(line) for line in (tmp_path / "documents.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in data]
    for record, row in zip(records, data):
        prompt = ct.TEMPLATE.replace("{text}", row["text"])
        scores = [_log_likelihood(model, tokenizer, prompt, answer) for answer in ct.ANSWERS]
        expected = np.exp(scores) / np.exp(scores).sum()
        np.testing.assert_allclose(record["probabilities"], expected, rtol=1e-4)
        assert record["predicted"] == int(np.argmax(expected)) == record["target"]
        assert record["label"] == (row["label"] == "positive")
        explained = explain_answer(model, tokenizer, prompt, answer=ct.ANSWERS[record["predicted"]])
        np.testing.assert_allclose(record["scores"], explained.summed(), rtol=1e-5, atol=1e-7)
        # template: "review :" before the text, "sentiment :" after it; the last (readout) token is excluded
        words = row["text"].split()
        assert record["template"] == [True, True] + [False] * len(words) + [True, True]
        assert record["excluded"] == [False] * (len(record["tokens"]) - 1) + [True]
        assert [key for key, _ in record["words"]] == words
    view = report.prompt
    shares = []
    for record in records:
        positive = np.clip(record["scores"][:-1], 0, None)
        shares.append(positive[np.array(record["template"][:-1])].sum() / positive.sum())
    assert view["template_share"] == pytest.approx(np.mean(shares))
    assert view["input_share"] == pytest.approx(1 - np.mean(shares))
    assert {t["token"] for t in view["template_tokens"]} == {"review", ":", "sentiment"}
    assert all(not s.special for s in report.words if s.item in set(" ".join(r["text"] for r in data).split()))
    markdown = (tmp_path / "report.md").read_text()
    assert "## Template against input" in markdown and f"{view['template_share']:.1%}" in markdown
    assert json.loads((tmp_path / "report.json").read_text())["prompt"]["template_share"] == pytest.approx(view["template_share"])
    assert "Template against input" in (tmp_path / "report.html").read_text()


def test_the_audit_finds_the_planted_word_and_its_removal_matches_the_prompt_without_it():
    model, tokenizer, _ = ct.shortcut_llama()
    data = ct.rows(60, seed=1)
    settings = AuditSettings(shortcut_candidates=5, shortcut_documents=10)
    report = audit_causal(model, tokenizer, data, template=ct.TEMPLATE, answers=ct.ANSWERS, settings=settings, progress=False)
    assert [f.item for f in report.shortcut_flags()][:1] == ["zq"]
    assert report.by_relevance()[0].item == "zq"
    removal = next(r for r in report.shortcuts if r.item == "zq")
    # the removal test against an independent computation: the text without the word, re-rendered
    drops, flips = [], 0
    for row in [r for r in data if "zq" in r["text"].split()][: settings.shortcut_documents]:
        def probabilities(text):
            scores = [_log_likelihood(model, tokenizer, ct.TEMPLATE.replace("{text}", text), a) for a in ct.ANSWERS]
            return np.exp(scores) / np.exp(scores).sum()

        before = probabilities(row["text"])
        after = probabilities(" ".join(w for w in row["text"].split() if w != "zq"))
        predicted = int(np.argmax(before))
        drops.append(before[predicted] - after[predicted])
        flips += int(np.argmax(after)) != predicted
    assert removal.measured == len(drops)
    assert removal.mean_drop == pytest.approx(np.mean(drops), abs=1e-5)
    assert removal.flips == flips > 0


def test_a_killed_run_resumes_to_the_same_report(tmp_path):
    model, tokenizer = ct.model("llama"), ct.tokenizer()
    data = ct.rows(10)
    options = dict(template=ct.TEMPLATE, answers=ct.ANSWERS, settings=SETTINGS, progress=False)
    whole = audit_causal(model, tokenizer, data, out=tmp_path / "whole", **options)
    records = (tmp_path / "whole" / "documents.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "whole" / "documents.jsonl").write_text("".join(records[:4]) + records[4][:30])  # killed mid-line
    resumed = audit_causal(model, tokenizer, data, out=tmp_path / "whole", **options)
    assert (tmp_path / "whole" / "documents.jsonl").read_text().splitlines()[:4] == [r.rstrip("\n") for r in records[:4]]
    assert [(s.item, s.count) for s in resumed.words] == [(s.item, s.count) for s in whole.words]
    np.testing.assert_allclose([s.mean_share for s in resumed.words], [s.mean_share for s in whole.words], rtol=1e-6)
    assert resumed.prompt["template_share"] == pytest.approx(whole.prompt["template_share"])
    with pytest.raises(ValueError, match="template"):
        audit_causal(model, tokenizer, data, out=tmp_path / "whole", **{**options, "template": "text : {text} label :"})


def test_free_form_answers_from_a_column(tmp_path):
    model, tokenizer = ct.model("qwen2"), ct.tokenizer()
    data = [{"text": r["text"], "reference": " " + r["label"], "label": "ignored"} for r in ct.rows(8)]
    report = audit_causal(model, tokenizer, data, template=ct.TEMPLATE, answer_column="reference", settings=SETTINGS,
                          out=tmp_path, progress=False)
    assert report.meta["labels"] == {0: "answer"} and report.meta["class_documents"] == [8]
    assert report.prompt["documents"] == 8
    records = [json.loads(line) for line in (tmp_path / "documents.jsonl").read_text().splitlines()]
    for record, row in zip(records, data):  # the geometric-mean probability of the reference answer
        prompt = ct.TEMPLATE.replace("{text}", row["text"])
        assert record["answer"] == row["reference"]
        assert record["probabilities"][0] == pytest.approx(math.exp(_log_likelihood(model, tokenizer, prompt, row["reference"])), rel=1e-4)
    assert report.shortcuts and all(0 <= r.flips <= r.measured for r in report.shortcuts)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(template="no field here", answers=ct.ANSWERS), r"\{text\}"),
        (dict(template=ct.TEMPLATE, answers=ct.ANSWERS, answer_column="label"), "either answers"),
        (dict(template=ct.TEMPLATE), "either answers"),
        (dict(template=ct.TEMPLATE, answers=[" same", " same"]), "distinct"),
        (dict(template=ct.TEMPLATE, answers=[" maybe", " yes"]), "not among the model's labels"),
        (dict(template=ct.TEMPLATE, answers=ct.ANSWERS, settings=AuditSettings(max_length=8)), "never truncated"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(options, message):
    with pytest.raises(ValueError, match=message):
        audit_causal(ct.model("llama"), ct.tokenizer(), ct.rows(4), progress=False, **options)


def test_a_classifier_is_sent_to_the_classifier_audit():
    from tests.audit import toy

    with pytest.raises(ValueError, match="decoder-only"):
        audit_causal(toy.model(), toy.tokenizer(), ct.rows(4), template=ct.TEMPLATE, answers=ct.ANSWERS, progress=False)

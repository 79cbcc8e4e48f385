"""The audit end to end: a planted shortcut is found, a killed run resumes, the CLI writes reports."""

import json
import re

import pytest

from relevancy.audit import AuditSettings, audit
from relevancy.cli.main import main
from tests.audit import toy
from tests.models import assert_unchanged, snapshot

FAST = AuditSettings(batch_size=64, shortcut_candidates=8, shortcut_documents=32)


@pytest.fixture(scope="module")
def planted():
    """A tiny BERT trained on sentences where "zq" marks 90 % of the positives."""
    return toy.shortcut_model()


def test_planted_shortcut_is_ranked_first(planted, tmp_path):
    model, tokenizer, rows = planted
    before = snapshot(model)
    report = audit(model, tokenizer, rows, out=tmp_path, settings=FAST, progress=False, id_column="id")
    assert_unchanged(model, before)
    assert report.rank(toy.PLANTED, "shortcut") == 1
    assert report.rank(toy.PLANTED, "relevance") == 1
    top = report.shortcut_flags()[0]
    assert top.shortcut.flips > top.shortcut.measured / 2
    assert all(e[1].startswith("doc") and "«zq»" in e[2] for e in top.evidence)
    planted_stats = next(s for s in report.words if s.item == toy.PLANTED)
    assert planted_stats.associated_class == 1 and planted_stats.top_k_rate > 0.9
    assert top.association.significant and top.association.share == 1.0  # zq is only ever in positives
    assert top.shortcut.class_drops[1] > 0.5 and sum(top.shortcut.class_drops) == pytest.approx(0.0, abs=1e-6)
    assert [f.item for f in report.shortcut_flags()] == [toy.PLANTED]  # the sentiment words are not shortcuts
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["flags"]["shortcut"][0]["item"] == toy.PLANTED
    assert saved["flags"]["shortcut"][0]["association"]["p_adjusted"] < 1e-20
    page = (tmp_path / "report.html").read_text()
    assert re.search(r"<tr id='row-0' class='flagged' data-word='zq'>", page)  # ranked first, flagged
    assert "data-word='zq' data-info='zq: lift" in page  # its point in the plot
    assert re.search(r"<h3 class='w'>zq</h3><p>shortcut candidate: the data ties it to positive: .*?"
                     r"<span class='tok hit' title='zq: ", page)  # its documents, the word outlined
    assert "`" not in page
    assert "| 1 | `zq` |" in (tmp_path / "report.md").read_text()


def test_killed_run_resumes_without_duplicates(planted, tmp_path):
    model, tokenizer, rows = planted
    rows = rows[:40]
    settings = AuditSettings(batch_size=8, shortcut_candidates=0)
    full = audit(model, tokenizer, rows, out=tmp_path / "full", settings=settings, progress=False, id_column="id")
    records = tmp_path / "full" / "documents.jsonl"
    lines = records.read_text().splitlines(keepends=True)
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "meta.json").write_text((tmp_path / "full" / "meta.json").read_text())
    (killed / "documents.jsonl").write_text("".join(lines[:13]) + lines[13][:25])  # died while writing
    resumed = audit(model, tokenizer, rows, out=killed, settings=settings, progress=False, id_column="id")
    ids = [json.loads(line)["id"] for line in (killed / "documents.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    by_item = {s.item: s for s in full.words}
    for s in resumed.words:
        assert s.count == by_item[s.item].count
        assert s.mean_share == pytest.approx(by_item[s.item].mean_share, abs=1e-6)
    with pytest.raises(ValueError, match="other settings.*method"):
        audit(model, tokenizer, rows, out=killed, settings=AuditSettings(method="rollout"), progress=False, id_column="id")


def test_cli_audit(planted, tmp_path, capsys):
    model, tokenizer, rows = planted
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:48]))
    out = tmp_path / "audit"
    code = main([
        "audit", str(data), "--model", str(tmp_path / "model"), "--out", str(out), "--id-column", "id",
        "--batch-size", "16", "--shortcut-candidates", "4", "--quiet",
    ])
    assert code == 0
    assert "shortcut: zq" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"documents.jsonl", "meta.json", "report.json", "report.md", "report.html"}
    (tmp_path / "bad.csv").write_text("text,stars\ngood,5\n")
    assert main(["audit", str(tmp_path / "bad.csv"), "--model", str(tmp_path / "model"), "--out", str(out)]) == 2
    assert "no label column 'label'" in capsys.readouterr().err


def test_shortcut_words_are_always_measured(planted):
    model, tokenizer, rows = planted
    settings = AuditSettings(batch_size=64, shortcut_candidates=0, shortcut_documents=16, shortcut_words=("zq", "blorf"))
    with pytest.warns(UserWarning, match="skipped: blorf"):
        report = audit(model, tokenizer, rows[:48], settings=settings, progress=False, id_column="id")
    assert [r.item for r in report.shortcuts] == ["zq"] and report.shortcuts[0].measured == 16

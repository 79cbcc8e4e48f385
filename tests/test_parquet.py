"""Parquet input for data-set jobs (audit and evaluate read it like JSON lines)."""

from __future__ import annotations

import json

import pytest

from relevancy.audit.data import load_texts
from relevancy.evaluation.data import load_dataset

ROWS = [
    {"text": "a gorgeous, moving film", "label": "positive", "id": "r1"},
    {"text": "", "label": "negative", "id": "r2"},  # no text: skipped and reported
    {"text": "a dull mess", "label": "negative", "id": "r3"},
]


@pytest.fixture()
def files(tmp_path):
    parquet = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    parquet.write_table(pyarrow.Table.from_pylist(ROWS), tmp_path / "data.parquet")
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return tmp_path / "data.parquet", tmp_path / "data.jsonl"


def test_audit_reads_parquet_as_it_reads_json_lines(files):
    parquet, jsonl = files
    from_parquet, from_jsonl = load_texts(parquet, id_column="id"), load_texts(jsonl, id_column="id")
    assert [(t.id, t.text, t.label) for t in from_parquet] == [(t.id, t.text, t.label) for t in from_jsonl]
    assert len(from_parquet) == 2 and len(from_parquet.skipped) == len(from_jsonl.skipped) == 1


def test_evaluate_reads_parquet_as_it_reads_json_lines(files):
    parquet, jsonl = files
    from_parquet, from_jsonl = load_dataset(parquet, "parquet"), load_dataset(jsonl, "jsonl")
    assert [(i.text, i.label) for i in from_parquet.items] == [(i.text, i.label) for i in from_jsonl.items]
    assert [row.where.rsplit(":", 1)[1] for row in from_parquet.skipped] == ["2"]  # the second row

"""Reading labelled texts: files, ERASER folders, HF-like objects, and the errors for bad input."""

import json

import pytest

from relevancy.audit.data import encode_labels, load_texts, parse_label_map

LABELS = {0: "negative", 1: "positive"}


def test_csv_tsv_and_jsonl(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"good, really",positive\nbad,negative\n')
    (tmp_path / "a.tsv").write_text('sentence\tlabel\n"quoted" film \t1\nbad\t0\n')
    (tmp_path / "a.jsonl").write_text(json.dumps({"t": "good", "y": "POS", "key": "x1"}) + "\n")
    csv_data = load_texts(tmp_path / "a.csv")
    assert [(e.id, e.text, e.label) for e in csv_data] == [("row-0", "good, really", "positive"), ("row-1", "bad", "negative")]
    tsv_data = load_texts(tmp_path / "a.tsv", text_column="sentence")
    assert tsv_data.examples[0].text == '"quoted" film ' and tsv_data.examples[0].label == 1
    jsonl = load_texts(tmp_path / "a.jsonl", text_column="t", label_column="y", id_column="key")
    assert jsonl.examples[0].id == "x1"
    assert encode_labels(jsonl, LABELS, parse_label_map("POS=positive")) == [1]
    assert encode_labels(csv_data, LABELS) == [1, 0]


def test_eraser_layout(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "d1.txt").write_text("a truly great film .\nworth it .\n")
    evidence = {"docid": "d1.txt", "start_token": 1, "end_token": 3, "text": "truly great"}
    row = {"annotation_id": "d1.txt", "classification": "POS", "evidences": [[evidence]]}
    (tmp_path / "val.jsonl").write_text(json.dumps(row) + "\n")
    for data in (load_texts(tmp_path), load_texts(tmp_path / "val.jsonl")):
        (example,) = data.examples
        assert example.text == "a truly great film . worth it ."
        (start, end), = example.rationales
        assert example.text[start:end] == "truly great"
        assert data.has_rationales


def test_hf_like_dataset_with_class_names():
    class Feature:
        names = ["negative", "positive"]

    class Dataset(list):
        features = {"label": Feature()}

    data = load_texts(Dataset([{"text": "fine", "label": 1}]))
    assert data.label_names == ["negative", "positive"]
    assert encode_labels(data, LABELS) == [1]


def test_errors_name_the_problem(tmp_path):
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(ValueError, match="no examples"):
        load_texts(tmp_path / "empty.csv")
    (tmp_path / "nolabel.csv").write_text("text,stars\ngood,5\n")
    with pytest.raises(ValueError, match=r"no label column 'label'.*'stars'.*label_column"):
        load_texts(tmp_path / "nolabel.csv")
    with pytest.raises(ValueError, match="no examples"):
        load_texts([])
    with pytest.raises(FileNotFoundError):
        load_texts(tmp_path / "missing.csv")
    unknown = load_texts([{"text": "x", "label": "POS"}, {"text": "y", "label": "NEG"}])
    with pytest.raises(ValueError, match=r"'NEG', 'POS'.*not among the model's labels.*--label-map"):
        encode_labels(unknown, LABELS)
    with pytest.raises(ValueError, match="out of range"):
        encode_labels(load_texts([{"text": "x", "label": 2}]), LABELS)
    with pytest.raises(ValueError, match="more than once"):
        load_texts([{"text": "x", "label": 0, "i": "a"}, {"text": "y", "label": 0, "i": "a"}], id_column="i")

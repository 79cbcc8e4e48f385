"""Reading labelled texts: files, ERASER folders, HF-like objects, and the errors for bad input."""

import json

import pytest

from relevancy.audit.data import encode_labels, load_texts, parse_label_map
from relevancy.data_checks import SkippedRowsWarning

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


def test_rows_without_text_are_skipped_listed_and_counted_by_limit(tmp_path):
    rows = [
        {"text": "good", "label": 1}, {"text": "", "label": 0}, {"text": " \t", "label": 1},
        {"text": None, "label": 0}, {"text": "bad", "label": 0}, {"text": "fine", "label": 1},
    ]
    with pytest.warns(SkippedRowsWarning, match=r"skipped 3 row\(s\) of list object without text: row-1 \(the text is empty\); "
                      r"row-2 .*only whitespace\); row-3 .*NoneType"):
        data = load_texts(rows)
    assert [e.id for e in data] == ["row-0", "row-4", "row-5"]
    assert [(s.id, s.reason) for s in data.skipped] == [
        ("row-1", "the text is empty"), ("row-2", "the text is only whitespace"), ("row-3", "the text is NoneType, not a string"),
    ]
    with pytest.warns(SkippedRowsWarning, match="skipped 3 row"):
        limited = load_texts(rows, limit=2)  # the first two with text; rows after the second are not read
    assert [e.id for e in limited] == ["row-0", "row-4"] and len(limited.skipped) == 3
    with pytest.raises(ValueError, match=r"none of the 2 rows of list object has text to use.*--text-column"):
        load_texts([{"text": "", "label": 0}, {"text": "  ", "label": 1}])


def test_non_utf8_files_name_the_file_the_line_and_the_fix(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"text,label\ngood,1\nthe caf\xe9 was bad,0\n")
    with pytest.raises(ValueError, match=r"a\.csv is not UTF-8 text \(line 3: byte 0xe9 after 'the caf'.*iconv -f WINDOWS-1252 -t UTF-8 .*a\.csv > .*a-utf8\.csv"):
        load_texts(tmp_path / "a.csv")
    (tmp_path / "b.jsonl").write_bytes(b'{"text": "ok", "label": 1}\n{"text": "\xff", "label": 0}\n')
    with pytest.raises(ValueError, match=r"b\.jsonl is not UTF-8 text \(line 2: byte 0xff"):
        load_texts(tmp_path / "b.jsonl")
    (tmp_path / "c.csv").write_bytes("text,label\nbien,1\n".encode("utf-16"))
    with pytest.raises(ValueError, match=r"c\.csv is not UTF-8 text \(it is UTF-16.*iconv -f UTF-16"):
        load_texts(tmp_path / "c.csv")
    (tmp_path / "my data.csv").write_bytes(b"text,label\ncaf\xe9,1\n")
    with pytest.raises(ValueError, match=r"iconv -f WINDOWS-1252 -t UTF-8 '.*my data\.csv' > '.*my data-utf8\.csv'"):
        load_texts(tmp_path / "my data.csv")  # the command can be pasted as it is
    (tmp_path / "d.csv").write_bytes("text,label\ncafé,1\n".encode("utf-8-sig"))  # Excel's "CSV UTF-8"
    assert [(e.text, e.label) for e in load_texts(tmp_path / "d.csv")] == [("café", 1)]


def test_audit_and_evaluation_skip_the_same_rows_for_the_same_reasons(tmp_path):
    from relevancy.evaluation.data import load_text_file

    path = tmp_path / "a.jsonl"
    rows = [{"text": "good", "label": 1}, {"text": "   ", "label": 0}, {"text": 3, "label": 1}, {"text": "", "label": 0}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.warns(SkippedRowsWarning):
        audited = load_texts(path)
    with pytest.warns(SkippedRowsWarning):
        evaluated = load_text_file(path)
    assert [s.reason for s in audited.skipped] == [s.reason for s in evaluated.skipped] == [
        "the text is only whitespace", "the text is int, not a string", "the text is empty",
    ]
    assert [e.text for e in audited] == [i.text for i in evaluated.items] == ["good"]

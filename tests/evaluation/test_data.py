"""Loaders: the real ERASER split, and clear errors naming the file and line on bad data."""

import json

import pytest

from relevancy.data_checks import SkippedRowsWarning
from relevancy.evaluation.data import encode, label_index, load_dataset, load_eraser, load_image_folder, load_text_file

from .conftest import eraser_row, require_eraser, write_eraser, write_image_folder

DOC = "a gripping film . the acting is superb but the plot drags"


# -- ERASER ---------------------------------------------------------------------------------------------
def test_eraser_val_spans_equal_the_document_tokens():
    folder = require_eraser()
    dataset = load_eraser(folder, "val")
    assert len(dataset) == 200
    by_id = {item.id: item for item in dataset.items}
    spans = 0
    for line in (folder / "val.jsonl").read_text().splitlines():
        row = json.loads(line)
        item = by_id[row["annotation_id"]]
        assert item.words == (folder / "docs" / row["annotation_id"]).read_text().split()
        for group in row["evidences"]:
            for span in group:
                assert " ".join(item.words[span["start_token"] : span["end_token"]]) == span["text"]
                assert item.evidence[span["start_token"] : span["end_token"]].all()
                spans += 1
    assert spans > 0
    assert all(item.evidence.any() for item in dataset.items)
    assert {item.label for item in dataset.items} == {"NEG", "POS"}


def test_eraser_reads_any_split_and_docs_with_or_without_txt(tmp_path):
    write_eraser(tmp_path, {"d1.txt": DOC}, [eraser_row("d1", "POS", [(7, 8, "superb")])], split="test")
    dataset = load_eraser(tmp_path, "test")
    assert dataset.items[0].evidence.nonzero()[0].tolist() == [7]
    assert dataset.items[0].text == DOC


def test_eraser_missing_doc_names_the_line(tmp_path):
    write_eraser(tmp_path, {"d1": DOC}, [eraser_row("d1", "POS", []), eraser_row("d2", "NEG", [])])
    with pytest.raises(FileNotFoundError, match=r"val\.jsonl:2 refers to document 'd2'"):
        load_eraser(tmp_path, "val")


def test_eraser_span_out_of_range(tmp_path):
    write_eraser(tmp_path, {"d1": DOC}, [eraser_row("d1", "POS", [(10, 14, "plot drags x y")])])
    with pytest.raises(ValueError, match=r"val\.jsonl:1: evidence span \[10, 14\) is out of range .* 12 tokens"):
        load_eraser(tmp_path, "val")


def test_eraser_span_text_mismatch(tmp_path):
    write_eraser(tmp_path, {"d1": DOC}, [eraser_row("d1", "POS", [(6, 7, "great")])])
    with pytest.raises(ValueError, match="'great' differs from tokens"):
        load_eraser(tmp_path, "val")


def test_eraser_empty_and_missing_split(tmp_path):
    write_eraser(tmp_path, {"d1": DOC}, [])
    with pytest.raises(ValueError, match="has no documents"):
        load_eraser(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="no split 'train'.*splits there: val"):
        load_eraser(tmp_path, "train")


# -- text files --------------------------------------------------------------------------------------------
def test_csv_tsv_jsonl(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"good, really",positive\nbad,0\n')
    (tmp_path / "a.tsv").write_text('sentence\tlabel\n"quoted" fine\t1\n')
    (tmp_path / "a.jsonl").write_text('{"text": "ok", "label": "NEG"}\n\n{"text": "fine", "label": "POS"}\n')
    csv_items = load_dataset(tmp_path / "a.csv", "csv").items
    assert [(i.text, i.label, i.where.rsplit(":", 1)[1]) for i in csv_items] == [("good, really", "positive", "2"), ("bad", "0", "3")]
    assert load_text_file(tmp_path / "a.tsv", text_column="sentence").items[0].text == '"quoted" fine'
    assert [i.where.rsplit(":", 1)[1] for i in load_dataset(tmp_path / "a.jsonl", "jsonl").items] == ["1", "3"]


def test_text_file_errors_name_the_place(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "ok", "label": 1}\n{"txt": "x", "label": 0}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2 has no text column 'text'.*'txt'"):
        load_text_file(tmp_path / "a.jsonl")
    (tmp_path / "b.csv").write_text("text,label\n")
    with pytest.raises(ValueError, match="no rows"):
        load_text_file(tmp_path / "b.csv")
    (tmp_path / "c.jsonl").write_text('{"text": "ok", "label": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"c\.jsonl:2 is not JSON"):
        load_text_file(tmp_path / "c.jsonl")


def test_hf_style_objects_with_class_label_names():
    from relevancy.evaluation.data import from_hf

    class ClassLabel:
        names = ["neg", "pos"]

    class FakeHF(list):
        features = {"label": ClassLabel()}

    dataset = from_hf(FakeHF([{"text": "fine", "label": 1}]))
    assert dataset.items[0].label == "pos" and dataset.items[0].where == "FakeHF object, row 0"


def test_label_index_maps_names_via_the_model_labels():
    labels = {0: "negative", 1: "positive"}
    assert label_index("NEG", labels, "f:1") == 0  # a unique prefix
    assert label_index("Positive", labels, "f:1") == 1
    assert label_index("1", labels, "f:1") == 1
    assert label_index("bad", labels, "f:1", label_map={"bad": 0}) == 0
    with pytest.raises(ValueError, match=r"f:3: label 'meh' is not one of the model's labels .*--label-map meh=INDEX"):
        label_index("meh", labels, "f:3")
    with pytest.raises(ValueError, match="label 7 is not a class"):
        label_index(7, labels, "f:1")


# -- images -------------------------------------------------------------------------------------------------------
def test_image_folder_with_labels_csv_and_class_masks(tmp_path):
    dataset = load_image_folder(write_image_folder(tmp_path / "set", count=2, two_objects=1))
    assert [(item.id, item.label) for item in dataset.items] == [("img0", "0"), ("img1", "1"), ("img2", "2")]
    image, mask, objects = dataset.items[0].load((16, 16))
    assert image.shape == (16, 16, 3) and 0 <= image.min() and image.max() <= 1
    assert mask.shape == (16, 16) and mask.any() and not mask.all()
    _, union, objects = dataset.items[2].load()
    assert sorted(objects) == ["1", "3"] and union.all()
    assert dataset.has_class_masks


def test_image_folder_from_class_folders(tmp_path):
    from PIL import Image

    for name, cls in (("a", "cat"), ("b", "dog")):
        for kind in ("images", "masks"):
            (tmp_path / kind / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB" if kind == "images" else "L", (8, 8)).save(tmp_path / kind / cls / f"{name}.png")
    assert [(i.id, i.label) for i in load_image_folder(tmp_path).items] == [("cat/a", "cat"), ("dog/b", "dog")]


def test_image_mask_size_mismatch_names_both_files(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "x.png")
    Image.new("L", (4, 8)).save(tmp_path / "masks" / "x.png")
    (tmp_path / "labels.csv").write_text("name,label\nx,0\n")
    with pytest.raises(ValueError, match=r"images/x\.png is 8x8 pixels but its mask .*masks/x\.png is 4x8"):
        load_image_folder(tmp_path).items[0].load()
    (tmp_path / "labels.csv").write_text("name,label\ny,0\n")
    with pytest.raises(ValueError, match=r"x\.png has no row in .*labels\.csv"):
        load_image_folder(tmp_path)


# -- tokenisation ------------------------------------------------------------------------------------------------
def test_encode_words_records_what_truncation_cut(tmp_path, minilm_tokenizer):
    write_eraser(tmp_path, {"d1": DOC, "d2": "fine"}, [eraser_row("d1", "POS", []), eraser_row("d2", "NEG", [])])
    items = load_eraser(tmp_path, "val").items
    batch = encode(minilm_tokenizer, items, limit=8)
    assert batch.inputs["input_ids"].shape == (2, 8)
    kept = max(w for w in batch.word_ids[0] if w is not None) + 1
    assert batch.cut == [12 - kept, 0] and kept == 6  # [CLS] + 6 one-piece words + [SEP]
    assert batch.word_ids[1][:3] == [None, 0, None]
    plain = encode(minilm_tokenizer, load_dataset(_csv(tmp_path), "csv").items, limit=4)
    assert plain.word_ids is None and plain.cut == [0, 2]


def _csv(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nok,1\none two three four,0\n")
    return path


def test_rows_without_text_are_skipped_and_named_not_fatal(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\ngood,1\n,0\n   ,1\nbad,0\n")
    with pytest.warns(SkippedRowsWarning, match=r"skipped 2 row\(s\) of .*a\.csv without text: 3 \(.*a\.csv:3: the text is empty\); "
                      r"4 \(.*a\.csv:4: the text is only whitespace\)"):
        dataset = load_text_file(tmp_path / "a.csv")
    assert [item.text for item in dataset.items] == ["good", "bad"]
    assert [s.where.rsplit(":", 1)[1] for s in dataset.skipped] == ["3", "4"]
    assert dataset.head(1).skipped == dataset.skipped
    write_eraser(tmp_path / "eraser", {"d1": DOC, "d2": " \n"}, [
        {"annotation_id": "d1", "classification": "POS", "evidences": []},
        {"annotation_id": "d2", "classification": "NEG", "evidences": []},
    ])
    with pytest.warns(SkippedRowsWarning, match=r"val\.jsonl without text: d2 \(.*val\.jsonl:2: the text is empty\)"):
        eraser = load_eraser(tmp_path / "eraser", "val")
    assert [item.id for item in eraser.items] == ["d1"]


def test_non_utf8_files_name_the_file_the_line_and_the_fix(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"text,label\ngood,1\nthe caf\xe9 was bad,0\n")
    with pytest.raises(ValueError, match=r"a\.csv is not UTF-8 text \(line 3: byte 0xe9 after 'the caf'.*iconv"):
        load_text_file(tmp_path / "a.csv")
    write_eraser(tmp_path / "eraser", {"d1": "caf\xe9"}, [{"annotation_id": "d1", "classification": "POS"}])
    (tmp_path / "eraser" / "docs" / "d1").write_bytes(b"a caf\xe9 .")
    with pytest.raises(ValueError, match=r"d1 is not UTF-8 text \(line 1: byte 0xe9 after 'a caf'"):
        load_eraser(tmp_path / "eraser", "val")

"""``--limit``: a class-balanced seeded subset, not the file's first items (ERASER lists one class first)."""

from __future__ import annotations

import json

import pytest

from relevancy.cli.main import main
from relevancy.evaluation.data import Dataset, TextItem

from .conftest import eraser_row, write_eraser


def labelled(labels) -> Dataset:
    return Dataset([TextItem(f"t{i}", f"text {i}", label, f"file:{i}") for i, label in enumerate(labels)], "text", "file")


def test_each_label_gets_an_equal_share_in_file_order():
    data = labelled(["NEG"] * 6 + ["POS"] * 4)
    subset, said = data.balanced_sample(4, seed=0)
    labels = [item.label for item in subset.items]
    assert labels.count("NEG") == labels.count("POS") == 2
    indices = [int(item.id[1:]) for item in subset.items]
    assert indices == sorted(indices)
    assert said == "a class-balanced random subset (seed 0) of 4 of 10 items: NEG 2, POS 2"


def test_a_small_class_gives_what_it_has_and_the_others_fill_up():
    subset, said = labelled(["a"] * 8 + ["b"] * 2).balanced_sample(6, seed=3)
    assert [item.label for item in subset.items].count("b") == 2
    assert said.endswith("a 4, b 2")


def test_the_seed_decides_which_items_and_repeats():
    data = labelled(["a", "b"] * 20)
    first = [i.id for i in data.balanced_sample(6, seed=1)[0].items]
    assert first == [i.id for i in data.balanced_sample(6, seed=1)[0].items]
    assert first != [i.id for i in data.balanced_sample(6, seed=2)[0].items]


def test_no_limit_or_a_large_one_keeps_everything():
    data = labelled(["a", "b", "b"])
    assert data.balanced_sample(None)[0] is data and data.balanced_sample(5)[1] == "all 3 items"
    with pytest.raises(ValueError, match="at least 1"):
        data.balanced_sample(0)


def test_cli_limit_takes_both_classes_of_a_file_listing_negatives_first(tmp_path, tiny_bert, minilm_tokenizer, capsys):
    docs = {f"{label}{i}.txt": f"a {'dull' if label == 'neg' else 'fine'} film number {i} ." for label in ("neg", "pos") for i in range(4)}
    rows = [eraser_row(docid, docid[:3].upper(), [(1, 2, docs[docid].split()[1])]) for docid in docs]
    data = write_eraser(tmp_path / "eraser", docs, rows, split="test")
    tiny_bert.save_pretrained(tmp_path / "model")
    minilm_tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    code = main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(data), "--format", "eraser", "--split", "test",
                 "--methods", "rollout", "--tests", "perturbation", "--out", str(out), "--limit", "4",
                 "--label-map", "NEG=0,POS=1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "a class-balanced random subset (seed 0) of 4 of 8 items: NEG 2, POS 2" in captured.err
    labels = [json.loads(line)["label"] for line in (out / "items.jsonl").read_text().splitlines()]
    assert sorted(labels) == [0, 0, 1, 1]

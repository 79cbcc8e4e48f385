"""Length-bucketed batching: fewer padded tokens, the same records (up to float rounding), in the
data's order."""

import json
import random

import pytest
import torch

from relevancy import batching
from relevancy.audit import AuditSettings, audit
from relevancy.audit import runner as audit_runner
from relevancy.evaluation import evaluate
from relevancy.evaluation import runner as evaluation_runner
from relevancy.evaluation.data import load_text_file
from tests.audit import toy
from tests.compare import assert_close


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mixed_lengths(count: int = 48) -> list[dict]:
    """Texts of 1 to 3 toy sentences, so that lengths differ much within a batch (all within the toy
    model's 32 positions: none is truncated)."""
    rows = toy.sentences(4 * count, seed=1)
    rng = random.Random(1)
    mixed = []
    for index in range(count):
        parts = rng.sample(rows, rng.randint(1, 3))
        mixed.append({"id": f"m{index}", "text": " ".join(p["text"] for p in parts), "label": parts[0]["label"]})
    return mixed


def test_batches_sort_by_length_within_and_cover_every_position_once():
    lengths = [5, 1, 9, 1, 7, 3, 3, 2]
    groups = batching.batches(lengths, 3)
    assert groups == [[1, 3, 7], [5, 6, 0], [4, 2]]  # shortest first, ties in input order
    assert batching.batches(lengths, 3, bucket=False) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    # padded to each batch's longest: 3x2 + 3x5 + 2x9 against 3x9 + 3x7 + 2x3
    assert batching.padded_tokens(lengths, groups) == 39 < batching.padded_tokens(lengths, batching.batches(lengths, 3, bucket=False)) == 54
    assert [list(r) for r in batching.windows(7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [list(r) for r in batching.windows(4, 0)] == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batching.batches(lengths, 0)


def widths_of_attributions(monkeypatch, module) -> list[tuple[int, int]]:
    """(batch, width) of every input batch ``module`` hands to ``attribute``."""
    shapes = []
    original = module.attribute

    def recording(model, inputs, *args, **kwargs):
        shapes.append(tuple(inputs["input_ids"].shape))
        return original(model, inputs, *args, **kwargs)

    monkeypatch.setattr(module, "attribute", recording)
    return shapes


def test_a_bucketed_audit_writes_the_unbucketed_records_in_the_data_order(tmp_path, monkeypatch):
    model, tokenizer = toy.model(), toy.tokenizer()
    rows = mixed_lengths()
    shapes = widths_of_attributions(monkeypatch, audit_runner)
    runs = {}
    for name, window in (("bucketed", 16), ("in order", 0)):
        shapes.clear()
        settings = AuditSettings(batch_size=4, shortcut_candidates=0, length_window=window)
        audit(model, tokenizer, rows, out=tmp_path / name, settings=settings, progress=False, id_column="id")
        runs[name] = ([json.loads(line) for line in (tmp_path / name / "documents.jsonl").read_text().splitlines()], list(shapes))
    (bucketed, bucketed_shapes), (in_order, in_order_shapes) = runs["bucketed"], runs["in order"]
    assert [r["id"] for r in bucketed] == [r["id"] for r in in_order] == [r["id"] for r in rows]
    assert_close(bucketed, in_order)
    lengths = [len(ids) for ids in tokenizer([r["text"] for r in rows])["input_ids"]]
    assert max(lengths) <= 32 and not any(r["truncated"] for r in bucketed)
    expected = sum(batching.padded_tokens(lengths[s.start : s.stop], batching.batches(lengths[s.start : s.stop], 4)) for s in batching.windows(len(rows), 16))
    assert sum(b * w for b, w in bucketed_shapes) == expected
    assert sum(b * w for b, w in bucketed_shapes) < sum(b * w for b, w in in_order_shapes)


def test_a_bucketed_evaluation_writes_the_unbucketed_items_in_the_data_order(tmp_path, monkeypatch):
    model, tokenizer = toy.model(), toy.tokenizer()
    rows = mixed_lengths(24)
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_text_file(path, id_column="id")
    shapes = widths_of_attributions(monkeypatch, evaluation_runner)
    results = {}
    for name, window in (("bucketed", 12), ("in order", 0)):
        shapes.clear()
        results[name] = evaluate(
            model, tokenizer, dataset, ["transformer_attribution", "rollout"], ["perturbation", "faithfulness"],
            out_dir=tmp_path / name, batch_size=4, length_window=window, progress=False,
        )
        items = [json.loads(line) for line in (tmp_path / name / "items.jsonl").read_text().splitlines()]
        results[name] = (results[name], items, sum(b * w for b, w in shapes))
    (bucketed, bucketed_items, bucketed_tokens), (in_order, in_order_items, in_order_tokens) = results["bucketed"], results["in order"]
    order = [r["id"] for r in rows]
    for items in (bucketed_items, in_order_items):  # per method, item by item in the data's order
        assert [r["id"] for r in items] == [i for _ in range(2) for i in order for _ in range(2)]
    assert_close(bucketed_items, in_order_items)
    assert_close(bucketed.to_json()["rows"], in_order.to_json()["rows"])
    assert bucketed_tokens < in_order_tokens

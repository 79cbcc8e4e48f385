"""The audit's record store: records written elsewhere (Ray actors) go in as bytes, unparsed; the ids
done, the data's order and the report's example records come from its index of lines, not from
parsing the whole file again; a resumed store keeps every id once."""

from __future__ import annotations

import json

import pytest

from relevancy.audit import runner
from relevancy.audit.runner import RECORDS, DocumentStore

META = {"method": "m", "documents": 6}


def record(identifier: str, size: int = 3) -> dict:
    return {"id": identifier, "label": 1, "text": "é " * size, "scores": [0.5] * size}


def serialised(records: list[dict]) -> tuple[list[str], bytes, list[int]]:
    """What an actor sends: ids, the JSON lines as one bytes object, their byte lengths."""
    lines = [(json.dumps(r) + "\n").encode() for r in records]
    return [r["id"] for r in records], b"".join(lines), [len(line) for line in lines]


@pytest.fixture
def parses(monkeypatch):
    """Counts the records the store parses."""
    calls = []
    real = json.loads

    def counting(text, *args, **kwargs):
        calls.append(1)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(runner.json, "loads", counting)
    return calls


def test_serialised_records_are_written_as_a_local_run_writes_them(tmp_path):
    records = [record(f"d{i}", i + 1) for i in range(5)]
    local = DocumentStore(tmp_path / "local", META)
    local.append(records[:2])
    local.append(records[2:])
    remote = DocumentStore(tmp_path / "remote", META)
    remote.append_serialised(*serialised(records[:3]))
    remote.append_serialised(*serialised(records[3:]))
    assert (tmp_path / "remote" / RECORDS).read_bytes() == (tmp_path / "local" / RECORDS).read_bytes()
    assert list(remote) == records


def test_order_done_and_examples_come_from_the_index_without_parsing(tmp_path, parses):
    records = [record(f"d{i}") for i in range(6)]
    store = DocumentStore(tmp_path, META)
    store.append_serialised(*serialised([records[k] for k in (3, 4, 5)]))  # windows arrive as they finish
    store.append_serialised(*serialised([records[k] for k in (0, 1, 2)]))
    store.order_by([r["id"] for r in records])
    assert store.done() == {r["id"] for r in records}
    assert not parses  # nothing read back to order the file or to know what is done
    assert [json.loads(line) for line in (tmp_path / RECORDS).read_text().splitlines()] == records
    parses.clear()
    assert list(store.select({"d4", "d1", "absent"})) == [records[1], records[4]]  # file order
    assert len(parses) == 2  # only the chosen lines


def test_a_resumed_store_keeps_every_id_once_in_the_data_order(tmp_path):
    records = [record(f"d{i}", i + 2) for i in range(6)]
    first = DocumentStore(tmp_path, META)
    first.append_serialised(*serialised([records[k] for k in (2, 0, 1)]))
    path = tmp_path / RECORDS
    path.write_bytes(path.read_bytes() + serialised([records[3]])[1][:20])  # killed while writing d3
    resumed = DocumentStore(tmp_path, META)
    assert resumed.done() == {"d0", "d1", "d2"}
    assert path.read_bytes() == serialised([records[k] for k in (2, 0, 1)])[1]  # the broken line is gone
    resumed.append_serialised(*serialised([records[k] for k in (1, 3, 4, 3)]))  # d1 again (a window re-run), d3 twice
    resumed.append_serialised(*serialised([records[5], records[0]]))
    resumed.order_by([r["id"] for r in records])
    assert path.read_bytes() == serialised(records)[1]
    assert list(DocumentStore(tmp_path, META).select({"d5"})) == [records[5]]  # the rewritten file's index


def test_a_store_in_memory_takes_serialised_records_once():
    records = [record(f"d{i}") for i in range(3)]
    store = DocumentStore(None, META)
    store.append_serialised(*serialised(records[:2]))
    store.append_serialised(*serialised(records[1:]))
    store.order_by(["d2", "d1", "d0"])
    assert list(store) == records[::-1]
    assert list(store.select({"d0"})) == [records[0]]


def test_lengths_that_do_not_match_the_bytes_are_refused(tmp_path):
    ids, data, lengths = serialised([record("d0"), record("d1")])
    store = DocumentStore(tmp_path, META)
    with pytest.raises(ValueError, match="do not match their 2 ids and lengths"):
        store.append_serialised(ids, data, [lengths[0], lengths[1] + 1])
    assert (tmp_path / RECORDS).read_bytes() == b""

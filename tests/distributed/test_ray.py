"""`audit` and `evaluate` on a local Ray cluster: the same records and report as a local run, and
exactly-once results when the driver or an actor is killed half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from relevancy.audit import AuditSettings, audit
from relevancy.cli.main import main
from relevancy.distributed import RayOptions
from tests.audit import toy
from tests.compare import assert_close
from tests.distributed.conftest import processes_of

ROOT = Path(__file__).resolve().parents[2]
KILL_WAIT_SECONDS = 180


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """The toy shortcut model and its tokenizer, saved where a CLI run (and Ray actors) can load them."""
    model, tokenizer, rows = toy.shortcut_model()
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def records(folder: Path, name: str = "documents.jsonl") -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def test_audit_on_ray_writes_the_local_records_and_report(cluster, saved_model, tmp_path, capsys):
    folder, rows = saved_model
    data = rows[:100] + [{"id": "doc-empty", "text": "  ", "label": "positive"}] + rows[100:120]
    path = write_rows(tmp_path / "data.jsonl", data)
    common = ["audit", str(path), "--model", str(folder), "--id-column", "id", "--batch-size", "8",
              "--shortcut-candidates", "4", "--shortcut-documents", "16", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "local")]) == 0
    local_output = capsys.readouterr()
    assert main(common + ["--out", str(tmp_path / "ray"), "--ray", cluster.address, "--ray-actors", "2"]) == 0
    ray_output = capsys.readouterr()
    ours = lambda err: [line for line in err.splitlines() if line.startswith("relevancy audit:")]  # noqa: E731
    assert "doc-empty" in ours(ray_output.err)[0] and ours(ray_output.err) == ours(local_output.err)  # as locally
    assert len(records(tmp_path / "ray")) == 120
    assert_close(records(tmp_path / "ray"), records(tmp_path / "local"))  # the same ids in the same order, too
    assert (tmp_path / "ray" / "report.md").read_text() == (tmp_path / "local" / "report.md").read_text()
    assert ray_output.out.replace(str(tmp_path / "ray"), "OUT") == local_output.out.replace(str(tmp_path / "local"), "OUT")


def test_evaluate_on_ray_writes_the_local_items_and_results(cluster, saved_model, tmp_path, capsys):
    folder, rows = saved_model
    path = write_rows(tmp_path / "data.jsonl", rows[:40])
    common = ["evaluate", "--model", str(folder), "--data", str(path), "--format", "jsonl", "--batch-size", "8",
              "--methods", "transformer_attribution,rollout", "--tests", "perturbation,faithfulness"]
    assert main(common + ["--out", str(tmp_path / "local")]) == 0
    assert main(common + ["--out", str(tmp_path / "ray"), "--ray", cluster.address, "--ray-actors", "2"]) == 0
    capsys.readouterr()
    key = lambda r: (r["method"], r["test"], r["id"])  # noqa: E731
    got = sorted(records(tmp_path / "ray", "items.jsonl"), key=key)
    want = sorted(records(tmp_path / "local", "items.jsonl"), key=key)
    assert len(got) == 2 * 2 * 40
    assert_close(got, want)
    assert (tmp_path / "ray" / "results.md").read_text() == (tmp_path / "local" / "results.md").read_text()


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def test_a_driver_killed_half_way_resumes_with_every_document_once(cluster, saved_model, tmp_path):
    folder, rows = saved_model
    data = rows[:200]  # 4 windows of 50 for the one actor, each document its own batch: seconds apart
    path = write_rows(tmp_path / "data.jsonl", data)
    out = tmp_path / "audit"
    command = [sys.executable, "-m", "relevancy.cli.main", "audit", str(path), "--model", str(folder), "--id-column", "id",
               "--out", str(out), "--batch-size", "1", "--shortcut-candidates", "0", "--quiet",
               "--ray", cluster.address, "--ray-actors", "1"]
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(lambda: _lines(out / "documents.jsonl") > 0 or driver.poll() is not None, "the first records")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    written = _lines(out / "documents.jsonl")
    assert 0 < written < len(data), f"not killed half-way ({written} of {len(data)} written); stderr: {driver.stderr.read()[-2000:]}"
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=KILL_WAIT_SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = [r["id"] for r in records(out)]
    assert ids == [row["id"] for row in data]  # each once, in the data's order


def test_an_actor_killed_mid_batch_loses_and_duplicates_nothing(cluster, saved_model, tmp_path):
    model, tokenizer, rows = toy.shortcut_model()
    data = rows[:200]  # 8 windows of 25, each document its own batch
    out = tmp_path / "audit"
    killed: list[tuple[int, int]] = []  # (pid, documents stored when it was killed)

    earlier = set(processes_of(cluster.session, "AuditActor"))  # an earlier job's actors, perhaps still exiting

    def kill_one_actor_once_work_is_under_way() -> None:
        _wait_for(lambda: _lines(out / "documents.jsonl") > 0, "the first records")
        actors = [pid for pid in processes_of(cluster.session, "AuditActor") if pid not in earlier]
        if actors:
            os.kill(actors[0], signal.SIGKILL)
            killed.append((actors[0], _lines(out / "documents.jsonl")))

    killer = threading.Thread(target=kill_one_actor_once_work_is_under_way, daemon=True)
    killer.start()
    settings = AuditSettings(batch_size=1, shortcut_candidates=0)
    audit(model, tokenizer, data, out=out, settings=settings, progress=False, id_column="id",
          ray=RayOptions(address=cluster.address, actors=2))
    killer.join(timeout=5)
    assert killed, "no actor process was found to kill"
    assert killed[0][1] < len(data), "the actor was killed after the job had finished"
    ids = [r["id"] for r in records(out)]
    assert ids == [row["id"] for row in data]


def test_ray_is_not_imported_without_ray(saved_model, tmp_path):
    folder, rows = saved_model
    path = write_rows(tmp_path / "data.jsonl", rows[:12])
    script = f"""
import sys
from relevancy.cli.main import main
assert main(["audit", {str(path)!r}, "--model", {str(folder)!r}, "--out", {str(tmp_path / 'audit')!r},
             "--shortcut-candidates", "0", "--quiet"]) == 0
assert main(["evaluate", "--model", {str(folder)!r}, "--data", {str(path)!r}, "--format", "jsonl",
             "--out", {str(tmp_path / 'eval')!r}, "--methods", "rollout"]) == 0
assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")], "ray was imported"
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ray_options_without_ray_are_refused(saved_model, tmp_path, capsys):
    folder, rows = saved_model
    path = write_rows(tmp_path / "data.jsonl", rows[:4])
    assert main(["audit", str(path), "--model", str(folder), "--ray-gpus", "1", "--out", str(tmp_path)]) == 2
    assert "--ray-gpus and --ray-actors apply to Ray runs: add --ray" in capsys.readouterr().err
    with pytest.raises(ValueError, match="actors must be >= 1"):
        RayOptions(actors=0)
    with pytest.raises(TypeError, match="ray= takes True"):
        RayOptions.parse(3)


def test_gpus_asked_of_a_cluster_without_them_are_refused(cluster, saved_model, tmp_path):
    model, tokenizer, rows = toy.shortcut_model()
    with pytest.raises(ValueError, match="the Ray cluster has 0 GPUs, fewer than the 1 asked per actor; drop --ray-gpus"):
        audit(model, tokenizer, rows[:8], out=tmp_path, progress=False, id_column="id",
              ray=RayOptions(address=cluster.address, gpus_per_actor=1))

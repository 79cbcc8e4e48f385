"""``relevancy serve`` on the command line: it serves a model named at start-up on 127.0.0.1, warns
when asked to listen elsewhere, and refuses folders that are not audit or evaluation outputs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from relevancy.cli.main import main
from tests.audit import toy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny text classifier saved as a local model folder, as a user's --model would be."""
    folder = tmp_path_factory.mktemp("tiny-classifier")
    toy.model().save_pretrained(folder)
    toy.tokenizer().save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_starts_on_localhost_with_the_model_given(tiny_model_dir):
    port = free_port()
    command = [sys.executable, "-m", "relevancy.cli.main", "serve", "--model", str(tiny_model_dir), "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                config = httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=5).json()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "relevancy serve did not answer within 120 s"
                time.sleep(0.3)
        assert [(m["name"], m["kind"], m["labels"]) for m in config["models"]] == [
            (str(tiny_model_dir), "text", ["negative", "positive"])]
        answer = httpx.post(f"http://127.0.0.1:{port}/api/explain/text", timeout=60,
                            json={"model": str(tiny_model_dir), "text": "a good film", "methods": ["rollout"]})
        assert answer.status_code == 200 and answer.json()["results"][0]["method"] == "rollout"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out
    assert "warning" not in err


def test_another_host_is_served_only_with_a_warning(tiny_model_dir, monkeypatch, capsys):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))  # start nothing
    assert main(["serve", "--model", str(tiny_model_dir), "--host", "0.0.0.0", "--port", "9999"]) == 0
    assert calls == [{"host": "0.0.0.0", "port": 9999, "log_level": "warning"}]
    assert "warning: listening on 0.0.0.0: other machines can reach the explorer" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_model_dir)]) == 0
    assert calls[-1]["host"] == "127.0.0.1" and "warning" not in capsys.readouterr().err


def test_a_folder_that_is_no_audit_is_refused_before_any_model_loads(tmp_path, capsys):
    assert main(["serve", "--model", "no-such-model", "--audit", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not an audit folder (report.json, documents.jsonl missing)" in err and "no-such-model" not in err
    assert main(["serve", "--model", "no-such-model", "--evaluation", str(tmp_path)]) == 2
    assert "not an evaluation folder (no results.json)" in capsys.readouterr().err

"""A Ray cluster of this machine for the distributed tests: `ray start --head` in its own session,
started once for the package and stopped by killing that session's processes only. Token
authentication is off for it (it is a throwaway cluster; drivers started here inherit the setting)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.threads import one_thread  # noqa: F401  (autouse, package scope: one torch thread in the driver)

STARTUP_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session_of(pid: int) -> int | None:
    """The session id of a process (field 6 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])


def processes_of(session: int, name: str) -> list[int]:
    """PIDs of this cluster's processes whose command line contains ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and session_of(int(entry.name)) == session:
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if name in command:
                found.append(int(entry.name))
    return found


class Cluster:
    def __init__(self, address: str, session: int) -> None:
        self.address, self.session = address, session


@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    """A 2-CPU Ray head (no dashboard), its address and session."""
    pytest.importorskip("ray", reason="the Ray tests need Ray Data: pip install -e '.[ray]' (scripts/install.sh)")
    port = _free_port()
    log = tmp_path_factory.mktemp("ray") / "head.log"
    settings = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with log.open("w") as output:
        head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
             "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false"],
            stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start within {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Cluster(f"127.0.0.1:{port}", head.pid)
    finally:
        for pid in processes_of(head.pid, ""):  # a graceful `ray stop` takes half a minute here
            os.kill(pid, signal.SIGKILL)
        head.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

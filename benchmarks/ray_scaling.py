"""Scaling of `relevancy audit` on Ray: the local run, Ray with 1 actor and Ray with 2 actors, on the
same job (the first ``--documents`` SST-2 dev phrases, default model, 1 torch thread per process).

The script starts a Ray head on this machine (`ray start --head --block`, ``--cpus`` CPUs, token
authentication off: a throwaway cluster, without the dashboard, log monitor, usage reports and
metrics collection, which would take CPU time from the actors), runs a small warm-up job (so that
the 1- and 2-actor runs both find Ray Data imported and its helper actors up), runs the three jobs
one after another and stops the head by killing its session's processes. Every run uses the same windows (``--window`` documents, sorted
by length), so all three compute the same batches. Reported per run:
- end to end: documents / wall time of ``audit()`` (Ray: connecting, shipping the model, starting
  the actors and the report included);
- steady state: documents stored after the first window arrived / time from then to the last one
  (the rate once the actors are up: what a long job sees);
- CPU seconds of the driver and of all the cluster's processes during the run (per document: the
  work, which a busy machine changes far less than the wall time), split into the driver, the job's
  actors and Ray's own processes (by process in the .json).
Scaling efficiency = 2-actor rate / (2 x 1-actor rate), for both.

Usage:
    python benchmarks/ray_scaling.py                     # 2,000 documents, 2 CPUs
    python benchmarks/ray_scaling.py --documents 800
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relevancy import __version__  # noqa: E402
from relevancy.adapters.loading import load  # noqa: E402
from relevancy.audit import AuditSettings, audit  # noqa: E402
from relevancy.distributed import RayOptions  # noqa: E402

SST2 = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
RESULTS = ROOT / "benchmarks" / "results"


def phrases(count: int) -> list[dict]:
    with SST2.open(encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [{"id": f"dev-{i}", "text": r["sentence"], "label": int(r["label"])} for i, r in zip(range(count), rows)]


TICKS = os.sysconf("SC_CLK_TCK")
# the poller shares the cores with the job: it looks for new processes of the cluster (a scan of /proc)
# and reads their CPU times now and then, the records file (only its new bytes) often
RESCAN_SECONDS = 2.0
SAMPLE_SECONDS = 0.25


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_pids(session: int | None) -> dict[int, str]:
    """PIDs of every process in ``session`` (the Ray cluster), with a short name: "actor" for the
    job's actors, else the Ray actor's class (Ray Data's helpers) or the daemon's program."""
    found = {}
    if session is None:
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[3]) == session:
                try:
                    found[int(entry.name)] = process_name((entry / "cmdline").read_bytes())
                except OSError:
                    continue
    return found


def process_name(command: bytes) -> str:
    arguments = [a.decode(errors="replace") for a in command.split(b"\0") if a]
    if not arguments:
        return "?"
    if arguments[0].startswith("ray::"):  # a Ray worker: its title names the actor
        return "actor" if "AuditActor" in arguments[0] else arguments[0].split()[0].split("(")[0].split(".")[0]
    scripts = [a for a in arguments[1:] if a.endswith(".py") or a.startswith("ray.")]
    return Path(scripts[0] if scripts else arguments[0]).name


def cpu_of(pids) -> dict[int, float]:
    """CPU seconds (user + system) of the ``pids`` still alive."""
    found = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            found[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


class Arrivals:
    """Polls the records file: (seconds since start, documents stored), to find the steady-state rate;
    and the CPU time of the cluster's processes (actors are gone when the job ends: the last value
    seen counts), to find the CPU cost per document whatever else runs on the machine. The poller
    reads only the bytes appended since its last look, and its own CPU time is not counted."""

    def __init__(self, path: Path, session: int | None) -> None:
        self.path, self.session, self.points, self.stopped = path, session, [], threading.Event()
        self.kinds = session_pids(session)
        self.cpu_before = cpu_of(self.kinds)
        self.cpu_last = dict(self.cpu_before)
        self.poller_cpu = 0.0
        self.driver_before = time.process_time()
        self.start = time.perf_counter()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        count, read, rescanned, sampled = 0, 0, time.monotonic(), time.monotonic()
        while not self.stopped.is_set():
            size = self.path.stat().st_size if self.path.exists() else 0
            if size > read:
                with self.path.open("rb") as handle:
                    handle.seek(read)
                    fresh = handle.read(size - read)
                read += len(fresh)
                if fresh.count(b"\n"):
                    count += fresh.count(b"\n")
                    self.points.append((time.perf_counter() - self.start, count))
            now = time.monotonic()
            if now - rescanned > RESCAN_SECONDS:
                self._rescan()
                rescanned = now
            if now - sampled > SAMPLE_SECONDS:
                self.cpu_last.update(cpu_of(self.kinds))
                sampled = now
            self.poller_cpu = time.thread_time()
            time.sleep(0.05)
        self.cpu_last.update(cpu_of(self.kinds))

    def _rescan(self) -> None:
        """New processes, and new names of known ones (an idle Ray worker becomes an actor); an exiting
        process shows an empty command line, and keeps the name it had."""
        for pid, name in session_pids(self.session).items():
            if name != "?" or pid not in self.kinds:
                self.kinds[pid] = name

    def stop(self) -> tuple[float | None, dict[str, float]]:
        """(steady-state documents/s, CPU seconds during the run of the driver, the actors and each
        other kind of process of the cluster)."""
        self.stopped.set()
        self.thread.join()
        cpu = {"driver": time.process_time() - self.driver_before - self.poller_cpu, "actor": 0.0}
        for pid, value in self.cpu_last.items():
            name = self.kinds[pid]
            cpu[name] = cpu.get(name, 0.0) + value - self.cpu_before.get(pid, 0.0)
        if len(self.points) < 2:
            return None, cpu
        (t0, n0), (t1, n1) = self.points[0], self.points[-1]
        return (n1 - n0) / (t1 - t0), cpu


def run(name, model, tokenizer, rows, settings, ray, session=None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        arrivals = Arrivals(Path(out) / "documents.jsonl", session)
        start = time.perf_counter()
        audit(model, tokenizer, rows, out=out, settings=settings, progress=False, resume=False, id_column="id", ray=ray)
        seconds = time.perf_counter() - start
        steady, cpu = arrivals.stop()
    result = {"run": name, "documents": len(rows), "seconds": seconds, "end_to_end": len(rows) / seconds,
              "steady": steady, "arrivals": len(arrivals.points), "cpu_seconds": sum(cpu.values()),
              "driver_cpu_seconds": cpu.pop("driver"), "actor_cpu_seconds": cpu.pop("actor"),
              "ray_cpu_seconds": sum(cpu.values()), "ray_cpu_seconds_by_process": {k: round(v, 2) for k, v in sorted(cpu.items())}}
    print(json.dumps(result), flush=True)
    return result


# a cluster for this job only: no dashboard, no log monitor (the driver does not show the actors'
# logs), no usage reports, no metrics collection; each takes CPU time from the actors on 2 cores
LEAN_HEAD = ["--include-dashboard=false", "--include-log-monitor=false", "--disable-usage-stats"]
LEAN_ENVIRONMENT = {"RAY_enable_metrics_collection": "0"}
WARM_UP_DOCUMENTS = 20


def start_head(cpus: int, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with log.open("w") as output:
        head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}", "--num-gpus=0",
             *LEAN_HEAD],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **LEAN_ENVIRONMENT},
        )
    deadline = time.monotonic() + 180
    while "Ray runtime started" not in log.read_text():
        if head.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Ray head did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return head, f"127.0.0.1:{port}"


def warm_up(model, tokenizer, rows, settings, address: str) -> None:
    """A small job before the measured ones, so that both start alike: the driver has imported Ray
    Data, and Ray Data's helper actors (stats, autoscaling coordinator, actor locations), started by
    a cluster's first job and kept for the next ones, are up."""
    with tempfile.TemporaryDirectory() as out:
        audit(model, tokenizer, rows[:WARM_UP_DOCUMENTS], out=out, settings=settings, progress=False, resume=False,
              id_column="id", ray=RayOptions(address=address, actors=1))


def stop_head(head: subprocess.Popen) -> None:
    """Kills the processes of the head's session (the cluster this script started), by PID."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
            except (OSError, ValueError, IndexError):
                continue
            if session == head.pid:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    head.wait()


def report(results, arguments, started, seconds, load_before, load_after, cpus, window) -> str:
    by = {r["run"]: r for r in results}
    lines = [
        "# `relevancy audit` on Ray: scaling on one machine", "",
        f"- command: `python benchmarks/ray_scaling.py {' '.join(arguments)}`",
        f"- date: {started} UTC (run took {seconds / 60:.1f} min)",
        f"- relevancy {__version__}, torch {torch.__version__}, Ray {_ray_version()}, Python {platform.python_version()}; "
        f"CPU: {os.cpu_count()} logical cores; Ray head with {cpus} CPUs (`ray start --head {' '.join(LEAN_HEAD)}`, "
        f"{', '.join(f'{k}={v}' for k, v in LEAN_ENVIRONMENT.items())}); 1 torch thread in the local run and in each actor; "
        f"a {WARM_UP_DOCUMENTS}-document Ray job before the measured runs, so that both find Ray Data imported and its "
        "helper actors up",
        f"- job: the first {results[0]['documents']} SST-2 dev phrases, default model, transformer_attribution, "
        f"batch 16, windows of {window} documents sorted by length (the same batches in every run), shortcut tests off",
        f"- load average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{' / '.join(f'{x:.2f}' for x in load_after)}. On a machine shared with other jobs the actors compete "
        "with them for the 2 cores, so these rates carry noise; re-run on an idle machine for the target (>= 0.8).",
        f"- kernel autogroup scheduling: {_autogroup()}. With it on, a busy machine shares its cores between sessions, "
        "and the Ray cluster (started in a session of its own) gets one session's share however many actors it runs: "
        "under load the second actor then adds no CPU time, and wall-clock scaling cannot show",
        "",
        "| run | wall s | end-to-end docs/s | steady-state docs/s | CPU s | CPU ms per doc | driver | actors | Ray's own |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        per_doc = lambda seconds: f"{1000 * seconds / r['documents']:.1f}"  # noqa: E731
        lines.append(f"| {r['run']} | {r['seconds']:.1f} | {r['end_to_end']:.2f} | {_fmt(r['steady'])} | "
                     f"{r['cpu_seconds']:.1f} | {per_doc(r['cpu_seconds'])} | {per_doc(r['driver_cpu_seconds'])} | "
                     f"{per_doc(r['actor_cpu_seconds'])} | {per_doc(r['ray_cpu_seconds'])} |")
    lines += ["", "CPU s: CPU time of the driver plus, for Ray, every process of the cluster during the run: the cost "
              "per document, which other jobs on the machine do not change much. The last three columns split the CPU "
              "ms per document: the driver (the process running `audit()`: reading the data, Ray Data's scheduling, "
              "storing the records, the report), the job's actors, and Ray's own processes (raylet, GCS, agents, "
              "Ray Data's helper actors; by process in the .json)."]
    one, two = by.get("Ray, 1 actor"), by.get("Ray, 2 actors")
    if one and two:
        lines.append("")
        for kind, label in (("end_to_end", "end to end"), ("steady", "steady state")):
            if one[kind] and two[kind]:
                lines.append(f"- scaling efficiency, {label}: {two[kind]:.2f} / (2 × {one[kind]:.2f}) = {two[kind] / (2 * one[kind]):.2f}")
        cpu_ratio = two["cpu_seconds"] / one["cpu_seconds"]
        lines.append(f"- CPU per document, 2 actors over 1 actor: {cpu_ratio:.2f} (1.00: the second actor adds no work, "
                     f"only parallelism); the efficiency this allows where both actors get a core of their own: "
                     f"1 / {cpu_ratio:.2f} = {1 / cpu_ratio:.2f}")
        local = by.get("local")
        if local:
            lines.append(f"- CPU per document, Ray 1 actor over local: {one['cpu_seconds'] / local['cpu_seconds']:.2f}")
            lines.append(f"- wall time: local {local['seconds']:.0f} s, Ray 1 actor {one['seconds']:.0f} s, of which Ray spends "
                         "some on connecting, shipping the model and starting actors that import torch")
    return "\n".join(lines) + "\n"


def _autogroup() -> str:
    try:
        return {"1": "on", "0": "off"}.get(Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip(), "unknown")
    except OSError:
        return "unknown"


def _fmt(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _ray_version() -> str:
    import ray

    return ray.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray head")
    parser.add_argument("--window", type=int, default=250, help="documents sorted together (also each Ray task)")
    parser.add_argument("--output", type=Path, default=RESULTS / "ray_scaling.md")
    args = parser.parse_args()
    os.environ.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"})
    torch.set_num_threads(1)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load_before, clock = os.getloadavg(), time.perf_counter()
    model, tokenizer = load("default")
    rows = phrases(args.documents)
    settings = AuditSettings(batch_size=16, shortcut_candidates=0, length_window=args.window)
    results = [run("local", model, tokenizer, rows, settings, None)]
    with tempfile.TemporaryDirectory() as scratch:
        head, address = start_head(args.cpus, Path(scratch) / "head.log")
        try:
            warm_up(model, tokenizer, rows, settings, address)
            for actors in (1, 2):
                name = f"Ray, {actors} actor" + ("s" if actors > 1 else "")
                results.append(run(name, model, tokenizer, rows, settings, RayOptions(address=address, actors=actors), head.pid))
        finally:
            stop_head(head)
    text = report(results, sys.argv[1:], started, time.perf_counter() - clock, load_before, os.getloadavg(), args.cpus, args.window)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    saved = {"results": results, "arguments": sys.argv[1:], "started": started, "seconds": time.perf_counter() - clock,
             "load_before": load_before, "load_after": os.getloadavg(), "cpus": args.cpus, "window": args.window}
    args.output.with_suffix(".json").write_text(json.dumps(saved, indent=2))
    print(text)


if __name__ == "__main__":
    main()

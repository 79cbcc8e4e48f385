"""Scaling of `relevancy audit` on Ray: the local run, Ray with 1 actor and Ray with 2 actors, on the
same job (the first ``--documents`` SST-2 dev phrases, default model, 1 torch thread per process).

The script starts a Ray head on this machine (`ray start --head --block`, ``--cpus`` CPUs, token
authentication off: a throwaway cluster), runs the three jobs one after another and stops the head
by killing its session's processes. Every run uses the same windows (``--window`` documents, sorted
by length), so all three compute the same batches. Reported per run:
- end to end: documents / wall time of ``audit()`` (Ray: connecting, shipping the model, starting
  the actors and the report included);
- steady state: documents stored after the first window arrived / time from then to the last one
  (the rate once the actors are up: what a long job sees);
- CPU seconds of the driver and of all the cluster's processes during the run (per document: the
  work, which a busy machine changes far less than the wall time).
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


def session_cpu(session: int | None) -> dict[int, float]:
    """CPU seconds (user + system) of every process in ``session`` (the Ray cluster), by PID."""
    found = {}
    if session is None:
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == session:
                found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


class Arrivals:
    """Polls the records file: (seconds since start, documents stored), to find the steady-state rate;
    and the CPU time of the cluster's processes (actors are gone when the job ends: the last value
    seen counts), to find the CPU cost per document whatever else runs on the machine."""

    def __init__(self, path: Path, session: int | None) -> None:
        self.path, self.session, self.points, self.stopped = path, session, [], threading.Event()
        self.cpu_before = session_cpu(session)
        self.cpu_last = dict(self.cpu_before)
        self.driver_before = time.process_time()
        self.start = time.perf_counter()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        last = 0
        while not self.stopped.is_set():
            count = self.path.read_bytes().count(b"\n") if self.path.exists() else 0
            if count != last:
                self.points.append((time.perf_counter() - self.start, count))
                last = count
            self.cpu_last.update(session_cpu(self.session))
            time.sleep(0.05)

    def stop(self) -> tuple[float | None, float]:
        """(steady-state documents/s, CPU seconds of the driver and the cluster during the run)."""
        self.stopped.set()
        self.thread.join()
        cpu = time.process_time() - self.driver_before
        cpu += sum(value - self.cpu_before.get(pid, 0.0) for pid, value in self.cpu_last.items())
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
              "steady": steady, "arrivals": len(arrivals.points), "cpu_seconds": cpu}
    print(json.dumps(result), flush=True)
    return result


def start_head(cpus: int, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with log.open("w") as output:
        head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}", "--num-gpus=0",
             "--include-dashboard=false"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while "Ray runtime started" not in log.read_text():
        if head.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Ray head did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return head, f"127.0.0.1:{port}"


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
        f"CPU: {os.cpu_count()} logical cores; Ray head with {cpus} CPUs; 1 torch thread in the local run and in each actor",
        f"- job: the first {results[0]['documents']} SST-2 dev phrases, default model, transformer_attribution, "
        f"batch 16, windows of {window} documents sorted by length (the same batches in every run), shortcut tests off",
        f"- load average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{' / '.join(f'{x:.2f}' for x in load_after)}. On a machine shared with other jobs the actors compete "
        "with them for the 2 cores, so these rates carry noise; re-run on an idle machine for the target (>= 0.8).",
        f"- kernel autogroup scheduling: {_autogroup()}. With it on, a busy machine shares its cores between sessions, "
        "and the Ray cluster (started in a session of its own) gets one session's share however many actors it runs: "
        "under load the second actor then adds no CPU time, and wall-clock scaling cannot show",
        "",
        "| run | wall s | end-to-end docs/s | steady-state docs/s | CPU s | CPU ms per doc |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['run']} | {r['seconds']:.1f} | {r['end_to_end']:.2f} | {_fmt(r['steady'])} | "
                     f"{r['cpu_seconds']:.1f} | {1000 * r['cpu_seconds'] / r['documents']:.1f} |")
    lines += ["", "CPU s: CPU time of the driver plus, for Ray, every process of the cluster (actors, raylet, GCS) "
              "during the run: the cost per document, which other jobs on the machine do not change much."]
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

"""Cost of relevancy's methods relative to one training step's forward+backward, on CPU.

Models: ViT-B/16 (224x224, 1000 labels) and BERT-base (512 tokens, 2 labels), seeded random
weights, SDPA attention. For every (model, batch size, call) a fresh subprocess builds the model,
runs the call once (warm-up; its ru_maxrss minus ru_maxrss after model creation is the call's
working memory), then times ``--repeats`` runs (median). Timings are noisy on a shared machine:
``--threads 1`` avoids a 2-thread pool stalling when another job holds one of the cores.

Usage:
    python benchmarks/engine_benchmark.py                       # full grid, writes results/engine_benchmark.md
    python benchmarks/engine_benchmark.py --models bert --batch-sizes 1 --repeats 5
    python benchmarks/engine_benchmark.py --integrated-gradients
    python benchmarks/engine_benchmark.py --repeats 3 1 --large-batch-methods transformer_attribution
    python benchmarks/engine_benchmark.py --profile bert:1:transformer_attribution
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

import relevancy

BASELINES = ("forward", "forward_backward")
DEFAULT_EXCLUDED = ("integrated_gradients",)  # 20 forward+gradient passes by construction
RESULTS = Path(__file__).resolve().parent / "results" / "engine_benchmark.md"
SEQUENCE_LENGTH = 512
IMAGE_SIZE = 224

# The floor for transformer_attribution, in units of one forward: forward (1) + gradient pass to the
# input without parameter gradients (1) + relevance pass (3 matrix products per linear layer: the
# alpha=1, beta=0 rule takes Z from the forward's own product plus |x||W|^T, and needs S W+ and S W-),
# over forward+backward with parameter gradients (1 + 2). The floor counted 4 products (2.0).
# Matrix products were 81 % of transformer_attribution's time in a profile (ViT-B b4), so the
# element-wise work adds about 10 %.
FLOOR_LINEAR = (1 + 1 + 3) / 3
FLOOR_WITH_REST = 1.85

TARGETS = {  # name: (description, limit)
    "time_ta": ("transformer_attribution time <= 2.5x fwd+bwd", 2.5),
    "time_gxa": ("gradient_x_attention time <= 1.15x fwd+bwd", 1.15),
    "per_item": ("transformer_attribution per-item time <= 0.6x smallest batch's", 0.6),
    "mem_ta": ("transformer_attribution peak memory <= 1.3x fwd+bwd's", 1.3),
}


# -- models and inputs ------------------------------------------------------------------------------
def build_model(name: str) -> torch.nn.Module:
    """A seeded, randomly initialised ViT-B/16 or BERT-base classifier in eval mode with SDPA."""
    torch.manual_seed(0)
    if name == "vit":
        config = transformers.ViTConfig(
            image_size=IMAGE_SIZE, patch_size=16, hidden_size=768, num_hidden_layers=12,
            num_attention_heads=12, intermediate_size=3072, num_labels=1000, attn_implementation="sdpa",
        )
        model = transformers.ViTForImageClassification(config)
    elif name == "bert":
        config = transformers.BertConfig(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            max_position_embeddings=512, num_labels=2, attn_implementation="sdpa",
        )
        model = transformers.BertForSequenceClassification(config)
    else:
        raise ValueError(f"unknown model {name!r} (vit, bert)")
    return model.eval()


def build_inputs(name: str, batch: int) -> tuple[dict, torch.Tensor]:
    """Seeded model inputs of ``batch`` items and random class labels for the training loss."""
    generator = torch.Generator().manual_seed(1)
    if name == "vit":
        inputs = {"pixel_values": torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)}
        labels = torch.randint(0, 1000, (batch,), generator=generator)
    else:
        ids = torch.randint(1000, 30000, (batch, SEQUENCE_LENGTH), generator=generator)
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        labels = torch.randint(0, 2, (batch,), generator=generator)
    return inputs, labels


def make_call(model, inputs: dict, labels: torch.Tensor, call: str):
    """A zero-argument function doing one measured call."""
    if call == "forward":
        def forward():
            with torch.no_grad():
                model(**inputs)
        return forward
    if call == "forward_backward":
        model.requires_grad_(True)

        def forward_backward():  # eval mode = dropout off; parameter gradients are computed
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(**inputs).logits, labels)
            loss.backward()
        return forward_backward
    return lambda: relevancy.attribute(model, inputs, call)


# -- one case, in its own process -------------------------------------------------------------------
def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def reset_peak_rss() -> None:
    """Lower the high-water mark to the current RSS (Linux >= 4.0), so that transient memory of
    model creation does not hide a smaller working set. Best effort."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def rss_mb() -> float:
    """Current RSS after a garbage collection, with free heap memory handed back to the OS."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(model_name: str, batch: int, call: str, repeats: int) -> dict:
    """Time and memory of one call, in this (fresh) process.

    memory_mb: ru_maxrss after the first call minus ru_maxrss after model creation: the call's
    working memory, on a fresh heap (later calls reuse freed heap, so their peaks say less).
    kept_mb: memory still held after that call (gc'd, heap trimmed). peak_all_mb: ru_maxrss after
    all runs minus the baseline. seconds: median of ``repeats`` runs after that first (warm-up) call.
    """
    model = build_model(model_name)
    inputs, labels = build_inputs(model_name, batch)
    function = make_call(model, inputs, labels, call)
    resident = rss_mb()
    reset_peak_rss()
    baseline = max_rss_mb()
    function()  # warm-up, and the memory measurement
    first_peak = max_rss_mb()
    kept = rss_mb() - resident
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return {
        "seconds": statistics.median(times), "times": times, "memory_mb": first_peak - baseline,
        "kept_mb": kept, "peak_all_mb": max_rss_mb() - baseline, "baseline_mb": baseline,
    }


def measure(model_name: str, batch: int, call: str, repeats: int) -> dict:
    """Run one case in a fresh interpreter (``--one``); failures come back as ``{"error": ...}``."""
    command = [sys.executable, __file__, "--one", f"{model_name}:{batch}:{call}", "--repeats", str(repeats),
               "--threads", str(torch.get_num_threads())]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    return json.loads(lines[-1])


# -- report -----------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ratio(value, reference) -> float | None:
    return None if value is None or not reference else value / reference


def fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def verdict(value, limit) -> str:
    return "n/a" if value is None else ("PASS" if value <= limit else "MISS")


def report(results: dict, models: list, batches: list, calls: list, repeats: dict, started: str, seconds: float) -> str:
    """The Markdown report: environment, one table per model, floor, targets."""
    lines = [
        "# relevancy engine benchmark (CPU)",
        "",
        f"- command: `python {shlex.join([os.path.relpath(__file__)] + sys.argv[1:])}`",
        f"- date: {started} (run took {seconds / 60:.1f} min)",
        f"- torch {torch.__version__}, transformers {transformers.__version__}, relevancy {relevancy.__version__}, "
        f"Python {platform.python_version()}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}; "
        f"load average at the end {' / '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "- timings: 1 warm-up, then median of the timed runs in the same process ("
        + ", ".join(f"b{b}: {n} run(s)" for b, n in repeats.items())
        + "); one fresh process per cell. "
        "The machine may be shared with other jobs, so absolute times carry noise.",
        "- MB: working memory of one call = ru_maxrss after the first call − ru_maxrss after model creation "
        "(high-water mark reset to the current RSS first); kept MB: RSS still held after that call "
        "(after gc and malloc_trim; forward+backward keeps its parameter gradients); "
        "all-runs MB: ru_maxrss after all calls (warm-up + timed) − the same baseline",
        f"- ViT-B/16 at {IMAGE_SIZE}x{IMAGE_SIZE} (197 positions), BERT-base at {SEQUENCE_LENGTH} tokens; "
        "seeded random weights, SDPA attention",
        "- ×fb = ratio to forward+backward (one training step's passes, parameter gradients included) "
        "at the same batch size; per item = (time / batch) / time at batch "
        f"{batches[0]}",
        "",
    ]
    checks = []
    for model_name in models:
        lines += [f"## {'ViT-B/16' if model_name == 'vit' else 'BERT-base'}", ""]
        header = "| call |"
        rule = "|---|"
        for batch in batches:
            header += f" b{batch} s | b{batch} ×fb | b{batch} MB | b{batch} mem ×fb | b{batch} kept MB | b{batch} all-runs MB |"
            rule += "---:|---:|---:|---:|---:|---:|"
            if batch != batches[0]:
                header += f" b{batch} per item |"
                rule += "---:|"
        lines += [header, rule]
        for call in calls:
            row = f"| {call} |"
            for batch in batches:
                cell, reference = results.get((model_name, batch, call)), results[model_name, batch, "forward_backward"]
                if cell is None:
                    row += " not run | | | | | |" + (" |" if batch != batches[0] else "")
                    continue
                if "error" in cell:
                    row += f" error: {cell['error'][:60]} | | | | | |" + (" |" if batch != batches[0] else "")
                    continue
                row += (
                    f" {cell['seconds']:.3f} | {fmt(ratio(cell['seconds'], reference.get('seconds')), '.2f')} |"
                    f" {cell['memory_mb']:.0f} | {fmt(ratio(cell['memory_mb'], reference.get('memory_mb')), '.2f')} |"
                    f" {cell['kept_mb']:.0f} | {cell['peak_all_mb']:.0f} |"
                )
                if batch != batches[0]:
                    first = results.get((model_name, batches[0], call), {}).get("seconds")
                    row += f" {fmt(ratio(cell['seconds'] / batch, first), '.2f')} |"
            lines.append(row)
        lines.append("")
        for batch in batches:
            ta = results.get((model_name, batch, "transformer_attribution")) or {}
            gxa = results.get((model_name, batch, "gradient_x_attention")) or {}
            fb = results[model_name, batch, "forward_backward"]
            time_ta = ratio(ta.get("seconds"), fb.get("seconds"))
            if time_ta is not None:
                lines.append(
                    f"- b{batch}: transformer_attribution measured {time_ta:.2f}× fwd+bwd; theoretical floor "
                    f"{FLOOR_LINEAR:.2f}× (linear layers alone), ~{FLOOR_WITH_REST:.1f}× with the rest"
                )
            checks.append((model_name, batch, "time_ta", time_ta))
            checks.append((model_name, batch, "time_gxa", ratio(gxa.get("seconds"), fb.get("seconds"))))
            checks.append((model_name, batch, "mem_ta", ratio(ta.get("memory_mb"), fb.get("memory_mb"))))
            if batch != batches[0] and ta.get("seconds") is not None:
                first = (results.get((model_name, batches[0], "transformer_attribution")) or {}).get("seconds")
                checks.append((model_name, batch, "per_item", ratio(ta["seconds"] / batch, first)))
        lines.append("")
    lines += ["## Targets", "", "| model | batch | target | measured | limit | result |", "|---|---:|---|---:|---:|---|"]
    for model_name, batch, key, value in checks:
        description, limit = TARGETS[key]
        lines.append(f"| {model_name} | {batch} | {description} | {fmt(value, '.2f')} | {limit} | {verdict(value, limit)} |")
    return "\n".join(lines) + "\n"


# -- profiling ----------------------------------------------------------------------------------------
def profile_case(model_name: str, batch: int, call: str, top: int = 25) -> None:
    """Warm up once, time one plain call, then profile one call with cProfile (cumulative time, and
    relevancy's own functions by self time) and one with torch.profiler (ops, ops by input shape)."""
    import cProfile
    import pstats

    model = build_model(model_name)
    inputs, labels = build_inputs(model_name, batch)
    function = make_call(model, inputs, labels, call)
    function()
    start = time.perf_counter()
    function()
    print(f"# one {call} on {model_name} b{batch}, {torch.get_num_threads()} thread(s): "
          f"{time.perf_counter() - start:.2f} s unprofiled\n")
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(function)
    print(f"# cProfile: {time.perf_counter() - start:.2f} s\n")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats("relevancy", top)
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        function()
    print(f"# torch.profiler: {time.perf_counter() - start:.2f} s, by self CPU time\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=top))


# -- command line -----------------------------------------------------------------------------------
def parse_case(text: str) -> tuple[str, int, str]:
    model_name, batch, call = text.split(":")
    return model_name, int(batch), call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["vit", "bert"], choices=["vit", "bert"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument(
        "--repeats", nargs="+", type=int, default=[3],
        help="timed runs after one warm-up (median): one value, or one per batch size",
    )
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method but integrated_gradients")
    parser.add_argument("--integrated-gradients", action="store_true", help="also run integrated_gradients (20 steps)")
    parser.add_argument(
        "--large-batch-methods", nargs="+", default=None,
        help="only these methods at batch sizes above the smallest (default: all)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--profile", metavar="MODEL:BATCH:CALL", help="profile one call instead of benchmarking")
    parser.add_argument("--one", metavar="MODEL:BATCH:CALL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.one:
        print(json.dumps(run_case(*parse_case(args.one), args.repeats[0])))
        return
    if args.profile:
        profile_case(*parse_case(args.profile))
        return

    methods = args.methods or [m for m in relevancy.available_methods() if m not in DEFAULT_EXCLUDED]
    if args.integrated_gradients and "integrated_gradients" not in methods:
        methods.append("integrated_gradients")
    unknown = (set(methods) | set(args.large_batch_methods or [])) - set(relevancy.available_methods())
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")
    calls = list(BASELINES) + methods
    if len(args.repeats) not in (1, len(args.batch_sizes)):
        parser.error("--repeats takes one value or one per batch size")
    per_batch = dict(zip(args.batch_sizes, args.repeats * len(args.batch_sizes) if len(args.repeats) == 1 else args.repeats))
    batches = sorted(per_batch)
    repeats = {batch: per_batch[batch] for batch in batches}

    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    clock = time.perf_counter()
    results = {}
    for model_name in args.models:
        for batch in batches:
            for call in calls:
                if batch != batches[0] and args.large_batch_methods is not None and call not in BASELINES \
                        and call not in args.large_batch_methods:
                    continue
                cell = results[model_name, batch, call] = measure(model_name, batch, call, repeats[batch])
                shown = cell.get("error") or f"{cell['seconds']:.3f} s, {cell['memory_mb']:.0f} MB"
                print(f"[{time.perf_counter() - clock:6.0f} s] {model_name} b{batch} {call}: {shown}", file=sys.stderr, flush=True)
    text = report(results, args.models, batches, calls, repeats, started, time.perf_counter() - clock)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

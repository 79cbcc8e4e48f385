"""Cost of AttnLRP and CP-LRP relative to one input-gradient pass and to a training step, on CPU.

The calls run interleaved (one round = every call once; the median over ``--repeats`` rounds), so a
busy machine slows all of them alike and the ratios, measured in one run, stay comparable.
Models: BERT-base (``bert``, 2 labels) and a Llama-style model of ~100M parameters (``llama``, as in
llm_benchmark.py), seeded random weights, SDPA attention, one sequence of ``--length`` tokens.

    python benchmarks/attnlrp_cost.py                          # writes results/attnlrp_cost.md
    python benchmarks/attnlrp_cost.py --models bert --length 128 --repeats 3 --out /tmp/x.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from pathlib import Path

import torch
import transformers

import relevancy

RESULTS = Path(__file__).resolve().parent / "results" / "attnlrp_cost.md"
METHODS = ("input_x_gradient", "attnlrp", "cp_lrp", "transformer_attribution")


def build(name: str):
    torch.manual_seed(0)
    if name == "bert":
        return transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=2)).eval()
    config = transformers.LlamaConfig(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
        intermediate_size=2048, vocab_size=32000, tie_word_embeddings=True,
    )
    return transformers.LlamaForCausalLM(config).eval()


def calls(model, length: int) -> dict:
    ids = torch.randint(1000, 20000, (1, length), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def forward_backward():  # a training step's passes: parameter gradients of the target logit
        model.requires_grad_(True)
        model.zero_grad(set_to_none=True)
        logits = model(**inputs).logits
        (logits[0, -1, 0] if logits.dim() == 3 else logits[0, 0]).backward()
        model.requires_grad_(False)

    result = {"forward_backward": forward_backward}
    result.update({m: (lambda m=m: relevancy.attribute(model, inputs, m, target=0)) for m in METHODS})
    return result


def measure(name: str, length: int, repeats: int) -> dict:
    model = build(name)
    functions = calls(model, length)
    for function in functions.values():  # warm-up
        function()
    times = {call: [] for call in functions}
    for _ in range(repeats):
        for call, function in functions.items():
            start = time.perf_counter()
            function()
            times[call].append(time.perf_counter() - start)
    return {call: statistics.median(values) for call, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["bert", "llama"], choices=["bert", "llama"])
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    lines = [
        "# Cost of AttnLRP and CP-LRP", "",
        f"{datetime.date.today()} · torch {torch.__version__} · {args.threads} thread(s) · {args.length} tokens, batch 1 · "
        f"median of {args.repeats} interleaved rounds · load average at start {load:.1f} · "
        f"`python benchmarks/attnlrp_cost.py --models {' '.join(args.models)} --length {args.length}`",
        "",
        "| model | call | seconds | × input_x_gradient | × forward+backward |",
        "|---|---|---:|---:|---:|",
    ]
    for name in args.models:
        medians = measure(name, args.length, args.repeats)
        for call, seconds in medians.items():
            lines.append(
                f"| {name} | {call} | {seconds:.2f} | {seconds / medians['input_x_gradient']:.2f} | "
                f"{seconds / medians['forward_backward']:.2f} |"
            )
        print("\n".join(lines[-len(medians):]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Faithfulness on SmolLM2-135M-Instruct: does deleting the prompt tokens a method ranks highest lower
the next token's logit more than deleting random ones?

For each factual prompt the target is the model's predicted next token, explained by every method at
the last position. Candidates for deletion are the prompt positions before the last one (the logit
is read at the last position, so it stays, as the paper's maps leave out the CLS column). Deleting
removes the tokens from the sequence; the drop is logit(full prompt) - logit(prompt without them)
for the same token at the new last position. Random: the mean over ``--random-draws`` seeded draws
of k candidates. Reported per method and k: mean drop for top-k and random-k, and the fraction of
prompts where top-k lowers the logit more than random-k does.

Usage:
    python benchmarks/llm_faithfulness.py --threads 1            # writes results/llm_faithfulness.md
    python benchmarks/llm_faithfulness.py --prompts 3 --methods transformer_attribution --out /tmp/f.md   # smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_benchmark import load_smollm2  # noqa: E402

import relevancy  # noqa: E402
from relevancy.evaluation.statistics import mean_interval, paired_difference  # noqa: E402
from relevancy.targets import TokenAt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "llm_faithfulness.md"

# (prompt, expected start of the answer): written for this experiment; the expected answer is only
# reported, the explained target is whatever the model predicts.
PROMPTS = [
    ("The capital of France is", "Paris"),
    ("The capital of Japan is", "Tokyo"),
    ("The capital of Italy is", "Rome"),
    ("The capital of Germany is", "Berlin"),
    ("The capital of Spain is", "Madrid"),
    ("The capital of Egypt is", "Cairo"),
    ("The capital of Russia is", "Moscow"),
    ("The capital city of the United Kingdom is", "London"),
    ("Paris is the capital of", "France"),
    ("Tokyo is the capital of", "Japan"),
    ("The Eiffel Tower is located in the city of", "Paris"),
    ("The Statue of Liberty is in the city of New", "York"),
    ("The largest planet in our solar system is", "Jupiter"),
    ("The planet closest to the Sun is", "Mercury"),
    ("Water is made of hydrogen and", "oxygen"),
    ("The chemical symbol for gold is", "Au"),
    ("The freezing point of water in degrees Celsius is", "0"),
    ("A week has seven", "days"),
    ("The opposite of hot is", "cold"),
    ("The color of a clear sky on a sunny day is", "blue"),
    ("Romeo and Juliet was written by William", "Shakespeare"),
    ("The theory of relativity was developed by Albert", "Einstein"),
    ("The first man to walk on the Moon was Neil", "Armstrong"),
    ("The Great Wall is a famous landmark in", "China"),
    ("The currency of Japan is the", "yen"),
    ("The language spoken in Brazil is", "Portuguese"),
    ("The longest river in Africa is the", "Nile"),
    ("Bees make", "honey"),
    ("The largest ocean on Earth is the", "Pacific"),
    ("One plus one equals", "two"),
]


def target_logit(model, ids: list[int], token: int) -> float:
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids])).logits[0, -1, token])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=relevancy.available_methods())
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help="use the first N prompts")
    parser.add_argument("--random-draws", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_smollm2()
    rng = np.random.default_rng(0)
    drops = {(m, k, kind): [] for m in args.methods for k in args.ks for kind in ("top", "random")}
    answers = []
    for prompt, expected in tqdm(PROMPTS[: args.prompts], desc="prompts"):
        ids = tokenizer(prompt)["input_ids"]
        with torch.no_grad():
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        answers.append((prompt, expected, tokenizer.decode([token])))
        full = target_logit(model, ids, token)
        candidates = len(ids) - 1
        inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        draws = {k: [rng.choice(candidates, size=k, replace=False) for _ in range(args.random_draws)] for k in args.ks}
        random_drop = {}
        for k in args.ks:
            if k < candidates:
                random_drop[k] = statistics.fmean(
                    full - target_logit(model, [t for i, t in enumerate(ids) if i not in set(d)], token) for d in draws[k]
                )
        for method in args.methods:
            scores = relevancy.attribute(model, inputs, method, TokenAt(token, len(ids) - 1)).scores[0, :candidates]
            order = torch.argsort(scores.float(), descending=True, stable=True).tolist()
            for k in random_drop:
                top = set(order[:k])
                drops[(method, k, "top")].append(full - target_logit(model, [t for i, t in enumerate(ids) if i not in top], token))
                drops[(method, k, "random")].append(random_drop[k])

    lines = [
        "# Faithfulness on SmolLM2-135M-Instruct (next-token targets)",
        "",
        f"{datetime.date.today()} · {len(answers)} factual prompts · torch {torch.__version__} · "
        f"`python benchmarks/llm_faithfulness.py {' '.join(sys.argv[1:])}`",
        "",
        "Drop of the predicted token's logit when the k prompt tokens ranked highest are deleted vs k random ones "
        f"(mean of {args.random_draws} draws), the last prompt token excluded from both. Higher top-k drop = more faithful.",
        "",
        "| method | " + " | ".join(f"k={k} top | k={k} random | k={k} top > random" for k in args.ks) + " |",
        "|---|" + "---:|---:|---:|" * len(args.ks),
    ]
    summary = {}
    for method in args.methods:
        cells = []
        for k in args.ks:
            top, rand = drops[(method, k, "top")], drops[(method, k, "random")]
            wins = statistics.fmean(float(a > b) for a, b in zip(top, rand)) if top else float("nan")
            summary[f"{method}/k{k}"] = {"top": statistics.fmean(top), "random": statistics.fmean(rand), "wins": wins, "n": len(top)}
            cells.append(f"{statistics.fmean(top):.2f} | {statistics.fmean(rand):.2f} | {wins:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += intervals_table(drops, args.methods, args.ks, summary)
    correct = sum(answer.strip().lower().startswith(expected.lower()[: max(1, len(answer.strip()))]) for _, expected, answer in answers)
    lines += ["", f"The model's next token starts the expected answer for {correct} of {len(answers)} prompts:", ""]
    lines += [f"- {prompt!r} → {answer!r} (expected {expected!r})" for prompt, expected, answer in answers]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))


def intervals_table(drops: dict, methods: list[str], ks: list[int], summary: dict) -> list[str]:
    """Mean top-k drop per method with its 95 % bootstrap interval over prompts, and the paired
    difference from transformer_attribution on the same prompts (significant: interval excludes 0)."""
    reference = "transformer_attribution" if "transformer_attribution" in methods else None
    lines = [
        "", "Top-k drop, mean over prompts [95 % bootstrap interval, 2000 resamples]"
        + ("; paired difference from transformer_attribution, **bold** where its interval excludes 0:" if reference else ":"),
        "", "| method | " + " | ".join(f"k={k} top drop | k={k} − transformer_attribution" for k in ks) + " |",
        "|---|" + "---:|---:|" * len(ks),
    ]
    for method in methods:
        cells = []
        for k in ks:
            top = drops[(method, k, "top")]
            interval = mean_interval(top)
            summary[f"{method}/k{k}"]["top_interval"] = [interval.low, interval.high]
            cell = interval.format(2)
            if reference and method != reference:
                comparison = paired_difference(top, drops[(reference, k, "top")])
                text = comparison.difference.format(2)
                cells += [cell, f"**{text}**" if comparison.significant else text]
            else:
                cells += [cell, ""]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    main()

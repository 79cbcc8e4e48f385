"""``relevancy evaluate``: methods side by side on the paper's tests, resumable, with tables and plots."""

from __future__ import annotations

import sys

from ..evaluation.runner import TESTS
from ..methods import available
from .audit import add_ray_arguments, load_listing_skipped, ray_options


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="score methods on a data set (perturbation, rationales, faithfulness, segmentation)")
    parser.add_argument("--model", default="default", help="hub name or local path (default: the embedded sentiment model)")
    parser.add_argument("--data", required=True, help="an ERASER folder, a .csv/.tsv/.jsonl file, or an image folder")
    parser.add_argument("--format", required=True, choices=("eraser", "csv", "jsonl", "parquet", "images"), help="layout of --data (required)")
    parser.add_argument("--split", default="val", help="ERASER split: the folder's <split>.jsonl, e.g. train, val or test")
    parser.add_argument("--methods", default="transformer_attribution,rollout", help=f"comma-separated, from: {', '.join(available())}")
    parser.add_argument("--tests", default="perturbation", help=f"comma-separated, from: {', '.join(TESTS)}")
    parser.add_argument(
        "--out", default="relevancy-eval", help="folder for items.jsonl (resumable) and the results, relative to the current directory",
    )
    parser.add_argument(
        "--limit", type=int, default=None,
        help="evaluate N items only: a class-balanced random subset drawn with --seed, kept in file order (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    parser.add_argument("--batch-size", type=int, default=8, help="items per forward and backward pass")
    parser.add_argument("--target", default="predicted", choices=("predicted", "true"), help="explain the predicted or the true class")
    parser.add_argument("--text-removal", default="mask", choices=("mask", "delete"), help="perturbation test: mask or delete tokens")
    parser.add_argument("--text-column", default="text", help="text column of a csv/jsonl file")
    parser.add_argument("--label-column", default="label", help="label column of a csv/jsonl file")
    parser.add_argument("--label-map", default=None, help="data label to class index, e.g. NEG=0,POS=1 (default: labels match the model's by name or index)")
    parser.add_argument("--restart", action="store_true", help="discard the results already in --out")
    add_ray_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..adapters.loading import load
    from ..evaluation import evaluate, load_dataset

    dataset = load_listing_skipped(
        "evaluate", load_dataset, args.data, args.format, split=args.split, text_column=args.text_column,
        label_column=args.label_column,
    )
    dataset, chosen = dataset.balanced_sample(args.limit, args.seed)
    print(f"relevancy evaluate: {dataset.source}: {chosen}", file=sys.stderr)
    ray = ray_options(args)
    model, processor = load(args.model)
    results = evaluate(
        model,
        processor,
        dataset,
        _list(args.methods),
        _list(args.tests),
        out_dir=args.out,
        batch_size=args.batch_size,
        target=args.target,
        text_removal=args.text_removal,
        label_map=_label_map(args.label_map),
        restart=args.restart,
        ray=ray,
    )
    print(results.to_markdown())
    for path in results.files.values():
        print(f"wrote {path}")
    return 0


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _label_map(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    mapping = {}
    for pair in _list(text):
        name, _, index = pair.partition("=")
        if not index.strip().isdigit():
            raise ValueError(f"--label-map entry {pair!r} must be LABEL=INDEX, e.g. NEG=0")
        mapping[name.strip()] = int(index)
    return mapping

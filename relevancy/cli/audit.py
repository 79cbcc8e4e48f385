"""``relevancy audit``: relevance statistics and flags over a labelled text data set."""

from __future__ import annotations

import sys
import warnings

from ..methods import available


def add_data_arguments(parser) -> None:
    """Options that say how to read a data set (shared with ``relevancy finetune``)."""
    parser.add_argument("data", help="a .csv/.tsv/.jsonl/.json/.parquet file, or an ERASER folder (docs/ + <split>.jsonl)")
    parser.add_argument("--text-column", default="text", help="column of the texts (rows without text are skipped and listed)")
    parser.add_argument("--label-column", default="label", help="column of the labels")
    parser.add_argument("--id-column", default=None, help="column of unique document ids (default: row numbers)")
    parser.add_argument("--split", default=None, help="ERASER split, e.g. val (default: the folder's only split)")
    parser.add_argument("--label-map", default=None, help="data label -> model label, e.g. NEG=negative,POS=positive (default: labels match the model's by name or index)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N examples with text (default: all)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="audit a labelled text data set for wrong relevance (shortcuts, artefacts)")
    add_data_arguments(parser)
    parser.add_argument("--model", default="default", help="hub name or local path (default: the embedded sentiment model)")
    parser.add_argument("--method", default="transformer_attribution", choices=available(), help="how relevance is computed")
    parser.add_argument("--target", default="predicted", choices=("predicted", "label"), help="which class to explain")
    parser.add_argument(
        "--out", default="relevancy-audit",
        help="folder for documents.jsonl and report.json/.md/.html, relative to the current directory",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="documents per forward and backward pass")
    parser.add_argument("--top-k", type=int, default=5, help="k of the top-k frequency")
    parser.add_argument("--max-length", type=int, default=None, help="truncate longer documents (default: the model's limit)")
    parser.add_argument("--shortcut-candidates", type=int, default=20, help="words to test by removal (0: none)")
    parser.add_argument("--shortcut-documents", type=int, default=64, help="documents per removal test")
    parser.add_argument(
        "--shortcut-words", default="",
        help="comma-separated words always tested by removal, whatever their relevance (default: none)",
    )
    parser.add_argument("--min-count", type=int, default=3, help="fewer occurrences are not flagged")
    parser.add_argument(
        "--alpha", type=float, default=0.05,
        help="family-wise error rate of the label tests that flags rest on (Bonferroni-corrected)",
    )
    parser.add_argument("--restart", action="store_true", help="discard an earlier (interrupted) run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_ray_arguments(parser)
    add_prompt_arguments(parser)
    parser.set_defaults(run=run)


def add_ray_arguments(parser) -> None:
    """``--ray [ADDRESS]`` and its actors (shared with ``relevancy evaluate``)."""
    parser.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDRESS",
        help="run on a Ray cluster (pip install 'relevancy[ray]'): ADDRESS of its head node (host:port); 'auto' for "
        "the cluster this machine is attached to; nothing for that cluster if there is one, else a new one on this "
        "machine (default: run in this process)",
    )
    parser.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per Ray actor (0: CPU actors)")
    parser.add_argument(
        "--ray-actors", type=int, default=None,
        help="Ray actors, each with one copy of the model (default: as many as the cluster's GPUs or CPUs hold)",
    )


def ray_options(args):
    """The ``ray=`` of ``audit``/``evaluate`` from the command line, or None (run in this process)."""
    from ..distributed import RayOptions

    if args.ray is None:
        if args.ray_gpus or args.ray_actors:
            raise ValueError("--ray-gpus and --ray-actors apply to Ray runs: add --ray [ADDRESS]")
        return None
    return RayOptions(address=args.ray or None, gpus_per_actor=args.ray_gpus, actors=args.ray_actors)


def add_prompt_arguments(parser) -> None:
    """Options for decoder LLMs (shared with ``relevancy finetune``)."""
    group = parser.add_argument_group("decoder LLMs (causal language models)")
    group.add_argument(
        "--prompt-template", default=None,
        help="a prompt with {text} where each document goes, e.g. 'Review: {text}\\nSentiment:' (\\n is a new line); "
        "needed for a causal LM, with --answers or --answer-column (default: none, a classifier)",
    )
    group.add_argument(
        "--answers", default=None,
        help="the LLM as a classifier: comma-separated answers of label 0, 1, ..., e.g. negative,positive; each follows "
        "the prompt after one space (' positive'), as a word after 'Sentiment:' is written (default: none)",
    )
    group.add_argument("--answer-column", default=None, help="free-form QA: the column of the reference answers (each follows the prompt after one space; default: none)")


def prompt_task(args) -> tuple[str | None, list[str] | None]:
    """The template and the answers of a causal-LM run (None, None for a classifier), checked."""
    from ..finetune.causal import check_template

    if args.prompt_template is None:
        if args.answers or args.answer_column:
            raise ValueError("--answers and --answer-column are for causal LMs: give --prompt-template too")
        return None, None
    template = args.prompt_template.replace("\\n", "\n")
    check_template(template)
    if (args.answers is None) == (args.answer_column is None):
        raise ValueError("--prompt-template needs either --answers (the LLM as a classifier) or --answer-column (free-form QA)")
    answers = None
    if args.answers is not None:
        answers = [" " + a.strip() for a in args.answers.split(",") if a.strip()]
    return template, answers


def data_options(args) -> dict:
    return dict(
        text_column=args.text_column, label_column=args.label_column, id_column=args.id_column, split=args.split, limit=args.limit
    )


def load_listing_skipped(command: str, load, *args, **options):
    """``load(*args, **options)``, with the rows it skipped (no text) printed as one warning line of ``command``."""
    from ..data_checks import SkippedRowsWarning, describe_skipped

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRowsWarning)  # printed below, in the CLI's own words
        dataset = load(*args, **options)
    if dataset.skipped:
        print(f"relevancy {command}: warning: {describe_skipped(dataset.skipped, dataset.source)}", file=sys.stderr)
    return dataset


def run(args) -> int:
    from ..adapters.loading import load
    from ..audit import AuditSettings, Thresholds, audit
    from ..audit.data import load_texts, parse_label_map

    template, answers = prompt_task(args)
    options = data_options(args)
    if args.answer_column:
        options["label_column"] = args.answer_column
    dataset = load_listing_skipped("audit", load_texts, args.data, **options)  # data errors before the model loads
    thresholds = Thresholds(min_count=args.min_count, alpha=args.alpha)  # option errors, too
    ray = ray_options(args)
    if template is not None and ray is not None:
        raise ValueError("--ray runs the classifier audit; a causal-LM audit (--prompt-template) runs in this process")
    model, tokenizer = load(args.model)
    settings = AuditSettings(
        method=args.method, target=args.target, batch_size=args.batch_size, top_k=args.top_k, max_length=args.max_length,
        shortcut_candidates=args.shortcut_candidates, shortcut_documents=args.shortcut_documents,
        shortcut_words=tuple(w.strip() for w in args.shortcut_words.split(",") if w.strip()),
        thresholds=thresholds,
    )
    if template is not None:
        from ..audit.llm import audit_causal

        report = audit_causal(
            model, tokenizer, dataset, template=template, answers=answers, answer_column=args.answer_column, out=args.out,
            settings=settings, label_map=parse_label_map(args.label_map), resume=not args.restart, progress=not args.quiet,
        )
    else:
        report = audit(
            model, tokenizer, dataset, out=args.out, settings=settings, label_map=parse_label_map(args.label_map),
            resume=not args.restart, progress=not args.quiet, ray=ray,
        )
    print("\n".join(report.summary()))
    found = {"shortcut": report.shortcut_flags(), "over-relevant": report.over_relevant(), "under-relevant": report.under_relevant()}
    for title, flags in found.items():
        print(f"{title}: " + (", ".join(f.item for f in flags[:10]) or "none"))
    relied = [r.item for r, _ in report.relied_on()]
    if relied:
        print("relied on, no significant tie to a label (not flagged): " + ", ".join(relied[:10]))
    print(f"wrote {args.out}/report.md, report.json, report.html")
    return 0

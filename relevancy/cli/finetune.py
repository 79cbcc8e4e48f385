"""``relevancy finetune``: fine-tune a classifier with relevance guidance; the base model on disk is
only read, the result is saved with ``save_pretrained`` to ``--out``."""

from __future__ import annotations

import json
from pathlib import Path

from .audit import add_data_arguments, add_prompt_arguments, data_options, load_listing_skipped, prompt_task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("finetune", help="fine-tune a text classifier or a causal LM away from given tokens, or a classifier towards rationales")
    add_data_arguments(parser)
    parser.add_argument("--model", required=True, help="the base model: a local directory or hub name (never modified)")
    parser.add_argument("--out", required=True, help="folder for the fine-tuned model and finetune.json")
    guide = parser.add_argument_group("what to guide the relevance with (at least one)")
    guide.add_argument("--words", default=None, help="comma-separated tokens whose relevance is penalised (default: none)")
    guide.add_argument("--words-file", default=None, help="a file with one token per line to penalise (default: none)")
    guide.add_argument(
        "--audit-json", default=None, help="penalise the words flagged in this report.json of relevancy audit (default: none)",
    )
    guide.add_argument("--audit-flags", default="shortcut", help="flags of --audit-json: shortcut, over_relevant")
    guide.add_argument("--rationales", action="store_true", help="reward relevance on the data's rationales (ERASER evidences)")
    guide.add_argument(
        "--rationale-mode", default="share", choices=("share", "comprehensiveness"),
        help="--rationales: share: reward the rationales' share of the positive relevance (--method's map); "
        "comprehensiveness: reward their deletion effect, the prediction at chance (KL from uniform) with the rationale "
        "tokens deleted (one extra forward/backward, no map)",
    )
    parser.add_argument(
        "--method", default="transformer_attribution",
        choices=("transformer_attribution", "gradient_x_attention", "input_x_gradient", "full_lrp"),
        help="a method whose map is differentiable (input_x_gradient and full_lrp are signed: for --penalty-mode magnitude)",
    )
    parser.add_argument(
        "--penalty-mode", default="share", choices=("share", "magnitude", "removal", "deletion"),
        help="share: the words' share of the positive relevance; magnitude: their mean squared raw relevance, "
        "which the model cannot lower by flipping its sign or raising other tokens (scale --penalty-weight to the map); "
        "removal: the squared integrated gradients of the words from the input with them masked, about the squared "
        "change of the class margin when they are removed, which a locally flat model cannot hide; deletion: the exact "
        "squared change of the margin when they are deleted from the text, with no [MASK] baseline whose meaning the "
        "model could move (removal and deletion leave --method unused)",
    )
    parser.add_argument("--removal-steps", type=int, default=8, help="integrated-gradients steps of --penalty-mode removal")
    parser.add_argument(
        "--insert-penalised", action="store_true",
        help="--penalty-mode removal or deletion: also penalise one of the words (the lowest token id) inserted into the "
        "sentences without any (every class)",
    )
    parser.add_argument("--target", default="label", choices=("label", "predicted"), help="which class's map is guided")
    parser.add_argument("--penalty-weight", type=float, default=1.0, help="weight of the penalty on the guided words")
    parser.add_argument("--rationale-weight", type=float, default=1.0, help="weight of the reward on rationales (--rationales)")
    parser.add_argument("--classification-weight", type=float, default=1.0, help="weight of the cross-entropy loss")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps")
    parser.add_argument(
        "--relevance-warmup", type=int, default=0,
        help="the relevance terms' weights ramp up linearly over this many steps (0: full weight from the start)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="examples per step")
    parser.add_argument("--learning-rate", type=float, default=2e-5, help="AdamW learning rate")
    parser.add_argument("--max-length", type=int, default=None, help="truncate longer texts (default: no truncation)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data order and of torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_prompt_arguments(parser)
    lora = parser.add_argument_group("LoRA (causal LMs; needs the peft package: pip install 'relevancy[lora]')")
    lora.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the saved weights) instead of every weight (default: every weight)")
    lora.add_argument("--lora-rank", type=int, default=8, help="rank of the LoRA adapters")
    lora.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA scaling numerator (alpha / rank scales the update)")
    parser.set_defaults(run=run)


def guided_words(args) -> list[str]:
    from ..data_checks import read_utf8
    from ..finetune import audit_words

    words = []
    if args.words:
        words += args.words.split(",")
    if args.words_file:
        path = Path(args.words_file)
        if not path.exists():
            raise FileNotFoundError(f"no word list at {path}")
        words += read_utf8(path).splitlines()
    if args.audit_json:
        words += audit_words(args.audit_json, [k.strip() for k in args.audit_flags.split(",") if k.strip()])
    return [w.strip() for w in words if w.strip()]


def run(args) -> int:
    from ..adapters.loading import load
    from ..audit.data import load_texts, parse_label_map
    import torch

    from ..finetune import RelevanceLoss, fine_tune, penalised_token_ids, training_examples

    out = Path(args.out)
    if out.resolve() == Path(args.model).resolve():
        raise ValueError("--out is the base model's folder: choose another folder (the base model is never overwritten)")
    template, answers = prompt_task(args)
    if template is not None:
        return run_causal(args, template, answers, out)
    if args.lora:
        raise ValueError("--lora is for causal LMs (with --prompt-template); a classifier is fine-tuned in full")
    words = guided_words(args)
    if not words and not args.rationales:
        raise ValueError("nothing to guide the relevance with: give --words, --words-file, --audit-json or --rationales")
    dataset = load_listing_skipped("finetune", load_texts, args.data, **data_options(args))
    if args.rationales and not dataset.has_rationales:
        raise ValueError(f"--rationales: {dataset.source} has no human rationales (the ERASER layout with evidences has them)")
    # a fresh copy read from disk (the base files are never written); a new head is what fine-tuning trains
    model, tokenizer = load(args.model, allow_random_head=True)
    labels = model.config.id2label or {i: str(i) for i in range(model.config.num_labels)}
    examples = training_examples(dataset, {int(k): v for k, v in labels.items()}, parse_label_map(args.label_map))
    ids = penalised_token_ids(tokenizer, words) if words else []
    loss = RelevanceLoss.for_tokenizer(
        tokenizer, method=args.method, target=args.target, penalised_ids=ids,
        classification_weight=args.classification_weight, penalty_weight=args.penalty_weight if ids else 0.0,
        rationale_weight=args.rationale_weight if args.rationales else 0.0, penalty_mode=args.penalty_mode,
        rationale_mode=args.rationale_mode,
        removal_steps=args.removal_steps, insert_penalised=args.insert_penalised,
    )
    torch.manual_seed(args.seed)
    result = fine_tune(
        model, tokenizer, examples, loss, steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        max_length=args.max_length, seed=args.seed, in_place=True, progress=not args.quiet,
        relevance_warmup=args.relevance_warmup,
    )
    penalised = tokenizer.convert_ids_to_tokens(ids)
    return _save(result, tokenizer, out, _settings(args), "tokens", penalised)


def run_causal(args, template: str, answers: list[str] | None, out: Path) -> int:
    """A decoder LLM: the answer's log-likelihood plus the deletion penalty on the guided words."""
    import torch

    from ..adapters.loading import load
    from ..audit.data import load_texts, parse_label_map
    from ..finetune.causal import CausalRelevanceLoss, LoraSettings, causal_examples, fine_tune_causal

    words = guided_words(args)
    if args.rationales:
        raise ValueError("--rationales is for classifiers; a causal LM is guided with --words, --words-file or --audit-json")
    if words and args.penalty_mode != "deletion":
        raise ValueError("a causal LM's penalty is --penalty-mode deletion (the change of the answer's log-likelihood "
                         f"when the words are deleted); {args.penalty_mode!r} is for classifiers")
    options = data_options(args)
    if args.answer_column:
        options["label_column"] = args.answer_column
    dataset = load_listing_skipped("finetune", load_texts, args.data, **options)
    examples = causal_examples(dataset, answers, parse_label_map(args.label_map))
    model, tokenizer = load(args.model)
    loss = CausalRelevanceLoss(nll_weight=args.classification_weight, penalty_weight=args.penalty_weight if words else 0.0)
    lora = LoraSettings(rank=args.lora_rank, alpha=args.lora_alpha) if args.lora else None
    torch.manual_seed(args.seed)
    result = fine_tune_causal(
        model, tokenizer, examples, loss, template=template, penalised_words=words, insert=args.insert_penalised, lora=lora,
        max_length=args.max_length, seed=args.seed, steps=args.steps, batch_size=args.batch_size,
        learning_rate=args.learning_rate, progress=not args.quiet, relevance_warmup=args.relevance_warmup,
    )
    settings = {**_settings(args), "prompt_template": template, "answers": answers}
    return _save(result, tokenizer, out, settings, "words", words)


def _settings(args) -> dict:
    return {k: v for k, v in vars(args).items() if k != "run"}


def _save(result, tokenizer, out: Path, settings: dict, kind: str, penalised: list[str]) -> int:
    """Save the fine-tuned model and tokenizer, its settings, penalised tokens or words and history
    (finetune.json), and say what was written."""
    result.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {"settings": settings, f"penalised_{kind}": penalised, "history": result.history}
    (out / "finetune.json").write_text(json.dumps(record, indent=2))
    last = result.history[-1]
    print(f"penalised {kind}: {', '.join(penalised) or 'none'}")
    print("last step: " + ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "step"))
    print(f"wrote the fine-tuned model to {out}")
    return 0

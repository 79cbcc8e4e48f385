"""``relevancy explain``: one text or image, a coloured terminal view, and HTML/PNG/JSON files."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ..methods import available


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("explain", help="explain one input (text, or an image path)")
    parser.add_argument("input", help="the text to explain, or the path of an image")
    parser.add_argument("--model", default="default", help="hub name or local path (default: the embedded sentiment "
                        "model for text, the embedded Fashion-MNIST classifier for an image path)")
    parser.add_argument("--allow-random-head", action="store_true",
                        help="explain a model whose classification head is missing from its checkpoint (random, with a warning)")
    parser.add_argument("--method", default="transformer_attribution", choices=available())
    parser.add_argument("--target", default=None, help="class index, label name, or 'a vs b' (default: predicted class)")
    parser.add_argument("--start-layer", type=int, default=None, help="first block of the rollout (rollout methods)")
    parser.add_argument("--out", default="relevancy-out", help="folder for the HTML/PNG/JSON files")
    parser.add_argument("--format", default="html,json,png", help="comma-separated: html, json, png (png for images)")
    parser.add_argument("--no-color", action="store_true", help="plain terminal output")
    parser.add_argument("--generate", type=int, default=None, metavar="N",
                        help="causal LMs: generate N tokens and explain each of them (prompt tokens per answer token)")
    parser.add_argument("--drop-sink", action="store_true", help="causal LMs: leave the first token out of normalisation")
    parser.add_argument("--checkpoint", action="store_true",
                        help="long inputs: keep no block's graph, recompute blocks in each backward pass (slower, far less memory)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..adapters.default_model import default_model_for
    from ..explainer import Explainer

    model = default_model_for(args.input) if args.model == "default" else args.model
    explainer = Explainer.from_pretrained(model, allow_random_head=args.allow_random_head, checkpoint=args.checkpoint)
    if explainer.structure.causal:
        return _explain_answer(explainer, args)
    options = {} if args.start_layer is None else {"start_layer": args.start_layer}
    target = int(args.target) if args.target is not None and args.target.lstrip("-").isdigit() else args.target
    image_input = explainer.structure.modality == "image"
    if image_input and not Path(args.input).exists():
        raise FileNotFoundError(f"{args.model} explains images: no image file at {args.input}")
    explanation = explainer(args.input, target=target, method=args.method, **options)
    print(explanation.title)
    if explanation.tokens is not None:
        print(explanation.to_terminal(use_color=not args.no_color and sys.stdout.isatty()))
        strongest = sorted(explanation.words(relative=True), key=lambda x: -x[1])[:5]
        print("top words (relative to the strongest): " + ", ".join(f"{w} ({s:+.2f})" for w, s in strongest))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = _slug(Path(args.input).stem if image_input else args.input) + f"-{args.method}"
    formats = {f.strip() for f in args.format.split(",") if f.strip()}
    written = []
    if "html" in formats:
        written.append(explanation.save_html(out / f"{stem}.html"))
    if "json" in formats:
        written.append(explanation.save_json(out / f"{stem}.json"))
    if "png" in formats and image_input:
        written.append(explanation.save_png(out / f"{stem}.png"))
    for path in written:
        print(f"wrote {path}")
    return 0


def _explain_answer(explainer, args) -> int:
    from ..generation import explain_answer
    from ..viz.text import render_terminal

    result = explain_answer(explainer.model, explainer.processor, args.input, max_new_tokens=args.generate or 1,
                            method=args.method, checkpoint=args.checkpoint)
    normalised = result.normalised(args.drop_sink)
    prompt = result.tokens[: result.prompt_length]
    print(f"{args.method} — answer: {''.join(result.answer_tokens)!r}")
    color = not args.no_color and sys.stdout.isatty()
    for t, token in enumerate(result.answer_tokens):
        print(f"{token!r:>14}: " + render_terminal(prompt, list(normalised[t, : result.prompt_length]), signed=result.signed, use_color=color))
    print("prompt tokens carrying the answer: " + ", ".join(f"{w!r} ({s:.2f})" for w, s in result.top_prompt_tokens(5, args.drop_sink)))
    if "html" in {f.strip() for f in args.format.split(",")}:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{_slug(args.input)}-{args.method}-answer.html"
        path.write_text(result.to_html(args.drop_sink), encoding="utf-8")
        print(f"wrote {path}")
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text.lower()).strip("-")[:40] or "input"

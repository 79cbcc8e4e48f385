"""``relevancy explain``: one text or image, a coloured terminal view, and HTML/PNG/JSON files."""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

from ..methods import DEFAULT_METHOD, available

FORMATS = ("html", "json", "png")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# a one-word input with one of these endings is taken for a file path, not for text to explain
PATH_SUFFIXES = IMAGE_SUFFIXES | {".txt", ".csv", ".tsv", ".json", ".jsonl", ".md", ".html", ".pdf"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="explain one input (text, or an image path)",
        epilog="Files are named TEXT-METHOD-TARGET.html/.json/.png (TEXT: the first 40 characters of the text, or "
        "the file's name; TARGET: 'predicted' or the --target given) and never replace earlier ones: a name in use "
        "gets the next free suffix -2, -3, ... unless --overwrite is given.",
    )
    parser.add_argument(
        "input", nargs="?", default=None,
        help="the text to explain, the path of an image (image models), or - to read the text from standard input",
    )
    parser.add_argument(
        "--file", default=None, metavar="PATH", help="read the text to explain from this UTF-8 file (default: INPUT is the text)",
    )
    parser.add_argument(
        "--literal", action="store_true", help="explain INPUT as text even when it looks like a file path",
    )
    parser.add_argument("--model", default="default", help="hub name or local path (default: the embedded sentiment "
                        "model for text, the embedded Fashion-MNIST classifier for an image path)")
    parser.add_argument("--allow-random-head", action="store_true",
                        help="explain a model whose classification head is missing from its checkpoint (random, with a warning)")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=available(), help="how relevance is computed")
    parser.add_argument("--target", default=None, help="class index, label name, or 'a vs b' (default: predicted class)")
    parser.add_argument("--start-layer", type=int, default=None, help="first block of the rollout (rollout methods; default: 0)")
    parser.add_argument(
        "--out", default="relevancy-out", help="folder for the HTML/PNG/JSON files, relative to the current directory",
    )
    parser.add_argument(
        "--format", default=None,
        help="comma-separated from html, json, png (png: images only; answers of language models: html) "
        "(default: html,json for text, html,json,png for images)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace files of the same name instead of adding a suffix -2, -3, ...",
    )
    parser.add_argument("--no-color", action="store_true", help="plain terminal output")
    parser.add_argument("--generate", type=int, default=None, metavar="N",
                        help="causal LMs: generate N tokens and explain each of them (prompt tokens per answer token; default: 1)")
    parser.add_argument("--drop-sink", action="store_true", help="causal LMs: leave the first token out of normalisation")
    parser.add_argument("--checkpoint", action="store_true",
                        help="long inputs: keep no block's graph, recompute blocks in each backward pass (slower, far less memory)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..adapters.default_model import default_model_for
    from ..explainer import Explainer

    formats = _requested_formats(args.format)  # refused before the model loads
    text, name = _read_input(args)
    if args.model == "default" and args.input not in (None, "-") and not args.literal:
        args.model = default_model_for(args.input)  # an image path gets the embedded image model
    explainer = Explainer.from_pretrained(args.model, allow_random_head=args.allow_random_head, checkpoint=args.checkpoint)
    if explainer.structure.causal:
        return _explain_answer(explainer, args, _text_input(text, args), name, formats)
    options = {} if args.start_layer is None else {"start_layer": args.start_layer}
    target = int(args.target) if args.target is not None and args.target.lstrip("-").isdigit() else args.target
    image_input = explainer.structure.modality == "image"
    if image_input:
        if args.input in (None, "-"):
            raise ValueError(f"{args.model} explains images: give the image's path as INPUT, not --file or standard input")
        if not Path(args.input).exists():
            raise FileNotFoundError(f"{args.model} explains images: no image file at {args.input}")
        name = Path(args.input).stem
        formats = formats or {"html", "json", "png"}
    else:
        text = _text_input(text, args)
        if formats and "png" in formats:
            raise ValueError("--format png is for images; a text explanation is written as html and json")
        formats = formats or {"html", "json"}
    explanation = explainer(text if not image_input else args.input, target=target, method=args.method, **options)
    print(explanation.title)
    if explanation.tokens is not None:
        print(explanation.to_terminal(use_color=not args.no_color and sys.stdout.isatty()))
        if not explanation.empty:
            strongest = sorted(explanation.words(relative=True), key=lambda x: -x[1])[:5]
            print("top words (relative to the strongest): " + ", ".join(f"{w} ({s:+.2f})" for w, s in strongest))
    if explanation.notice:
        print(explanation.notice)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target_name = "predicted" if args.target is None else args.target
    stem = _free_stem(out, f"{_slug(name)}-{args.method}-{_slug(target_name)}", formats, args.overwrite)
    written = []
    if "html" in formats:
        written.append(explanation.save_html(out / f"{stem}.html"))
    if "json" in formats:
        written.append(explanation.save_json(out / f"{stem}.json"))
    if "png" in formats:
        written.append(explanation.save_png(out / f"{stem}.png"))
    for path in written:
        print(f"wrote {path}")
    return 0


def _requested_formats(text: str | None) -> set[str] | None:
    """The --format list, or None for the modality's default; unknown names are refused."""
    if text is None:
        return None
    formats = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(formats - set(FORMATS))
    if unknown or not formats:
        raise ValueError(
            f"unknown --format {', '.join(map(repr, unknown)) or repr(text)}: choose from {', '.join(FORMATS)}, "
            "comma-separated (png for images only)"
        )
    return formats


def _read_input(args) -> tuple[str, str]:
    """(the input, the name its files get) from INPUT, --file or standard input (checked as UTF-8)."""
    from ..data_checks import decode_utf8, read_utf8

    if args.file is not None:
        if args.input is not None:
            raise ValueError("give the text either as INPUT or with --file, not both")
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"--file: no file at {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(f"--file reads text; give an image as INPUT: relevancy explain {path} --model IMAGE_MODEL")
        return read_utf8(path), path.stem
    if args.input is None:
        raise ValueError("nothing to explain: give the text (or an image path) as INPUT, --file PATH, or - for standard input")
    if args.input == "-":
        text = decode_utf8(sys.stdin.buffer.read(), "standard input", "send UTF-8, e.g. through iconv -f WINDOWS-1252 -t UTF-8")
        return text, text
    return args.input, args.input


def _text_input(text: str, args) -> str:
    """The text for a text model. From INPUT: undecodable command-line bytes (which arrive as surrogate
    escapes that tokenizers refuse obscurely) are named, and what looks like a file path is refused."""
    from ..data_checks import decode_utf8

    if args.input in (None, "-"):
        return text
    fix = "switch the terminal to UTF-8, or save the text as a UTF-8 file and give it with --file PATH"
    text = decode_utf8(text.encode("utf-8", "surrogateescape"), "the text argument", fix)
    if not args.literal:
        _refuse_path(text, args.model)
    return text


def _refuse_path(text: str, model: str) -> None:
    """A text model would explain a file's path as if it were a sentence: say so instead."""
    candidate = text.strip()
    try:
        exists = "\n" not in candidate and Path(candidate).is_file()
    except (OSError, ValueError):  # a name too long or with NUL bytes is no path
        exists = False
    one_word = candidate and not any(character.isspace() for character in candidate)
    if not exists and not (one_word and Path(candidate).suffix.lower() in PATH_SUFFIXES):
        return
    found = "that file exists" if exists else "no such file exists"
    image = Path(candidate).suffix.lower() in IMAGE_SUFFIXES
    hint = "; to explain an image, give an image classifier with --model" if image else ""
    raise ValueError(
        f"{candidate!r} looks like a file path ({found}), but --model {model} explains text: to explain the text in "
        f"a file, use --file {candidate} or standard input (relevancy explain - < {candidate}); to explain these "
        f"characters themselves, add --literal{hint}"
    )


def _explain_answer(explainer, args, text: str, name: str, formats: set[str] | None) -> int:
    from ..generation import explain_answer
    from ..viz.text import render_terminal

    if formats and formats != {"html"}:
        raise ValueError("a language model's answer is written as html only: use --format html")
    result = explain_answer(explainer.model, explainer.processor, text, max_new_tokens=args.generate or 1,
                            method=args.method, checkpoint=args.checkpoint)
    normalised = result.normalised(args.drop_sink)
    prompt = result.tokens[: result.prompt_length]
    print(f"{args.method} — answer: {''.join(result.answer_tokens)!r}")
    color = not args.no_color and sys.stdout.isatty()
    for t, token in enumerate(result.answer_tokens):
        print(f"{token!r:>14}: " + render_terminal(prompt, list(normalised[t, : result.prompt_length]), signed=result.signed, use_color=color))
    print("prompt tokens carrying the answer: " + ", ".join(f"{w!r} ({s:.2f})" for w, s in result.top_prompt_tokens(5, args.drop_sink)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = _free_stem(out, f"{_slug(name)}-{args.method}-answer", {"html"}, args.overwrite)
    path = out / f"{stem}.html"
    path.write_text(result.to_html(args.drop_sink), encoding="utf-8")
    print(f"wrote {path}")
    return 0


def _free_stem(out: Path, stem: str, formats, overwrite: bool) -> str:
    """``stem``, or with the first suffix -2, -3, ... whose files (one per format) do not exist yet."""
    if overwrite:
        return stem
    for number in itertools.count(1):
        candidate = stem if number == 1 else f"{stem}-{number}"
        if not any((out / f"{candidate}.{extension}").exists() for extension in formats):
            return candidate


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text.lower()).strip("-")[:40] or "input"

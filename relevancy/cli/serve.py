"""``relevancy serve``: the web explorer on a local port (the ``serve`` extra)."""

from __future__ import annotations

import sys

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="a local web page to explore explanations, audits and evaluations",
        epilog="Models are loaded once at start-up; the page can use only these models and folders.",
    )
    parser.add_argument("--model", action="append", default=None, metavar="M",
                        help="a model to serve (repeat for several): hub name, local path or .gguf file "
                        "(default: the embedded sentiment model and the embedded Fashion-MNIST image model)")
    parser.add_argument("--audit", action="append", default=[], metavar="DIR",
                        help="an audit folder written by `relevancy audit --out DIR` (repeatable)")
    parser.add_argument("--evaluation", action="append", default=[], metavar="DIR",
                        help="an evaluation folder written by `relevancy evaluate --out DIR` (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but this machine shows a warning")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on")
    parser.set_defaults(run=run)


def run(args) -> int:
    try:
        import uvicorn

        from ..serve import create_app, load_models
        from ..serve.folders import check_folders
        from ..serve.models import DEFAULT_MODELS
    except ImportError as error:
        raise ImportError(f"relevancy serve needs the serve extra: pip install -e \".[serve]\" ({error})") from error
    check_folders(args.audit, args.evaluation)  # before the models load
    app = create_app(load_models(args.model or DEFAULT_MODELS), audits=args.audit, evaluations=args.evaluation)
    if args.host not in LOCAL_HOSTS:
        print(f"relevancy serve: warning: listening on {args.host}: other machines can reach the explorer and run "
              "the models on this one; use --host 127.0.0.1 to keep it local", file=sys.stderr)
    print(f"relevancy explorer: http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/ (Ctrl+C stops it)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

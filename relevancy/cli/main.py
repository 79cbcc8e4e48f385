"""``relevancy`` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import UnsupportedModelError

COMMANDS = ("explain", "audit", "finetune", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relevancy", description="Explain what a Transformer based its prediction on (Chefer et al. 2021)."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"relevancy.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (UnsupportedModelError, ValueError, TypeError, FileNotFoundError, OSError, ImportError) as error:
        print(f"relevancy {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``relevancy`` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import UnsupportedModelError

COMMANDS = ("explain", "audit", "finetune", "evaluate", "serve")


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it in words or there is
    none to say (a flag that is off, an option that is unset)."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relevancy", description="Explain what a Transformer based its prediction on (Chefer et al. 2021).",
        epilog="Output goes to folders in the current directory unless --out says otherwise: relevancy-out/ "
        "(explain), relevancy-audit/ (audit), relevancy-eval/ (evaluate). relevancy COMMAND --help lists each "
        "command's options and their defaults.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"relevancy {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"relevancy.cli.{name}").add_parser(subparsers)
        subparsers.choices[name].formatter_class = HelpFormatter
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

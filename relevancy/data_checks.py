"""Checks shared by every reader of user text (audit, evaluation, the CLI): UTF-8 decoding whose errors
name the file and line, and one rule for rows without usable text, which are skipped and reported."""

from __future__ import annotations

import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def decode_utf8(data: bytes, where: str, fix: str) -> str:
    """``data`` as text (a leading UTF-8 byte-order mark dropped); otherwise a ValueError naming
    ``where``, the line and the offending byte, followed by ``fix``."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if data.startswith(_UTF16_MARKS):
            found = "it is UTF-16, says its byte-order mark"
        else:
            line = data.count(b"\n", 0, error.start) + 1
            start = max(data.rfind(b"\n", 0, error.start) + 1, error.start - 20)
            before = data[start : error.start].decode("utf-8", "replace")
            found = f"line {line}: byte 0x{data[error.start]:02x} after {before!r} is not UTF-8"
        raise ValueError(f"{where} is not UTF-8 text ({found}): {fix}") from None


def read_utf8(path) -> str:
    """The text of a UTF-8 file; otherwise a ValueError naming the file, line and byte, and how to convert it."""
    path = Path(path)
    data = path.read_bytes()
    source = "UTF-16" if data.startswith(_UTF16_MARKS) else "WINDOWS-1252"  # the usual encoding of such files
    converted = path.with_name(f"{path.stem}-utf8{path.suffix}")
    fix = f"save it as UTF-8, e.g. iconv -f {source} -t UTF-8 {shlex.quote(str(path))} > {shlex.quote(str(converted))}"
    return decode_utf8(data, str(path), fix)


def read_parquet_rows(path) -> list[dict]:
    """The rows of a Parquet file as dicts (pyarrow, an optional dependency the ``ray`` extra brings)."""
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise ImportError(f"reading {path} (Parquet) needs pyarrow: pip install pyarrow (the ray extra includes it)") from None
    return parquet.read_table(str(path)).to_pylist()


def text_problem(text) -> str | None:
    """Why ``text`` cannot be explained or scored (None when it can): the one rule of every data reader."""
    if not isinstance(text, str):
        return f"the text is {type(text).__name__}, not a string"
    if not text:
        return "the text is empty"
    if not text.strip():
        return "the text is only whitespace"
    return None


class SkippedRowsWarning(UserWarning):
    """Rows without usable text were left out of a data set (its ``skipped`` lists them)."""


@dataclass(frozen=True)
class SkippedRow:
    """A row left out because it has no usable text: its id, where it is (file:line or row) and why."""

    id: str
    where: str
    reason: str


def describe_skipped(skipped: list[SkippedRow], source: str) -> str:
    """The skipped rows in one line: the first ten, and the count of all."""
    shown = "; ".join(f"{row.id} ({row.reason})" if row.where == source else f"{row.id} ({row.where}: {row.reason})"
                      for row in skipped[:10])
    more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    return f"skipped {len(skipped)} row(s) of {source} without text: {shown}{more}"


def warn_skipped(skipped: list[SkippedRow], source: str, kept: int) -> None:
    """A SkippedRowsWarning listing the skipped rows, or a ValueError when no row is left."""
    if not skipped:
        return
    if not kept:
        raise ValueError(
            f"none of the {len(skipped)} rows of {source} has text to use ({describe_skipped(skipped, source)}). "
            "Check the text column (CLI: --text-column)"
        )
    warnings.warn(describe_skipped(skipped, source), SkippedRowsWarning, stacklevel=3)

"""Progress of long single calls (integrated gradients' steps, an answer's tokens) on a terminal."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

AUTO_DELAY_S = 2.0  # automatic bars appear only for calls that last longer than this


def progress_bar(total: int, description: str, progress: bool | None = None, unit: str = "it") -> tqdm:
    """A tqdm bar on standard error that disappears when done. ``progress``: None shows it when
    standard error is a terminal and the call lasts more than ``AUTO_DELAY_S`` (so that short
    calls, logs and pipes stay clean), True always, False never."""
    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(
        total=total, desc=description, unit=unit, disable=not show, leave=False, file=sys.stderr,
        delay=AUTO_DELAY_S if progress is None else 0.0,
    )

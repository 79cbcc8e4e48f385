"""Repository scripts and benchmarks (files, not package modules) loaded as modules for tests."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    """The script at ``relative`` (to the repository root), e.g. "benchmarks/text_evaluation.py"."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

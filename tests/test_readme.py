"""Every Python block of README.md runs as written (offline, with the embedded default model)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_readme_has_python_blocks_and_they_are_found():
    blocks = python_blocks("x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a\n```\n")
    assert blocks == ["a = 1\n", "b = a\n"]
    assert python_blocks(README.read_text(encoding="utf-8"))


def test_every_python_block_of_the_readme_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # whatever a block writes stays out of the repository
    namespace: dict = {"__name__": "__readme__"}
    for number, block in enumerate(python_blocks(README.read_text(encoding="utf-8")), start=1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)  # noqa: S102

"""Records compared field by field, floats within a tolerance: the same documents batched with
other documents are padded otherwise, which moves float results by rounding only."""

import pytest


def assert_close(got, want, where: str = "", tolerance: float = 1e-6) -> None:
    """Equal, except that floats may differ by ``tolerance``; recurses into lists and dicts."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for name in want:
            assert_close(got[name], want[name], f"{where}.{name}", tolerance)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for index, (a, b) in enumerate(zip(got, want)):
            assert_close(a, b, f"{where}[{index}]", tolerance)
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=tolerance), where
    else:
        assert got == want, where

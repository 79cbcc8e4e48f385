"""Coverage (issue 11): every zoo family under every method, as ``expected.EXPECTED`` says.

Each model is built once per module. An "ok" call must explain the model's own logits, leave the
model exactly as it was, give finite scores and (full LRP) keep the relevance total across block
boundaries; a refusal must be relevancy's own clear error with the expected message; anything
else is a strict xfail ("issue 11") that fails as soon as it is fixed, until the table says so.
"""

from __future__ import annotations

import pytest
import torch

from .expected import EXPECTED, Refused, XFail, expectation
from .probe import METHODS, passes, probe_call
from .zoo import FAMILIES, KINDS, families


def _cases():
    for family in FAMILIES:
        for method in METHODS:
            expected = expectation(family, method)
            marks = [pytest.mark.xfail(strict=True, reason=f"issue 11: {expected.now}")] if isinstance(expected, XFail) else []
            yield pytest.param(family, method, marks=marks, id=f"{family}-{method}")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: extra threads only contend (about 10x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = FAMILIES[name].build()
        return cache[name]

    return get


@pytest.mark.parametrize("family, method", list(_cases()))
def test_coverage(family, method, built):
    model, inputs = built(family)
    record = probe_call(model, inputs, method)
    expected = expectation(family, method)
    if isinstance(expected, Refused):
        assert record["status"].startswith("error: "), f"expected a refusal, got {record['status']}"
        assert expected.error in record["error_classes"], record["status"]
        assert expected.substring in record["status"], record["status"]
        assert record["clear"], f"not a clear refusal: {record['traceback']}"
        assert not record["restoration"], record["restoration"]
        return
    problems = passes(record)
    if isinstance(expected, XFail) and record.get("clear") and not record["restoration"]:
        return  # a clear refusal is also a fix: the strict xfail then reports it
    assert not problems, "; ".join(problems)


def test_the_table_covers_the_zoo():
    assert set(EXPECTED) == set(FAMILIES)
    for name, entry in EXPECTED.items():
        if isinstance(entry, dict):
            assert "*" in entry and set(entry) - {"*"} <= set(METHODS), name


def test_the_zoo_covers_the_families_of_issue_11():
    minimum = {"text-classifier": 21, "image-classifier": 12, "causal-lm": 23, "seq2seq": 2, "clip": 1}
    assert {kind: len(families(kind)) >= count for kind, count in minimum.items()} == dict.fromkeys(KINDS, True)


@pytest.mark.parametrize("name", [n for n, f in FAMILIES.items() if f.kind != "image-classifier"])
def test_zoo_text_inputs_are_a_padded_batch_of_two(name, built):
    """The second sample is padded where the model takes a mask; the first one is not."""
    model, inputs = built(name)
    assert inputs["input_ids"].shape[0] == 2
    assert not model.training
    mask = inputs.get("attention_mask")
    if mask is not None:
        assert mask[0].all() and not mask[1].all()

"""Repeated calls hold memory flat: nothing of a call's graphs survives it, for every method.

A tensor kept alive only from C++ (one whose attributes referred to itself while autograd saved
it, which kept each forward's whole graph) is invisible to gc's collection but not to
``gc.get_objects``: the tensors alive after 4 calls are compared with those before. A Llama-style
model has the operation that once leaked (``.to()`` returning its input, in RMSNorm)."""

from __future__ import annotations

import gc

import pytest
import torch

import relevancy
from tests.generation.test_llm import build as build_llm

METHODS = relevancy.available_methods()


def _live_tensors() -> list[torch.Tensor]:
    gc.collect()
    return [value for value in gc.get_objects() if type(value) in (torch.Tensor, torch.nn.Parameter)]


@pytest.mark.parametrize("method", METHODS)
def test_repeated_calls_hold_memory_flat(method):
    model = build_llm("llama")
    inputs = {"input_ids": torch.randint(0, 100, (1, 8), generator=torch.Generator().manual_seed(0))}
    relevancy.attribute(model, inputs, method)  # first call: lazily built caches (e.g. rotary tables)
    before = _live_tensors()  # held here, so that no new tensor can take the id of one of them
    for _ in range(4):
        relevancy.attribute(model, inputs, method)
    known = {id(tensor) for tensor in before}
    survivors = [tensor for tensor in _live_tensors() if id(tensor) not in known]
    assert not survivors, f"{len(survivors)} tensors outlived 4 calls, e.g. {[tuple(t.shape) for t in survivors[:5]]}"

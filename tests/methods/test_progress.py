"""Progress bars of long single calls: integrated gradients' steps and an answer's tokens. Shown
on standard error when it is a terminal (or when asked), silent otherwise."""

from __future__ import annotations

import io
import sys

import pytest
import torch

import relevancy
from relevancy.generation import explain_answer
from relevancy.methods import get_method
from relevancy.progress import progress_bar
from tests.generation.test_llm import build as build_llm
from tests.models import build, inputs_for


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Tokenizer:  # ids are the words' numbers
    def __call__(self, text, add_special_tokens=True, return_tensors=None):
        return {"input_ids": ([1] if add_special_tokens else []) + [int(word) for word in text.split()]}

    def convert_ids_to_tokens(self, ids):
        return [str(i) for i in ids]


@pytest.mark.parametrize("stderr, shown", [(io.StringIO, False), (_Terminal, True)])
def test_automatic_bars_follow_whether_stderr_is_a_terminal(monkeypatch, stderr, shown):
    monkeypatch.setattr(sys, "stderr", stderr())
    with progress_bar(3, "work") as bar:
        assert bar.disable is not shown


def test_integrated_gradients_is_silent_when_stderr_is_not_a_terminal(capsys):
    model = build("bert")
    relevancy.attribute(model, inputs_for(model), "integrated_gradients")
    assert capsys.readouterr().err == ""


def test_integrated_gradients_reports_its_steps_when_asked(capsys):
    model = build("bert")
    forced = relevancy.attribute(model, inputs_for(model), get_method("integrated_gradients", steps=7, progress=True))
    err = capsys.readouterr().err
    assert "integrated gradients" in err and "/7" in err
    quiet = relevancy.attribute(model, inputs_for(model), get_method("integrated_gradients", steps=7))
    torch.testing.assert_close(forced.scores, quiet.scores, rtol=0, atol=0)


def test_explain_answer_reports_its_tokens_when_asked_and_is_silent_otherwise(capsys):
    model = build_llm("llama")
    explain_answer(model, _Tokenizer(), "5 17 42 8", answer="9 61 23 7", batch_size=2)
    assert capsys.readouterr().err == ""
    explain_answer(model, _Tokenizer(), "5 17 42 8", answer="9 61 23 7", batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "targets" in err and "/4" in err

"""Small models saved to disk, as the CLI loads them, and a runner that calls the CLI in-process."""

import pytest
import torch

from relevancy.cli.main import main
from tests.audit import toy


def save_text_model(folder, silent: bool = False):
    """The toy word-level BERT; ``silent`` zeroes its classifier, so no logit depends on the input and
    every gradient-based map is zero over the real tokens."""
    model = toy.model()
    if silent:
        with torch.no_grad():
            model.classifier.weight.zero_()
    model.save_pretrained(folder)
    toy.tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def text_model(tmp_path_factory):
    return save_text_model(tmp_path_factory.mktemp("text-model"))


@pytest.fixture(scope="session")
def silent_text_model(tmp_path_factory):
    return save_text_model(tmp_path_factory.mktemp("silent-text-model"), silent=True)


@pytest.fixture
def cli(capsys):
    """cli(*argv) -> (exit code, stdout, stderr)."""

    def run(*argv):
        code = main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run

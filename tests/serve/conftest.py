"""The explorer's fixtures: the embedded default models, a tiny seeded causal LM with a word-level
tokenizer, an audit folder and an evaluation folder written by the library's own runners, and a
live server on 127.0.0.1."""

from __future__ import annotations

import csv
import socket
import threading
import time

import pytest
import torch

pytest.importorskip("starlette", reason="the explorer needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="the explorer's API tests need httpx: pip install -e '.[serve-test]'")

from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from relevancy.explainer import Explainer  # noqa: E402
from relevancy.serve import ServedModel, create_app, load_models  # noqa: E402
from tests.audit import toy  # noqa: E402
from tests.models import redraw  # noqa: E402
from tests.threads import one_thread  # noqa: E402, F401  (autouse, package scope)

# a handful of reviews, half of them positive, so that an audit has words to rank and test
REVIEWS = [
    ("a gorgeous and moving film", "positive"),
    ("a dull, lifeless and boring mess", "negative"),
    ("the acting is superb and the story is moving", "positive"),
    ("an awful film with a dull plot", "negative"),
    ("witty and charming from start to finish", "positive"),
    ("a tedious and predictable movie", "negative"),
    ("one of the best films of the year", "positive"),
    ("the worst film of the year", "negative"),
    ("a lovely, warm and funny story", "positive"),
    ("boring characters and a weak story", "negative"),
    ("a smart, funny and gorgeous movie", "positive"),
    ("the plot is dull and the acting is awful", "negative"),
]
ANSWER_WINDOW = 24  # positions of the tiny causal LM: prompts longer than this are refused


def tiny_causal_lm() -> Explainer:
    """A seeded two-layer GPT-2 over the toy word-level vocabulary (words in, words out)."""
    tokenizer = toy.tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=len(tokenizer), n_positions=ANSWER_WINDOW,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    model = GPT2LMHeadModel(config)
    redraw(model, 0)
    return Explainer(model.eval(), tokenizer)


@pytest.fixture(scope="session")
def models() -> dict[str, ServedModel]:
    served = load_models(["default", "default-image"])
    served["tiny-lm"] = ServedModel("tiny-lm", tiny_causal_lm())
    return served


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(REVIEWS)
    return path


@pytest.fixture(scope="session")
def audit_folder(models, reviews_csv, tmp_path_factory):
    """``relevancy audit`` of the reviews with the default model; returns (folder, the AuditReport)."""
    from relevancy.audit import AuditSettings, Thresholds, audit

    folder = tmp_path_factory.mktemp("audits") / "reviews-audit"
    explainer = models["default"].explainer
    settings = AuditSettings(shortcut_candidates=4, shortcut_documents=8, thresholds=Thresholds(min_count=2))
    report = audit(explainer.model, explainer.processor, reviews_csv, out=folder, settings=settings, progress=False)
    return folder, report


@pytest.fixture(scope="session")
def evaluation_folder(models, reviews_csv, tmp_path_factory):
    """``relevancy evaluate`` (perturbation test, two methods) of the reviews with the default model."""
    from relevancy.evaluation import evaluate, load_dataset

    folder = tmp_path_factory.mktemp("evaluations") / "reviews-eval"
    explainer = models["default"].explainer
    dataset = load_dataset(reviews_csv, "csv")
    evaluate(explainer.model, explainer.processor, dataset, ["transformer_attribution", "rollout"], ["perturbation"],
             out_dir=folder, limit=6, progress=False)
    return folder


@pytest.fixture(scope="session")
def app(models, audit_folder, evaluation_folder):
    return create_app(models, audits=[audit_folder[0]], evaluations=[evaluation_folder])


@pytest.fixture(scope="session")
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def server(app):
    """The app on a free port of 127.0.0.1, served by uvicorn in a thread (as ``relevancy serve`` does)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)

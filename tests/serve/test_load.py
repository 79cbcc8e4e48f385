"""50 concurrent requests mixing text, images, answers and bad input against a live server on
127.0.0.1: every one is answered, correctly, in bounded time, and the models come back unchanged."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from relevancy.adapters.default_model import IMAGE_SAMPLES
from relevancy.generation import explain_answer
from tests.models import assert_unchanged, snapshot

REQUESTS = 50
METHODS = ["transformer_attribution", "rollout"]
TEXTS = ["a gorgeous and moving film", "a dull, lifeless mess", "witty but far too long"]
IMAGES = sorted(IMAGE_SAMPLES.glob("*.png"))


def test_concurrent_mixed_requests_are_all_answered_and_leave_the_models_unchanged(server, models):
    before = {name: snapshot(served.explainer.model) for name, served in models.items()}
    text_model, image_model, lm = (models[n].explainer for n in ("default", "default-image", "tiny-lm"))
    expected_text = {(t, m): text_model(t, method=m).scores for t in TEXTS for m in METHODS}
    expected_image = {(p.name, m): image_model(p, method=m).scores for p in IMAGES for m in METHODS}
    expected_answer = explain_answer(lm.model, lm.processor, "the plot was", max_new_tokens=2, method="rollout")

    def job(i: int):
        kind = ("text", "image", "answer", "bad-text", "bad-image")[i % 5]
        with httpx.Client(base_url=server, timeout=180) as client:
            if kind == "text":
                text = TEXTS[i % len(TEXTS)]
                response = client.post("/api/explain/text", json={"model": "default", "text": text, "methods": METHODS})
                return kind, text, response
            if kind == "image":
                path = IMAGES[i % len(IMAGES)]
                response = client.post(f"/api/explain/image?model=default-image&methods={','.join(METHODS)}",
                                       content=path.read_bytes())
                return kind, path.name, response
            if kind == "answer":
                body = {"model": "tiny-lm", "prompt": "the plot was", "new_tokens": 2, "method": "rollout"}
                return kind, None, client.post("/api/explain/answer", json=body)
            if kind == "bad-text":
                return kind, None, client.post("/api/explain/text", json={"model": "default", "text": "good " * 600})
            return kind, None, client.post("/api/explain/image?model=default-image", content=b"not a picture")

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        answers = list(pool.map(job, range(REQUESTS)))
    elapsed = time.monotonic() - start
    assert len(answers) == REQUESTS and elapsed < 300
    for kind, key, response in answers:
        if kind == "text":
            assert response.status_code == 200, response.text
            for result in response.json()["results"]:
                scores = [t["score"] for t in result["tokens"]]
                np.testing.assert_allclose(scores, expected_text[(key, result["method"])], rtol=1e-5, atol=1e-8)
        elif kind == "image":
            assert response.status_code == 200, response.text
            for result in response.json()["results"]:
                np.testing.assert_allclose(result["json"]["patch_scores"], expected_image[(key, result["method"])],
                                           rtol=1e-5, atol=1e-8)
        elif kind == "answer":
            assert response.status_code == 200, response.text
            data = response.json()
            assert data["tokens"] == expected_answer.tokens
            np.testing.assert_allclose(data["rows"]["kept"], expected_answer.normalised(False), atol=1e-6)
        elif kind == "bad-text":
            assert response.status_code == 400 and "reads at most 512" in response.json()["error"]
        else:
            assert response.status_code == 400 and "not an image" in response.json()["error"]
    for name, served in models.items():
        assert_unchanged(served.explainer.model, before[name])
    with httpx.Client(base_url=server) as client:  # still serving
        assert client.get("/api/config").status_code == 200

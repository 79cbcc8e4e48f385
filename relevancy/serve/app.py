"""The explorer's web app (Starlette): one static page and a JSON API over the library's public API.

Every map comes from ``Explainer`` (text, images) or ``relevancy.generation.explain_answer`` (causal
LMs), every audit figure from the audit's own report and page code: this module only checks input,
serialises, and keeps one request at a time on each model.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..audit import page
from ..errors import UnsupportedModelError, UnsupportedOperationError
from ..methods import available
from .folders import EvaluationFolder, load_audit_report, unique_names
from .models import ServedModel

STATIC = Path(__file__).resolve().parent / "static"
COMPARED_METHODS = ("transformer_attribution", "gradient_x_attention", "rollout", "integrated_gradients")
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
WHAT = {"text": "text", "image": "images", "answer": "the answers of a causal language model"}  # by model kind
log = logging.getLogger("relevancy.serve")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests get a message saying the limit."""

    upload_bytes: int = 10 * 1024 * 1024
    json_bytes: int = 1024 * 1024
    text_characters: int = 20_000  # before tokenising; the model's window is checked on the tokens
    image_pixels: int = 4096 * 4096
    new_tokens: int = 64

    def describe(self) -> dict:
        return {"upload_bytes": self.upload_bytes, "text_characters": self.text_characters,
                "image_pixels": self.image_pixels, "new_tokens": self.new_tokens}


class BadRequest(Exception):
    """Input the explorer refuses, with the message the page shows (HTTP ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# errors of the library that describe the input or the request, shown to the user as they are
INPUT_ERRORS = (ValueError, TypeError, UnsupportedModelError, UnsupportedOperationError)


def create_app(models: dict[str, ServedModel], audits: list | None = None, evaluations: list | None = None,
               limits: Limits | None = None) -> Starlette:
    """The app serving ``models`` (name -> ServedModel) and the audit and evaluation folders given at
    start-up; the page names them only by the names listed in /api/config."""
    limits = limits or Limits()
    audit_folders = unique_names(audits or [])
    reports = {name: load_audit_report(folder) for name, folder in audit_folders.items()}
    evaluation_folders = {name: EvaluationFolder.load(folder) for name, folder in unique_names(evaluations or []).items()}

    def model_named(name, kind: str) -> ServedModel:
        served = models.get(name) if isinstance(name, str) else None
        if served is None:
            raise BadRequest(f"no model called {name!r} is served: choose one of {', '.join(models) or 'none'}", 404)
        if served.kind != kind:
            raise BadRequest(f"{name} explains {WHAT[served.kind]}; this view needs a model that explains {WHAT[kind]}")
        return served

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def audit_script(request: Request) -> Response:
        return Response(page.SCRIPT, media_type="text/javascript")

    async def audit_style(request: Request) -> Response:
        return Response(page.STYLE, media_type="text/css")

    async def config(request: Request) -> Response:
        return JSONResponse({
            "models": [m.describe() for m in models.values()],
            "methods": available(),
            "compared": [m for m in COMPARED_METHODS if m in available()],
            "audits": list(reports),
            "evaluations": list(evaluation_folders),
            "limits": limits.describe(),
        })

    async def explain_text(request: Request) -> Response:
        body = await _json(request, limits)
        served = model_named(body.get("model"), "text")
        text = _text_field(body, "text", limits, "type or paste a text to explain", ": explain a shorter part")
        methods = _methods(body.get("methods"))
        target = _target(body.get("target"))

        def work() -> dict:  # in a worker thread: the event loop keeps answering other requests
            with served.lock:
                explanations = [served.explainer(text, target=target, method=m) for m in methods]
            return {"model": served.name, **_prediction(explanations[0]), "results": [_text_result(e) for e in explanations]}

        return JSONResponse(await run_in_threadpool(work))

    async def explain_image(request: Request) -> Response:
        served = model_named(request.query_params.get("model"), "image")
        methods = request.query_params.get("methods")
        methods = _methods(None if methods is None else methods.split(","))
        target = _target(request.query_params.get("target"))
        upload = await _body(request, limits.upload_bytes, "the image")

        def work() -> dict:
            image = _read_image(upload, limits)
            with served.lock:
                explanations = [served.explainer(image, target=target, method=m) for m in methods]
            return {"model": served.name, **_prediction(explanations[0]), "image": _png(explanations[0].image),
                    "results": [_image_result(e) for e in explanations]}

        return JSONResponse(await run_in_threadpool(work))

    async def explain_answer(request: Request) -> Response:
        from ..generation import explain_answer as explain

        body = await _json(request, limits)
        served = model_named(body.get("model"), "answer")
        prompt = _text_field(body, "prompt", limits, "type a prompt for the model to answer")
        new_tokens = body.get("new_tokens", 8)
        if not isinstance(new_tokens, int) or isinstance(new_tokens, bool) or not 1 <= new_tokens <= limits.new_tokens:
            raise BadRequest(f"the number of tokens to generate must be a whole number from 1 to {limits.new_tokens}")
        method = _methods([body.get("method") or COMPARED_METHODS[0]])[0]
        explainer = served.explainer

        def work() -> dict:
            with served.lock:  # the tokenizer too: a fast tokenizer refuses concurrent calls
                length = len(explainer.processor(prompt)["input_ids"])
                if served.window and length + new_tokens > served.window:
                    raise BadRequest(f"the prompt is {length} tokens and {new_tokens} more are asked for, but the model "
                                     f"reads at most {served.window}: shorten the prompt or generate fewer tokens")
                result = explain(explainer.model, explainer.processor, prompt, max_new_tokens=new_tokens, method=method,
                                 progress=False)
            return {
                "model": served.name, "method": result.method, "signed": result.signed, "tokens": result.tokens,
                "prompt_length": result.prompt_length,
                "rows": {"kept": _rows(result.normalised(False)), "sink_dropped": _rows(result.normalised(True))},
                "whole": {"kept": _rows(result.summed(False)), "sink_dropped": _rows(result.summed(True))},
                "html": result.to_html(),
            }

        return JSONResponse(await run_in_threadpool(work))

    def report_named(request: Request):
        name = request.path_params["name"]
        if name not in reports:
            raise BadRequest(f"no audit folder called {name!r} is served: choose one of {', '.join(reports) or 'none'}", 404)
        return reports[name]

    async def audit_view(request: Request) -> Response:
        report = report_named(request)
        return HTMLResponse(await run_in_threadpool(page.report_body, report))

    async def audit_word(request: Request) -> Response:
        report = report_named(request)
        word = request.query_params.get("word", "")
        stats = next((s for s in report.words if s.item == word), None)
        if stats is None:
            raise BadRequest(f"the audit has no word {word!r}", 404)
        documents = [report.examples[e[1]] for e in stats.top_evidence if e[1] in report.examples]
        shown = "".join(page.render_document(record, word, report.label_name) for record in documents)
        return HTMLResponse(shown or "<p>(none of this word's documents is kept in the folder)</p>")

    def evaluation_named(request: Request) -> EvaluationFolder:
        name = request.path_params["name"]
        if name not in evaluation_folders:
            raise BadRequest(f"no evaluation folder called {name!r} is served: choose one of "
                             f"{', '.join(evaluation_folders) or 'none'}", 404)
        return evaluation_folders[name]

    async def evaluation_view(request: Request) -> Response:
        folder = evaluation_named(request)
        return JSONResponse({"results": folder.results, "plots": folder.plots})

    async def evaluation_plot(request: Request) -> Response:
        path = evaluation_named(request).plot_path(request.path_params["file"])
        if path is None:
            raise BadRequest("no such plot in this evaluation folder", 404)
        return FileResponse(path)

    routes = [
        Route("/", index),
        Route("/audit.js", audit_script),
        Route("/audit.css", audit_style),
        Route("/api/config", config),
        Route("/api/explain/text", _guarded(explain_text), methods=["POST"]),
        Route("/api/explain/image", _guarded(explain_image), methods=["POST"]),
        Route("/api/explain/answer", _guarded(explain_answer), methods=["POST"]),
        Route("/api/audits/{name}", _guarded(audit_view)),
        Route("/api/audits/{name}/word", _guarded(audit_word)),
        Route("/api/evaluations/{name}", _guarded(evaluation_view)),
        Route("/api/evaluations/{name}/plots/{file:path}", _guarded(evaluation_plot)),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    return Starlette(routes=routes)


def _guarded(endpoint):
    """Refused input as {"error": message} with its status; anything unexpected as a short message
    (the traceback goes to the server's log, never to the page), and the server keeps serving."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except INPUT_ERRORS as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        except Exception as error:  # noqa: BLE001 - the page gets a message, the log the details
            log.error("request %s failed:\n%s", request.url.path, traceback.format_exc())
            return JSONResponse({"error": f"the server could not answer ({type(error).__name__}: {error})"}, status_code=500)

    return guarded


async def _body(request: Request, limit: int, what: str) -> bytes:
    """The request body, read no further than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    too_large = f"{what} is larger than the explorer takes ({limit // (1024 * 1024)} MB at most)"
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(too_large, 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(too_large, 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request, limits: Limits) -> dict:
    raw = await _body(request, limits.json_bytes, "the request")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the request is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request must be a JSON object")
    return body


def _text_field(body: dict, key: str, limits: Limits, empty: str, advice: str = "") -> str:
    """``body[key]``: a non-blank string of at most the explorer's character limit."""
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(empty)
    if len(value) > limits.text_characters:
        raise BadRequest(f"the {key} has {len(value)} characters; the explorer takes at most {limits.text_characters}{advice}")
    return value


def _methods(names) -> list[str]:
    """The methods asked for, in order (None: the four compared by default)."""
    if names is None:
        return list(COMPARED_METHODS)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequest("methods must be a list of method names")
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        raise BadRequest(f"choose at least one method: {', '.join(available())}")
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise BadRequest(f"unknown method {', '.join(map(repr, unknown))}: choose from {', '.join(available())}")
    return names


def _target(value):
    """None (the predicted class), a class index, or a label name or "a vs b" (read by the Explainer)."""
    if value in (None, "", "predicted"):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return int(value) if value.strip().lstrip("-").isdigit() else value
    raise BadRequest("the target must be a class index, a label name or 'a vs b'")


def _read_image(data: bytes, limits: Limits):
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadRequest("no image was uploaded")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise BadRequest(f"the image has too many pixels; the explorer takes at most {limits.image_pixels:,}") from None
    except (UnidentifiedImageError, OSError):
        raise BadRequest(f"the upload is not an image the explorer reads: upload one of {', '.join(IMAGE_FORMATS)}") from None
    if image.format not in IMAGE_FORMATS:
        raise BadRequest(f"{image.format} images are not read here: upload one of {', '.join(IMAGE_FORMATS)}")
    width, height = image.size
    if width * height > limits.image_pixels:
        raise BadRequest(f"the image is {width}x{height} pixels; the explorer takes at most {limits.image_pixels:,} pixels")
    try:
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadRequest(f"the image file is damaged and cannot be read ({error})") from None
    return image


def _png(array: np.ndarray) -> str:
    """An image (H, W, C in [0, 1] or uint8) as a PNG data URL."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _rows(matrix: np.ndarray) -> list:
    return np.asarray(matrix, dtype=float).round(6).tolist()


def _prediction(explanation) -> dict:
    """What every method of one call shares: the explained target and the class probabilities."""
    labels = explanation.labels or {}
    return {
        "target": explanation.target,
        "predicted": explanation.predicted_class,
        "classes": [{"index": i, "label": str(labels.get(i, i)), "probability": float(p)}
                    for i, p in enumerate(explanation.probabilities)],
    }


def _text_result(explanation) -> dict:
    """Tokens with their scores and words, each token pointing at its word (the word's index in
    ``words``, as ``Explanation.words`` lists them in order of appearance)."""
    word_index = {w: i for i, w in enumerate(dict.fromkeys(w for w in explanation.word_ids or [] if w is not None))}
    tokens = [
        {"text": token, "score": float(score), "special": bool(special),
         "word": None if explanation.word_ids is None or explanation.word_ids[i] is None else word_index[explanation.word_ids[i]]}
        for i, (token, score, special) in enumerate(zip(explanation.tokens, explanation.scores, explanation.special))
    ]
    return {
        "method": explanation.method, "signed": explanation.signed, "title": explanation.title, "notice": explanation.notice,
        "tokens": tokens, "words": [{"text": w, "score": s} for w, s in explanation.words()],
        "json": explanation.to_dict(), "html": explanation.to_html(),
    }


def _image_result(explanation) -> dict:
    """The coloured map alone (the page blends it over the image with its opacity slider, as
    ``Explanation.overlay(alpha)`` does) and the files to download."""
    return {
        "method": explanation.method, "signed": explanation.signed, "title": explanation.title, "notice": explanation.notice,
        "heatmap": _png(explanation.overlay(alpha=1.0)), "overlay": _png(explanation.overlay()),
        "json": explanation.to_dict(), "html": explanation.to_html(),
    }

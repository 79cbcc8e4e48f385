"""Coverage probe (issue 11): every zoo family x method through ``relevancy.attribute``.

For each call it records what a user cannot see from the result alone: whether the logits the
method explains are the model's own (a plain ``model(**inputs)`` forward, before and after the
call), whether the model came back exactly as it was, NaN/inf in the scores, and for full LRP how
much relevance each block boundary and the input keep. Run as

    python3 -m tests.coverage.probe [--family NAME ...] [--method NAME ...] [--json PATH] [--suggest-expected]
"""

from __future__ import annotations

import argparse
import json
import re
import time
import traceback
import warnings
from pathlib import Path

import torch
from torch import nn

import relevancy
from relevancy.adapters.structure import describe
from relevancy.engine import Run
from relevancy.methods import get_method
from relevancy.rules.base import Pass
from relevancy.targets import as_target
from relevancy.tracing import RelevanceScope

from .zoo import FAMILIES, Family

METHODS = (
    "transformer_attribution", "gradient_x_attention", "full_lrp", "input_x_gradient", "rollout", "raw_attention",
    "lrp_rollout", "partial_lrp", "attention_gradcam", "integrated_gradients", "attnlrp", "cp_lrp",
)
METHOD_OPTIONS = {"integrated_gradients": {"steps": 2}}
RTOL, ATOL = 1e-4, 1e-5  # logits equal to the model's own
CONSERVATION_TOL = 1e-3  # relative deviation of per-sample relevance totals across block boundaries
CLEAR_ERRORS = ("UnsupportedOperationError", "UnsupportedModelError")
PACKAGE = str(Path(relevancy.__file__).resolve().parent)
DEFAULT_JSON = Path("out") / "coverage-probe.json"


# -- the model's own output ------------------------------------------------------------------------
def output_logits(output) -> torch.Tensor:
    """A forward's logits: ``.logits``, or an image-text model's image-to-text similarities."""
    for key in ("logits", "logits_per_image"):
        value = getattr(output, key, None)
        if isinstance(value, torch.Tensor):
            return value
    return output


@torch.no_grad()
def plain_logits(model: nn.Module, inputs: dict) -> torch.Tensor:
    return output_logits(model(**inputs)).detach().clone()


def logits_difference(explained: torch.Tensor, plain: torch.Tensor) -> float:
    """max |explained - plain| / max |plain| (inf when the shapes differ)."""
    if explained.shape != plain.shape:
        return float("inf")
    return float((explained.detach() - plain).abs().max() / plain.abs().max().clamp_min(1e-12))


def same_logits(explained: torch.Tensor, plain: torch.Tensor) -> bool:
    return explained.shape == plain.shape and torch.allclose(explained.detach(), plain, rtol=RTOL, atol=ATOL)


# -- everything a call must leave as it was ------------------------------------------------------
def _hook_dicts(owner) -> dict:
    return {key: tuple(value) for key, value in vars(owner).items() if "hooks" in key and isinstance(value, dict)}


def _global_hooks() -> dict:
    module = torch.nn.modules.module
    return {key: len(value) for key, value in vars(module).items() if key.startswith("_global") and isinstance(value, dict)}


def snapshot(model: nn.Module, inputs: dict) -> dict:
    return {
        "state": {key: value.detach().clone() for key, value in model.state_dict().items()},
        "parameters": [id(p) for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "module hooks": [_hook_dicts(m) for m in model.modules()],
        "tensor hooks": [len(getattr(p, "_backward_hooks", None) or {}) for p in model.parameters()],
        "global hooks": _global_hooks(),
        "attention": {
            name: module.config._attn_implementation
            for name, module in model.named_modules()
            if hasattr(getattr(module, "config", None), "_attn_implementation")
        },
        "attributes": [sorted(vars(m)) for m in model.modules()],
        "grad mode": torch.is_grad_enabled(),
        "inputs": {key: value.clone() for key, value in inputs.items() if isinstance(value, torch.Tensor)},
    }


def restoration_differences(before: dict, after: dict) -> list[str]:
    """What differs between two snapshots, one line each (empty: the model came back as it was)."""
    found = []
    for key, value in before.items():
        other = after[key]
        if key in ("state", "inputs"):
            changed = [name for name in value if name not in other or not torch.equal(value[name], other[name])]
            if changed or set(other) != set(value):
                found.append(f"{key}: {', '.join(changed[:3]) or 'keys'} changed")
        elif key == "grads":
            if any((a is None) != (b is None) or (a is not None and not torch.equal(a, b)) for a, b in zip(value, other)):
                found.append("grads changed")
        elif value != other:
            found.append(f"{key} changed")
    return found


# -- conservation of full LRP --------------------------------------------------------------------
def _per_sample(relevance: torch.Tensor, batch: int) -> torch.Tensor:
    """Per-sample totals of a relevance tensor whose batch dimension is first (or second: XLNet)."""
    if relevance.shape[0] != batch and relevance.dim() > 1 and relevance.shape[1] == batch:
        relevance = relevance.transpose(0, 1)
    return relevance.reshape(relevance.shape[0], -1).sum(-1).double()


def _deviation(values: torch.Tensor, reference: torch.Tensor) -> float:
    return float(((values - reference).abs() / reference.abs().clamp_min(1e-12)).max())


def conservation(model: nn.Module, inputs: dict) -> dict:
    """Per-sample relevance totals of one LRP pass (the predicted class, seeded with 1): at every
    block boundary (0 = the first block's input, L = the last block's output) and at the input
    (embeddings or pixels), and their largest relative deviations from the last block's output."""
    structure = describe(model)
    target = as_target(None, structure.label_index)
    batch = next(iter(v for v in inputs.values() if isinstance(v, torch.Tensor))).shape[0]
    with RelevanceScope(model, rules=True, observers=[]) as scope:
        run = Run(model, structure, inputs, target, scope)
        try:
            run.forward()
            at_input = run.backward(Pass.RELEVANCE, to="input")
            boundaries = {index: _per_sample(value, batch) for index, value in run.boundaries[Pass.RELEVANCE].items()}
            input_totals = None if at_input is None else _per_sample(at_input, batch)
        finally:
            run.release()
    report = {"boundaries": {str(k): v.tolist() for k, v in sorted(boundaries.items())}}
    if boundaries:
        top = boundaries[max(boundaries)]
        report["seed_deviation"] = _deviation(top, torch.ones_like(top))  # head: the seed's total is 1
        report["boundary_deviation"] = max(_deviation(v, top) for v in boundaries.values())
        if input_totals is not None and 0 in boundaries:
            report["input"] = input_totals.tolist()
            report["input_deviation"] = _deviation(input_totals, boundaries[0])
    return report


# -- one call --------------------------------------------------------------------------------------
def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _raised_by_relevancy(error: BaseException) -> bool:
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and str(Path(frame.tb_frame.f_code.co_filename).resolve()).startswith(PACKAGE)


def is_clear_refusal(error: BaseException) -> bool:
    """relevancy's own unsupported-model/operation errors, or a ValueError/TypeError raised by
    relevancy's code (not one Python or a library raised inside the model)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & set(CLEAR_ERRORS):
        return True
    return isinstance(error, (ValueError, TypeError)) and _raised_by_relevancy(error)


def probe_call(model: nn.Module, inputs: dict, method: str, measure_conservation: bool = True) -> dict:
    """One ``relevancy.attribute`` call and every check on it."""
    logits_before = plain_logits(model, inputs)
    before = snapshot(model, inputs)
    record = {"method": method}
    method_object = get_method(method, **METHOD_OPTIONS.get(method, {}))
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            attribution = relevancy.attribute(model, inputs, method_object)
    except Exception as error:  # noqa: BLE001 (every failure is a finding)
        attribution = None
        record.update(
            status=f"error: {type(error).__name__}: {_first_line(error)}",
            error_type=type(error).__name__,
            error_classes=[cls.__name__ for cls in type(error).__mro__],
            clear=is_clear_refusal(error),
            traceback=traceback.format_exception(error)[-6:],
        )
    record["seconds"] = round(time.perf_counter() - start, 3)
    record["restoration"] = restoration_differences(before, snapshot(model, inputs))
    logits_after = plain_logits(model, inputs)
    record["plain_logits_changed"] = not torch.equal(logits_before, logits_after)
    if attribution is not None:
        record["logits_difference"] = logits_difference(attribution.logits, logits_before)
        record["logits_difference_after"] = logits_difference(attribution.logits, logits_after)
        record["status"] = "ok" if same_logits(attribution.logits, logits_before) else "WRONG-LOGITS"
        record["finite"] = bool(torch.isfinite(attribution.scores).all()) and bool(torch.isfinite(attribution.logits).all())
        record["scores_shape"] = list(attribution.scores.shape)
        if method == "full_lrp" and measure_conservation:
            try:
                record["conservation"] = conservation(model, inputs)
            except Exception as error:  # noqa: BLE001
                record["conservation"] = {"error": f"{type(error).__name__}: {_first_line(error)}"}
            record["restoration"] += [f"conservation probe: {d}" for d in restoration_differences(before, snapshot(model, inputs))]
    return record


def passes(record: dict) -> list[str]:
    """Why an "ok" record is not fully right (empty when it is): the checks the coverage test makes."""
    problems = []
    if record["status"] != "ok":
        problems.append(record["status"])
    if record["restoration"]:
        problems.append("not restored: " + "; ".join(record["restoration"]))
    if record.get("plain_logits_changed"):
        problems.append("the model's own logits changed after the call")
    if record.get("finite") is False:
        problems.append("NaN/inf in the scores or logits")
    deviation = record.get("conservation", {}).get("boundary_deviation")
    if deviation is not None and deviation > CONSERVATION_TOL:
        problems.append(f"relevance not conserved across block boundaries ({deviation:.2g})")
    if "error" in record.get("conservation", {}):
        problems.append("conservation probe failed: " + record["conservation"]["error"])
    return problems


def probe_family(family: Family, methods=METHODS) -> dict:
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, inputs = family.build()
    except Exception as error:  # noqa: BLE001
        return {"family": family.name, "kind": family.kind, "build_error": f"{type(error).__name__}: {_first_line(error)}", "calls": {}}
    built = time.perf_counter() - start
    calls = {method: probe_call(model, inputs, method) for method in methods}
    return {
        "family": family.name,
        "kind": family.kind,
        "model": type(model).__name__,
        "attention": model.config._attn_implementation,
        "build_seconds": round(built, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "calls": calls,
    }


def probe(family_names=None, methods=METHODS) -> list[dict]:
    names = family_names or list(FAMILIES)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    return [probe_family(FAMILIES[name], methods) for name in names]


# -- reporting ---------------------------------------------------------------------------------------
LEGEND = {
    "✓": "ok: the model's own logits, restored, finite (and conserved across blocks, full_lrp)",
    "≠": "WRONG-LOGITS: ran, but explained logits that differ from the model's own",
    "R": "refused clearly (UnsupportedOperationError/UnsupportedModelError, or a ValueError/TypeError from relevancy)",
    "E": "raw internal error (any other exception)",
    "!": "suffix: ran, but a check failed (restoration, NaN/inf, conservation)",
}


def category(record: dict) -> str:
    """"ok", "wrong", "refused" or "error" (a call that ran "ok" but failed a check counts as "ok!")."""
    if record["status"] == "ok":
        return "ok" if not passes(record) else "ok!"
    if record["status"] == "WRONG-LOGITS":
        return "wrong"
    return "refused" if record.get("clear") else "error"


SYMBOLS = {"ok": "✓", "ok!": "✓!", "wrong": "≠", "refused": "R", "error": "E"}


def counts(results: list[dict]) -> dict[str, int]:
    found = {key: 0 for key in SYMBOLS}
    for family in results:
        for record in family["calls"].values():
            found[category(record)] += 1
    return found


def markdown(results: list[dict], methods=METHODS) -> str:
    lines = ["| family | kind | " + " | ".join(methods) + " | s |", "|" + "---|" * (len(methods) + 3)]
    for family in results:
        if "build_error" in family:
            lines.append(f"| {family['family']} | {family['kind']} | build failed: {family['build_error']} |")
            continue
        cells = [SYMBOLS[category(family["calls"][m])] if m in family["calls"] else "" for m in methods]
        lines.append(f"| {family['family']} | {family['kind']} | " + " | ".join(cells) + f" | {family['seconds']:.1f} |")
    lines.append("")
    lines += [f"- `{symbol}` {meaning}" for symbol, meaning in LEGEND.items()]
    total = counts(results)
    lines.append("")
    lines.append("Counts: " + ", ".join(f"{key} {value}" for key, value in total.items()))
    return "\n".join(lines)


def failures(results: list[dict]) -> str:
    """Per failing family: each distinct problem and the methods it hits."""
    lines = []
    for family in results:
        problems: dict[str, list[str]] = {}
        for method, record in family["calls"].items():
            for problem in passes(record):
                problems.setdefault(problem[:220], []).append(method)
        if "build_error" in family:
            problems["build failed: " + family["build_error"]] = []
        for problem, methods in problems.items():
            lines.append(f"- **{family['family']}** ({', '.join(methods)}): {problem}")
    return "\n".join(lines)


def conservation_table(results: list[dict]) -> str:
    lines = ["| family | head (seed→last block) | across blocks | block 0→input |", "|---|---|---|---|"]
    for family in results:
        report = family["calls"].get("full_lrp", {}).get("conservation")
        if not report or "error" in report:
            continue
        fmt = lambda key: f"{report[key]:.2g}" if key in report else "–"  # noqa: E731
        lines.append(f"| {family['family']} | {fmt('seed_deviation')} | {fmt('boundary_deviation')} | {fmt('input_deviation')} |")
    return "\n".join(lines)


def _expectation(record: dict) -> str:
    kind = category(record)
    if kind == "ok":
        return "OK"
    if kind == "refused":
        message = record["status"].split(": ", 2)[-1]
        operation = re.search(r"through `[^`]+`", message)
        pinned = operation.group(0) if operation else message[:60].rsplit(" ", 1)[0]
        return f"refused({record['error_type']!r}, {pinned!r})"
    return f"xfail({(passes(record) or [record['status']])[0][:100]!r})"


def suggest_expected(results: list[dict]) -> str:
    """expected.py's table as the current code behaves: clear refusals pinned, everything else that
    is not fully right xfail; per family the most common expectation is the default ("*")."""
    lines = []
    for family in results:
        entries = {method: _expectation(record) for method, record in family["calls"].items()}
        default = max(set(entries.values()), key=list(entries.values()).count)
        others = {m: v for m, v in entries.items() if v != default}
        if not others:
            lines.append(f"    {family['family']!r}: {default},")
            continue
        lines.append(f"    {family['family']!r}: {{")
        lines.append(f"        \"*\": {default},")
        lines += [f"        {m!r}: {v}," for m, v in others.items()]
        lines.append("    },")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", action="append", help="a zoo family (repeatable; default: all)")
    parser.add_argument("--method", action="append", choices=METHODS, help="a method (repeatable; default: all)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the details (default {DEFAULT_JSON})")
    parser.add_argument("--suggest-expected", action="store_true", help="print expected.py's table for the current code")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny models: more threads only contend (10x slower on a busy machine)
    methods = tuple(args.method or METHODS)
    results = probe(args.family, methods)
    print(markdown(results, methods))
    print("\nFailures:\n" + (failures(results) or "none"))
    print("\nfull_lrp conservation (max relative deviation of per-sample totals):\n" + conservation_table(results))
    if args.suggest_expected:
        print("\n" + suggest_expected(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"\ndetails: {args.json}")


if __name__ == "__main__":
    main()

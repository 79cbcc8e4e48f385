"""``audit`` and ``evaluate`` on a Ray cluster.

The driver reads and checks the data set with the same readers as a local run (so ids, labels and
skipped rows are the same), Ray Data streams the pending documents in windows to a pool of actors
that each load the model once, and every actor turns a window into the records a local run writes
(``DocumentExplainer`` / ``run_window``). The driver alone appends them to the run's store, once per
id, so resuming, exactly-once and the report are shared with local runs:
- a killed driver leaves complete records behind; the next run skips them;
- an actor that dies is restarted by Ray and its unfinished window is run again; only finished
  windows reach the driver, and ids already stored are dropped.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from contextlib import contextmanager

import torch

try:
    import ray
    import ray.data
except ImportError as error:  # an optional extra
    raise ImportError(f"running on Ray needs Ray Data ({error}): pip install 'relevancy[ray]'") from error
from tqdm.auto import tqdm

from .options import RayOptions

WINDOWS_PER_ACTOR = 4  # a small job is cut into at least this many windows per actor, so all get work


@contextmanager
def connected(options: RayOptions):
    """Ray, initialised for this job unless the caller already did (then it is left running)."""
    started = not ray.is_initialized()
    if started:
        ray.init(address=options.address, logging_level=logging.WARNING, log_to_driver=False)
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    data_logger.setLevel(logging.WARNING)  # Ray Data's progress notes; the driver shows its own bar
    try:
        yield
    finally:
        data_logger.setLevel(level)
        if started:
            ray.shutdown()


def actor_count(options: RayOptions) -> int:
    if options.actors is not None:
        return options.actors
    resources = ray.cluster_resources()
    if options.gpus_per_actor > 0:
        gpus = resources.get("GPU", 0)
        if gpus < options.gpus_per_actor:
            raise ValueError(
                f"the Ray cluster has {gpus:g} GPUs, fewer than the {options.gpus_per_actor:g} asked per actor; "
                "drop --ray-gpus (ray_gpus=) to run on CPUs"
            )
        return max(1, int(gpus // options.gpus_per_actor))
    return max(1, int(resources.get("CPU", 1) // options.cpus_per_actor))


def stream(rows: list[dict], actor_class, constructor_args: tuple, options: RayOptions, window: int, progress: bool, desc: str):
    """Yields the output batches of ``actor_class`` over ``rows`` (windows of up to ``window`` rows)."""
    actors = actor_count(options)
    window = max(1, min(window, math.ceil(len(rows) / (WINDOWS_PER_ACTOR * actors))))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver's own bar counts stored documents
    context.print_on_execution_start = False
    # one object, read by each actor once (Ray Data hands constructor arguments over unresolved);
    # held until the job ends, since a restarted actor reads it again
    arguments = ray.put(constructor_args)
    data = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / window))
    results = data.map_batches(
        actor_class,
        fn_constructor_args=(arguments,),
        batch_size=window,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=options.cpus_per_actor,
        num_gpus=options.gpus_per_actor or None,
    )
    with tqdm(total=len(rows), desc=desc, unit="doc", disable=not progress) as bar:
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            yield batch
            bar.update(int(batch["rows"].sum()))


def _place(model, threads: float):
    """The model on this actor's device, with one torch thread per CPU the actor holds."""
    torch.set_num_threads(max(1, int(threads)))
    device = torch.device("cuda") if ray.get_gpu_ids() and torch.cuda.is_available() else torch.device("cpu")
    return model.to(device)


class AuditActor:
    """Explains windows of documents into audit records, serialised as the JSON lines a local run
    writes: one row per window (its ids, the lines' byte lengths and the lines as one bytes object),
    which the driver appends without parsing."""

    def __init__(self, arguments) -> None:
        from ..audit.runner import DocumentExplainer

        model, tokenizer, settings, max_length, threads = ray.get(arguments)
        self.explainer = DocumentExplainer(_place(model, threads), tokenizer, settings, max_length)

    def __call__(self, batch: dict) -> dict:
        from ..audit.data import TextExample

        window = [
            (TextExample(str(i), str(t), None, _spans(json.loads(r))), int(label))
            for i, t, r, label in zip(batch["id"], batch["text"], batch["rationales"], batch["label"])
        ]
        records = self.explainer.records(window)
        lines = [(json.dumps(record) + "\n").encode() for record in records]
        return {
            "ids": [json.dumps([record["id"] for record in records])],
            "lengths": [json.dumps([len(line) for line in lines])],
            "records": [b"".join(lines)],
            "rows": [len(records)],
        }


def _spans(spans):
    return None if spans is None else tuple(tuple(span) for span in spans)


def audit_on_ray(model, tokenizer, pending, store, settings, max_length, options: RayOptions, progress: bool) -> None:
    """Records of the ``pending`` (example, class index) pairs, computed on Ray and appended to
    ``store`` (which keeps each id once: a window run again after an actor died adds nothing)."""
    if not pending:
        return
    rows = [
        {"id": e.id, "text": e.text, "label": label, "rationales": json.dumps(e.rationales)} for e, label in pending
    ]
    with connected(options):
        arguments = (model, tokenizer, settings, max_length, options.cpus_per_actor)
        for batch in stream(rows, AuditActor, arguments, options, settings.length_window or settings.batch_size, progress, "audit"):
            for ids, lengths, data in zip(batch["ids"], batch["lengths"], batch["records"]):
                store.append_serialised(json.loads(ids), bytes(data), json.loads(lengths))


class EvaluationActor:
    """Runs the tests on windows of (method, item) rows into item records, as a local run does."""

    def __init__(self, arguments) -> None:
        from ..evaluation.runner import Evaluator

        model, processor, evaluator_options, tests, batch_size, bucket, threads = ray.get(arguments)
        self.evaluator = Evaluator(_place(model, threads), processor, **evaluator_options)
        self.tests, self.batch_size, self.bucket = tests, batch_size, bucket

    def __call__(self, batch: dict) -> dict:
        from ..evaluation.runner import run_window

        records, rows = [], []
        methods = [str(m) for m in batch["method"]]
        for method in dict.fromkeys(methods):
            chosen = [i for i, m in enumerate(methods) if m == method]
            items = [pickle.loads(batch["item"][i]) for i in chosen]
            labels = [int(batch["label"][i]) for i in chosen]
            found = run_window(self.evaluator, method, items, labels, self.tests, self.batch_size, self.bucket)
            records += [json.dumps(r) for r in found]
            rows += [int(k % len(self.tests) == 0) for k in range(len(found))]  # an item's first record counts it
        return {"record": records, "rows": rows}


def evaluate_on_ray(
    model, processor, evaluator_options: dict, jobs: list[tuple[str, object, int]], store, tests: list[str],
    batch_size: int, window: int, options: RayOptions, progress: bool,
) -> None:
    """Records of the (method, item, class index) ``jobs``, computed on Ray and appended to ``store``."""
    if not jobs:
        return
    rows = [{"method": method, "item": pickle.dumps(item), "label": label} for method, item, label in jobs]
    with connected(options):
        arguments = (model, processor, evaluator_options, tests, batch_size, window > 0, options.cpus_per_actor)
        for batch in stream(rows, EvaluationActor, arguments, options, window or batch_size, progress, "evaluate"):
            store.append([json.loads(line) for line in batch["record"]])  # the store keeps each key once


__all__ = ["AuditActor", "EvaluationActor", "audit_on_ray", "evaluate_on_ray"]

"""Audit a decoder LLM: which prompt tokens its answers rest on, over a data set.

Every document becomes a prompt (``template`` with ``{text}`` replaced by the document's text). Two tasks:

- an LLM used as a classifier (``answers``: one answer string per label, e.g. " negative", " positive"):
  the answers' log-likelihoods given the prompt are the class scores (softmax over the answers: the
  "probabilities"), and the explained answer is the predicted one or the gold one (``target``);
- free-form QA (``answer_column``): the reference answer is explained given the prompt; its "probability"
  is the geometric mean of its tokens' probabilities, and every document is of one class. The column's
  text (read stripped) follows the prompt after one space, as a word after "Answer:" is written.

Relevance of each prompt token for the whole answer is ``relevancy.generation.explain_answer``'s map
summed over the answer's tokens (each token's row normalised, its readout position left out). The
records have the classifier audit's layout, so the same statistics, flags, report and resume apply; the
template's tokens are units of their own (``special``, never removal candidates), and the report gets a
view of how much relevance the fixed template takes against the input text. The removal test deletes a
word's tokens from the prompt (an LLM has no mask token) and measures how the answer's probability moves.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..adapters.outputs import evaluating
from ..adapters.structure import describe
from ..finetune.causal import check_template, encode_pair, reference_answer, render
from ..generation import _token_strings, explain_answer
from .data import encode_labels, load_texts
from .report import AuditReport, ShortcutResult
from .runner import AuditSettings, DocumentStore, _fingerprint, _uncased, word_occurrences
from .stats import Statistics, snippet

TEMPLATE_ROWS = 12


def audit_causal(
    model, tokenizer, data, *, template: str, answers: list[str] | tuple[str, ...] | None = None,
    answer_column: str | None = None, out: str | Path | None = None, settings: AuditSettings | None = None,
    label_map: dict | None = None, resume: bool = True, progress: bool = True, **load_options,
) -> AuditReport:
    """Audit a causal LM on ``data`` (anything ``load_texts`` reads; ``load_options`` go to it) with
    prompts from ``template``. Give ``answers`` (the answer of label 0, 1, ...: the LLM as a classifier)
    or ``answer_column`` (free-form QA: the column of reference answers). With ``out`` the records and
    report.json/.md/.html are written there and a killed run resumes. Returns the AuditReport."""
    settings = settings or AuditSettings()
    check_template(template)
    if (answers is None) == (answer_column is None):
        raise ValueError(
            "give either answers (one answer per label, the LLM as a classifier; CLI --answers) or answer_column "
            "(the column of reference answers, free-form QA; CLI --answer-column), not both or neither"
        )
    if settings.target not in ("predicted", "label"):
        raise ValueError(f"unknown target {settings.target!r}: use 'predicted' or 'label'")
    if settings.max_length is not None:
        raise ValueError("max_length does not apply to causal LMs (prompts are never truncated): leave it unset (CLI: no --max-length)")
    if answers is not None:
        answers = [str(a) for a in answers]
        if len(answers) < 2 or any(not a.strip() for a in answers) or len(set(answers)) != len(answers):
            raise ValueError(f"answers must be at least two distinct, non-empty strings (one per label); got {answers!r}")
    if not describe(model).causal:
        raise ValueError("audit_causal needs a decoder-only language model (e.g. Llama, GPT-2, Qwen2); for classifiers use audit")
    if answer_column is not None:
        load_options["label_column"] = answer_column
    dataset = load_texts(data, **load_options)
    if answers is not None:
        model_labels = {i: a.strip() for i, a in enumerate(answers)}
        labels = encode_labels(dataset, model_labels, label_map)
    else:
        model_labels = {0: "answer"}
        labels = [0] * len(dataset)
        empty = [e.id for e in dataset.examples if not isinstance(e.label, str) or not e.label.strip()]
        if empty:
            raise ValueError(f"documents {', '.join(empty[:5])} have no reference answer in column {answer_column!r}")
    meta = {
        "method": str(settings.method), "target": settings.target if answers is not None else "reference answer",
        "model": _fingerprint(model), "data": dataset.source, "documents": len(dataset), "template": template,
        "answers": answers, "answer_column": answer_column,
    }
    store = DocumentStore(Path(out) if out is not None else None, meta, resume=resume)
    done = store.done()
    pending = [(e, label) for e, label in zip(dataset.examples, labels) if e.id not in done]
    uncased = _uncased(tokenizer)
    bar = tqdm(total=len(pending), desc="audit", unit="doc", disable=not progress)
    for start in range(0, len(pending), settings.batch_size):  # records are written batch by batch (resume)
        chunk = pending[start : start + settings.batch_size]
        store.append([_record(model, tokenizer, template, answers, e, label, settings, uncased) for e, label in chunk])
        bar.update(len(chunk))
    bar.close()

    num_classes = len(model_labels)
    words, tokens = Statistics("word", num_classes, settings.top_k), Statistics("token", num_classes, settings.top_k)
    for record in store:
        words.add(record)
        tokens.add(record)
    word_stats = words.results()
    candidates = [s.item for s in word_stats if s.count >= settings.thresholds.min_count and not s.special]
    candidates = candidates[: settings.shortcut_candidates]
    counted = {s.item for s in word_stats if not s.special}
    absent = [w for w in settings.shortcut_words if w not in counted]
    if absent:
        warnings.warn(f"shortcut words not among the audited words (none of the documents has them) are skipped: {', '.join(absent)}")
    candidates += [w for w in dict.fromkeys(settings.shortcut_words) if w in counted and w not in candidates]
    shortcuts = measure_deletions(model, tokenizer, store, candidates, settings, answers, progress)
    report = AuditReport(
        meta={**meta, "top_k": settings.top_k, "truncated": 0, "labels": model_labels, "class_documents": words.class_documents},
        words=word_stats, tokens=tokens.results(), shortcuts=shortcuts, thresholds=settings.thresholds,
        prompt=template_view(store),
    )
    report.attach_examples(store)
    if out is not None:
        report.save(out)
    return report


def _record(model, tokenizer, template, answers, example, label, settings, uncased) -> dict:
    prompt, (begin, end) = render(template, example.text)
    fast = bool(getattr(tokenizer, "is_fast", False))
    prompt_ids, _, offsets = encode_pair(tokenizer, prompt, answers[0] if answers else reference_answer(example.label), offsets=fast)
    if answers is not None:
        scores = answer_scores(model, tokenizer, [(prompt_ids, _answer_ids(tokenizer, a)) for a in answers])
        probabilities = torch.softmax(torch.tensor([s[0] for s in scores]), 0).tolist()
        predicted = int(np.argmax(probabilities))
        target = label if settings.target == "label" else predicted
        answer = answers[target]
        exact = None
    else:
        answer = reference_answer(example.label)
        ((total, count, exact),) = answer_scores(model, tokenizer, [(prompt_ids, _answer_ids(tokenizer, answer))])
        probabilities, predicted, target = [math.exp(total / count)], 0, 0
    explanation = explain_answer(model, tokenizer, prompt, answer=answer, method=settings.method, progress=False)
    if explanation.tokens[: len(prompt_ids)] != _token_strings(tokenizer, prompt_ids):
        raise AssertionError("the explained prompt is tokenised differently from the audited one")
    relevance = explanation.summed(drop_sink=False, drop_readout=True)
    tokens = explanation.tokens[: len(prompt_ids)]
    special_ids = set(tokenizer.all_special_ids)
    if offsets is not None:
        in_text = [a < end and b > begin and b > a for a, b in offsets]
    else:  # without offsets: the tokens of the text alone, matched at the end of the prompt's prefix
        prefix = len(tokenizer(prompt[:begin])["input_ids"]) if begin else 0
        length = len(tokenizer(example.text, add_special_tokens=False)["input_ids"])
        in_text = [prefix <= p < prefix + length for p in range(len(prompt_ids))]
    in_text = [inside and i not in special_ids for inside, i in zip(in_text, prompt_ids)]
    special = [not inside for inside in in_text]  # template and special tokens: units of their own
    excluded = [p == len(prompt_ids) - 1 for p in range(len(prompt_ids))]  # the readout: its map value is 0
    words = []
    if offsets is not None:
        encoded = tokenizer(prompt)
        groups: dict[int, list[int]] = {}
        for position, word in enumerate(encoded.word_ids()):
            if word is not None and in_text[position]:
                groups.setdefault(word, []).append(position)
        for positions in groups.values():
            key = prompt[offsets[positions[0]][0] : offsets[positions[-1]][1]].strip()
            if key:
                words.append([key.lower() if uncased else key, positions])
    else:
        words = [[tokens[p].strip().lower() if uncased else tokens[p].strip(), [p]] for p in range(len(tokens)) if in_text[p] and tokens[p].strip()]
    return {
        "id": example.id, "label": int(label), "predicted": predicted, "target": target, "probabilities": probabilities,
        "truncated": False, "text": prompt, "input": example.text, "answer": answer, "exact": exact,
        "tokens": tokens, "ids": list(prompt_ids), "scores": [float(s) for s in relevance], "special": special,
        "excluded": excluded, "template": [not inside for inside in in_text],
        "offsets": [list(map(int, o)) for o in offsets] if offsets is not None else None, "words": words, "rationale": None,
    }


def _answer_ids(tokenizer, answer: str) -> list[int]:
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"the answer {answer!r} has no tokens")
    return ids


@torch.no_grad()
def answer_scores(model, tokenizer, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16):
    """Per (prompt ids, answer ids): the answer's summed log-likelihood, its token count, and whether
    every answer token is the model's top choice (greedy decoding would give the answer)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    results = []
    with evaluating(model):
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            width = max(len(p) + len(a) for p, a in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros_like(ids)
            for row, (p, a) in enumerate(chunk):
                ids[row, : len(p) + len(a)] = torch.tensor(p + a)
                attention[row, : len(p) + len(a)] = 1
            # logits only where an answer token is predicted: the vocabulary projection is the costly part
            kept = sorted({q for p, a in chunk for q in range(len(p) - 1, len(p) + len(a) - 1)})
            logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=torch.tensor(kept)).logits
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            log_probs = torch.log_softmax(logits, -1)
            column = {q: i for i, q in enumerate(kept)}
            for row, (p, a) in enumerate(chunk):
                positions = torch.tensor([column[q] for q in range(len(p) - 1, len(p) + len(a) - 1)])
                target = torch.tensor(a)
                picked = log_probs[row, positions].gather(-1, target[:, None])[:, 0]
                exact = bool((logits[row, positions].argmax(-1) == target).all())
                results.append((float(picked.sum()), len(a), exact))
    return results


def measure_deletions(model, tokenizer, records, candidates: list[str], settings: AuditSettings, answers, progress=True):
    """Delete each candidate word's tokens from up to ``shortcut_documents`` prompts that contain it and
    measure the answer again: for a classifier LLM, how the predicted answer's probability falls and
    whether the prediction flips; for QA, how the reference answer's (geometric mean) probability falls,
    a "flip" being that greedy decoding no longer gives it."""
    if not candidates:
        return []
    jobs: dict[str, list] = {c: [] for c in candidates}
    for key, found in word_occurrences(records, candidates, settings.shortcut_documents).items():
        for record, positions, span in found:
            deleted = set(positions)
            ids = [i for p, i in enumerate(record["ids"]) if p not in deleted]
            jobs[key].append((record, ids, snippet(record["text"], span)))
    results = []
    for key in tqdm(candidates, desc="removal", unit="word", disable=not progress):
        drops, flips, evidence = [], 0, []
        class_drops = [0.0] * (len(answers) if answers else 1)
        for record, ids, context in jobs[key]:
            before, predicted = record["probabilities"], record["predicted"]
            if answers is not None:
                scores = answer_scores(model, tokenizer, [(ids, _answer_ids(tokenizer, a)) for a in answers])
                after = torch.softmax(torch.tensor([s[0] for s in scores]), 0).tolist()
                flipped = int(np.argmax(after)) != predicted
            else:
                ((total, count, exact),) = answer_scores(model, tokenizer, [(ids, _answer_ids(tokenizer, record["answer"]))])
                after = [math.exp(total / count)]
                flipped = bool(record["exact"]) and not exact
            drop = before[predicted] - after[predicted]
            flips += flipped
            drops.append((drop, flipped))
            evidence.append([drop, record["id"], context])
            for c in range(len(after)):
                class_drops[c] += (before[c] - after[c]) / len(jobs[key])
        affected = sum(1 for drop, flipped in drops if flipped or drop >= settings.thresholds.move)
        evidence.sort(key=lambda e: -e[0])
        results.append(ShortcutResult(
            item=key, measured=len(drops), flips=flips, affected=affected,
            mean_drop=sum(d for d, _ in drops) / len(drops) if drops else 0.0, class_drops=class_drops, evidence=evidence[:3],
        ))
    results.sort(key=lambda r: (-r.affected, -r.mean_drop, r.item))
    return results


def template_view(records) -> dict:
    """How the answer's positive relevance splits between the template's tokens and the input text, per
    document on average, and each template token's mean share (the readout position is left out)."""
    template_shares, per_token, documents = [], defaultdict(list), 0
    for record in records:
        scores = np.clip(np.asarray(record["scores"], dtype=float), 0, None)
        counted = ~np.asarray(record["excluded"], dtype=bool)
        total = scores[counted].sum()
        if total <= 0:
            continue
        documents += 1
        template = np.asarray(record["template"], dtype=bool) & counted
        template_shares.append(scores[template].sum() / total)
        seen = defaultdict(float)
        for position in np.flatnonzero(template):
            seen[record["tokens"][position]] += scores[position] / total
        for token, share in seen.items():
            per_token[token].append(share)
    if not documents:
        return {"documents": 0, "template_share": None, "input_share": None, "template_tokens": []}
    mean = float(np.mean(template_shares))
    tokens = sorted(
        ({"token": token, "mean_share": float(np.sum(shares) / documents), "documents": len(shares)}
         for token, shares in per_token.items()),
        key=lambda t: (-t["mean_share"], t["token"]),
    )
    return {"documents": documents, "template_share": mean, "input_share": 1.0 - mean, "template_tokens": tokens}


def template_markdown(view: dict, rows: int = TEMPLATE_ROWS) -> list[str]:
    """The report's section on the template's own tokens."""
    if not view.get("documents"):
        return []
    lines = [
        "## Template against input", "",
        f"Of the answer's positive relevance (the readout token left out), the fixed template takes "
        f"{view['template_share']:.1%} and the input text {view['input_share']:.1%} on average over "
        f"{view['documents']} documents. The template tokens' mean shares:", "",
        "| template token | mean share | documents |", "|---|---|---|",
    ]
    lines += [f"| `{t['token']!r}` | {t['mean_share']:.3f} | {t['documents']} |" for t in view["template_tokens"][:rows]]
    return lines + [""]


def template_html(view: dict) -> str:
    import html

    lines = template_markdown(view)
    if not lines:
        return ""
    rows = "".join(
        f"<tr><td><code>{html.escape(repr(t['token']))}</code></td><td>{t['mean_share']:.3f}</td><td>{t['documents']}</td></tr>"
        for t in view["template_tokens"][:TEMPLATE_ROWS]
    )
    return (f"<h2>Template against input</h2><p>{html.escape(lines[2])}</p>"
            f"<table><tr><th>template token</th><th>mean share</th><th>documents</th></tr>{rows}</table>")


__all__ = ["answer_scores", "audit_causal", "measure_deletions", "template_html", "template_markdown", "template_view"]

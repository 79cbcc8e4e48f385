"""Per-vocabulary-item statistics of relevance over a data set, from per-document records.

A record is one explained document (see ``relevancy.audit.runner``): its tokens, their scores, which
are special or excluded (the classifier's readout token, whose self-relevance is the rollout's
identity term, not evidence), word groups, rationale flags and the true label. Items are counted at
two levels: ``"token"`` (vocabulary pieces) and ``"word"`` (the pieces of one word summed; special
tokens stay units of their own). All relevance is read as a share of the document's positive
relevance, so documents, lengths and methods of different scale can be pooled.

Label association is tested as in work on data-set artefacts (Gardner et al. 2021, "Competency
problems"): among the n documents that contain an item, k belong to class c; under "the item says
nothing about the label" k ~ Binomial(n, base rate of c). The one-sided tail P(K >= k) is the
p-value (exact, summed here: no scipy), z = (k - n p0) / sqrt(n p0 (1 - p0)) its normal-scale size.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, fields

import numpy as np

from .stopwords import is_punctuation, is_stop_word

EVIDENCE_PER_ITEM = 3


@dataclass
class Unit:
    key: str
    score: float
    positions: list[int]  # token positions in the document
    special: bool
    in_rationale: bool
    span: tuple[int, int] | None  # characters of the text, for snippets


def units(record: dict, level: str) -> list[Unit]:
    """The document's counted units at ``level`` ("token" or "word"), in reading order."""
    tokens, scores = record["tokens"], record["scores"]
    special, excluded = record["special"], record["excluded"]
    offsets = record.get("offsets")
    rationale = record.get("rationale")

    def span(positions):
        if offsets is None or special[positions[0]]:
            return None
        return offsets[positions[0]][0], offsets[positions[-1]][1]

    def make(key, positions):
        return Unit(
            key=key,
            score=float(sum(scores[p] for p in positions)),
            positions=positions,
            special=bool(special[positions[0]]),
            in_rationale=bool(rationale) and any(rationale[p] for p in positions),
            span=span(positions),
        )

    if level == "token":
        return [make(tokens[p], [p]) for p in range(len(tokens)) if not excluded[p]]
    if level != "word":
        raise ValueError(f"unknown level {level!r}: use 'token' or 'word'")
    found = [(p, make(tokens[p], [p])) for p in range(len(tokens)) if special[p] and not excluded[p]]
    found += [(positions[0], make(key, list(positions))) for key, positions in record["words"]]
    return [unit for _, unit in sorted(found, key=lambda pair: pair[0])]


def snippet(text: str, span: tuple[int, int] | None, width: int = 60) -> str:
    """The item in «» with some context around it (the text's start for special tokens)."""
    if span is None:
        return text[: 2 * width].strip() + ("…" if len(text) > 2 * width else "")
    start, end = span
    left = max(0, start - width)
    right = min(len(text), end + width)
    before = ("…" if left > 0 else "") + text[left:start]
    after = text[end:right] + ("…" if right < len(text) else "")
    return (before + "«" + text[start:end] + "»" + after).replace("\n", " ").strip()


@dataclass
class ItemStats:
    """One vocabulary item's relevance over the data set and its association with the labels."""

    item: str
    level: str
    count: int  # occurrences
    documents: int  # documents containing it
    mean_share: float  # mean share of its document's positive relevance, per occurrence
    mean_lift: float  # mean of share x units in the document: 1 = what a uniform map gives
    total_share: float  # sum of shares: how many documents' worth of relevance it holds
    top_k_rate: float  # share of occurrences among the document's k most relevant units
    positive_rate: float  # share of occurrences with a positive score ("mean sign")
    log_odds: list[float]  # per class: presence vs class, add-one smoothed log odds ratio
    mutual_information: float  # bits between presence in a document and its label
    label_counts: list[int]  # per class: documents of that class containing the item
    z: list[float]  # per class: (k - n p0) / sqrt(n p0 (1 - p0)), n = documents with the item
    p_values: list[float]  # per class: one-sided binomial P(K >= k) under the class's base rate
    associated_class: int  # the class the item is most significantly tied to (smallest p-value)
    special: bool
    punctuation: bool
    stop_word: bool
    rationale_count: int  # occurrences inside human rationales
    rationale_lift: float | None  # mean lift of those occurrences
    top_evidence: list = field(default_factory=list)  # [share, doc id, snippet], most relevant first
    low_evidence: list = field(default_factory=list)  # [lift, doc id, snippet], least relevant first

    @property
    def association(self) -> float:
        """Strength of the item's association with its most associated class (log odds ratio)."""
        return self.log_odds[self.associated_class]

    def to_dict(self) -> dict:
        # the fields as they are, not dataclasses.asdict's recursive deep copy: the report writes
        # this for every word and token, and the copy was most of the report's cost
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["association"] = self.association
        return data


class _Accumulator:
    __slots__ = ("count", "documents", "share", "lift", "top_k", "positive", "per_class", "special",
                 "rationale_count", "rationale_lift", "high", "low")

    def __init__(self, num_classes: int, special: bool) -> None:
        self.count = self.documents = self.top_k = self.positive = self.rationale_count = 0
        self.share = self.lift = self.rationale_lift = 0.0
        self.per_class = [0] * num_classes
        self.special = special
        self.high: list = []  # min-heap of (share, doc, snippet): keeps the largest
        self.low: list = []  # min-heap of (-lift, doc, snippet): keeps the smallest lifts


class Statistics:
    """Accumulates records one at a time (the data set never has to be in memory)."""

    def __init__(self, level: str, num_classes: int, top_k: int = 5) -> None:
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        self.level = level
        self.num_classes = num_classes
        self.top_k = top_k
        self.documents = 0
        self.class_documents = [0] * num_classes
        self.items: dict[str, _Accumulator] = {}
        self.rationale_share = []  # per document with rationales: share of relevance inside them
        self.rationale_fraction = []  # and the share of its units inside them

    def add(self, record: dict) -> None:
        label = int(record["label"])
        if not 0 <= label < self.num_classes:
            raise ValueError(f"document {record['id']!r} has label {label}, outside 0..{self.num_classes - 1}")
        found = units(record, self.level)
        self.documents += 1
        self.class_documents[label] += 1
        if not found:
            return
        scores = np.array([u.score for u in found], dtype=np.float64)
        positive = np.clip(scores, 0.0, None)
        total = positive.sum()
        shares = positive / total if total > 0 else np.zeros_like(positive)
        lifts = shares * len(found)
        top = set(np.argsort(-scores, kind="stable")[: self.top_k].tolist())
        seen = set()
        for index, unit in enumerate(found):
            item = self.items.get(unit.key)
            if item is None:
                item = self.items[unit.key] = _Accumulator(self.num_classes, unit.special)
            item.count += 1
            item.share += shares[index]
            item.lift += lifts[index]
            item.top_k += index in top
            item.positive += unit.score > 0
            if unit.in_rationale:
                item.rationale_count += 1
                item.rationale_lift += lifts[index]
            if unit.key not in seen:
                seen.add(unit.key)
                item.documents += 1
                item.per_class[label] += 1
                self._keep_evidence(item, record, unit, shares[index], lifts[index])
        if record.get("rationale"):
            inside = np.array([u.in_rationale for u in found])
            self.rationale_share.append(float(shares[inside].sum()))
            self.rationale_fraction.append(float(inside.mean()))

    @staticmethod
    def _keep_evidence(item: _Accumulator, record: dict, unit: Unit, share: float, lift: float) -> None:
        for heap, value in ((item.high, share), (item.low, -lift)):
            entry = (float(value), record["id"])
            if len(heap) < EVIDENCE_PER_ITEM:
                heapq.heappush(heap, entry + (snippet(record["text"], unit.span),))
            elif entry > heap[0][:2]:
                heapq.heapreplace(heap, entry + (snippet(record["text"], unit.span),))

    def results(self) -> list[ItemStats]:
        """Every item, most total relevance first."""
        out = []
        n, per_class = self.documents, self.class_documents
        for key, item in self.items.items():
            log_odds = [log_odds_ratio(item.per_class[c], item.documents, per_class[c], n) for c in range(self.num_classes)]
            z, p_values = association_test(item.per_class, per_class)
            out.append(
                ItemStats(
                    item=key,
                    level=self.level,
                    count=item.count,
                    documents=item.documents,
                    mean_share=item.share / item.count,
                    mean_lift=item.lift / item.count,
                    total_share=item.share,
                    top_k_rate=item.top_k / item.count,
                    positive_rate=item.positive / item.count,
                    log_odds=log_odds,
                    mutual_information=mutual_information(item.per_class, per_class),
                    label_counts=list(item.per_class),
                    z=z,
                    p_values=p_values,
                    associated_class=min(range(self.num_classes), key=lambda c: (p_values[c], -log_odds[c])),
                    special=item.special,
                    punctuation=is_punctuation(key),
                    stop_word=is_stop_word(key),
                    rationale_count=item.rationale_count,
                    rationale_lift=item.rationale_lift / item.rationale_count if item.rationale_count else None,
                    top_evidence=[list(e) for e in sorted(item.high, reverse=True)],
                    low_evidence=[[-v, d, s] for v, d, s in sorted(item.low, reverse=True)],
                )
            )
        out.sort(key=lambda s: (-s.total_share, s.item))
        return out


def log_odds_ratio(with_item_in_class: int, with_item: int, in_class: int, total: int) -> float:
    """log of (a+1)(d+1) / ((b+1)(c+1)) for the 2x2 table of documents: item present/absent x
    in the class/not. Positive: the item's presence raises the odds of the class."""
    a = with_item_in_class
    b = in_class - a  # in the class, without the item
    c = with_item - a  # with the item, other classes
    d = total - in_class - c  # neither
    return math.log((a + 1) * (d + 1) / ((b + 1) * (c + 1)))


def mutual_information(with_item_per_class: list[int], per_class: list[int]) -> float:
    """I(presence; label) in bits from the documents' empirical joint distribution."""
    total = sum(per_class)
    if total == 0:
        return 0.0
    present = sum(with_item_per_class)
    information = 0.0
    for joint_present, n_class in zip(with_item_per_class, per_class):
        for joint, marginal in ((joint_present, present), (n_class - joint_present, total - present)):
            if joint > 0:
                information += joint / total * math.log2(joint * total / (marginal * n_class))
    return information


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(K >= k) for K ~ Binomial(n, p), summed term by term in log space.

    Only tails that start at or past the mean are summed (their terms fall monotonically, so the sum
    stops once they no longer change it); the other side is 1 - P(K <= k - 1), the mirrored tail."""
    if k <= 0 or p >= 1.0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if k <= n * p:
        return 1.0 - binomial_tail(n - k + 1, n, 1.0 - p)  # P(K <= k-1) = P(n - K >= n - k + 1)
    log_p, log_q = math.log(p), math.log1p(-p)

    def log_term(j: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p + (n - j) * log_q

    first = log_term(k)
    total = 0.0
    for j in range(k, n + 1):
        term = math.exp(log_term(j) - first)
        total += term
        if term < 1e-17 * total:
            break
    return math.exp(first) * total


def association_test(with_item_per_class: list[int], per_class: list[int]) -> tuple[list[float], list[float]]:
    """Per class: z and the one-sided binomial p-value of "documents with the item are more often of
    this class than the class's base rate". A class with base rate 0 or 1 cannot be tested (z 0, p 1)."""
    n, total = sum(with_item_per_class), sum(per_class)
    z, p_values = [], []
    for k, in_class in zip(with_item_per_class, per_class):
        base = in_class / total if total else 0.0
        if n == 0 or not 0.0 < base < 1.0:
            z.append(0.0)
            p_values.append(1.0)
            continue
        z.append((k - n * base) / math.sqrt(n * base * (1.0 - base)))
        p_values.append(binomial_tail(k, n, base))
    return z, p_values


def equivalence_p_value(with_item_per_class: list[int], per_class: list[int], margin: float) -> float:
    """p-value of "the item is tied to no class": for every class, two one-sided binomial tests that
    its share among the item's documents lies within ``margin`` of the class's base rate. The largest
    of those p-values (all must reject), so a small value is evidence of a weak association, which a
    non-significant association test alone never is."""
    n, total = sum(with_item_per_class), sum(per_class)
    if n == 0 or total == 0:
        return 1.0
    worst = 0.0
    for k, in_class in zip(with_item_per_class, per_class):
        base = in_class / total
        too_high = base + margin  # H0: share >= base + margin, rejected by few documents: P(K <= k)
        too_low = base - margin  # H0: share <= base - margin, rejected by many: P(K >= k)
        p_high = 0.0 if too_high >= 1.0 else binomial_tail(n - k, n, 1.0 - too_high)  # P(K <= k) = P(n - K >= n - k)
        p_low = 0.0 if too_low <= 0.0 else binomial_tail(k, n, too_low)
        worst = max(worst, p_high, p_low)
    return worst

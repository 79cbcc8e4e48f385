"""The audit's statistics on a hand-made data set equal values computed by hand."""

import math

import pytest

from relevancy.audit import AuditReport, Statistics, Thresholds, log_odds_ratio, mutual_information
from relevancy.audit.stats import ItemStats


def record(doc_id, label, tokens, scores, words=None, rationale=None):
    """[CLS] is the excluded readout, [SEP] a special unit; every other token is a word of its own."""
    special = [t in ("[CLS]", "[SEP]") for t in tokens]
    if words is None:
        words = [[t, [i]] for i, t in enumerate(tokens) if not special[i]]
    offsets, position = [], 0
    for t in tokens:
        offsets.append((position, position + len(t)))
        position += len(t) + 1
    return {
        "id": doc_id, "label": label, "text": " ".join(tokens), "tokens": tokens, "scores": scores,
        "special": special, "excluded": [t == "[CLS]" for t in tokens], "offsets": offsets, "words": words,
        "rationale": rationale,
    }


DOCS = [
    record("A", 1, ["[CLS]", "good", "movie", "[SEP]"], [1.0, 0.6, 0.2, 0.2]),
    record("B", 1, ["[CLS]", "good", "plot", "[SEP]"], [1.0, 0.3, 0.3, 0.0]),
    record("C", 0, ["[CLS]", "bad", "movie", "[SEP]"], [1.0, 0.5, 0.5, 0.0]),
    record("D", 0, ["[CLS]", "bad", "plot", "movie", "[SEP]"], [1.0, 0.4, -0.2, 0.4, 0.2]),
]


@pytest.fixture(scope="module")
def stats():
    statistics = Statistics("word", num_classes=2, top_k=2)
    for doc in DOCS:
        statistics.add(doc)
    return {s.item: s for s in statistics.results()}


def test_counts_and_documents(stats):
    assert {k: (s.count, s.documents) for k, s in stats.items()} == {
        "good": (2, 2), "bad": (2, 2), "movie": (3, 3), "plot": (2, 2), "[SEP]": (4, 4),
    }
    assert "[CLS]" not in stats  # the readout's self-relevance is not evidence


def test_shares_and_lift(stats):
    # positive totals: A 1.0, B 0.6, C 1.0, D 1.0 (plot's -0.2 is not positive relevance)
    assert stats["good"].mean_share == pytest.approx((0.6 / 1.0 + 0.3 / 0.6) / 2)
    assert stats["movie"].mean_share == pytest.approx((0.2 + 0.5 + 0.4) / 3)
    assert stats["plot"].mean_share == pytest.approx((0.5 + 0.0) / 2)
    assert stats["[SEP]"].mean_share == pytest.approx((0.2 + 0 + 0 + 0.2) / 4)
    assert stats["good"].total_share == pytest.approx(1.1)
    # lift = share x units in the document (A, B, C have 3 units, D has 4)
    assert stats["movie"].mean_lift == pytest.approx((0.2 * 3 + 0.5 * 3 + 0.4 * 4) / 3)
    assert stats["plot"].mean_lift == pytest.approx((0.5 * 3 + 0.0) / 2)


def test_top_k_and_sign(stats):
    # k = 2, ties by position: A {good, movie}, B {good, plot}, C {bad, movie}, D {bad, movie}
    assert stats["good"].top_k_rate == 1.0
    assert stats["movie"].top_k_rate == 1.0
    assert stats["plot"].top_k_rate == 0.5
    assert stats["[SEP]"].top_k_rate == 0.0
    assert stats["plot"].positive_rate == 0.5  # B +0.3, D -0.2
    assert stats["[SEP]"].positive_rate == 0.5  # 0.2, 0, 0, 0.2


def test_label_association(stats):
    # good: in both class-1 documents, no class-0 one: (2+1)(2+1) / ((0+1)(0+1))
    assert stats["good"].log_odds == pytest.approx([-math.log(9), math.log(9)])
    assert stats["good"].associated_class == 1
    # movie: class 1 has it once (A) and lacks it once (B); class 0 has it twice (C, D)
    assert stats["movie"].log_odds[1] == pytest.approx(math.log((1 + 1) * (0 + 1) / ((1 + 1) * (2 + 1))))
    assert stats["movie"].log_odds[0] == pytest.approx(math.log(3))
    assert stats["good"].mutual_information == pytest.approx(1.0)  # presence tells the label: one bit
    expected = 0.25 * math.log2(0.25 / (0.75 * 0.5)) + 0.5 * math.log2(0.5 / (0.75 * 0.5)) + 0.25 * math.log2(0.25 / (0.25 * 0.5))
    assert stats["movie"].mutual_information == pytest.approx(expected)
    assert stats["[SEP]"].mutual_information == pytest.approx(0.0, abs=1e-12)


def test_formulas_directly():
    assert log_odds_ratio(3, 4, 5, 10) == pytest.approx(math.log((3 + 1) * (4 + 1) / ((2 + 1) * (1 + 1))))
    assert mutual_information([5, 0], [5, 5]) == pytest.approx(1.0)
    assert mutual_information([2, 2], [4, 4]) == pytest.approx(0.0)


def test_word_pieces_are_summed_and_rationales_counted():
    doc = record(
        "E", 1, ["[CLS]", "play", "##ing", "well", "[SEP]"], [1.0, 0.3, 0.1, 0.4, 0.2],
        words=[["playing", [1, 2]], ["well", [3]]], rationale=[False, True, True, False, False],
    )
    words, tokens = Statistics("word", 2, top_k=1), Statistics("token", 2, top_k=1)
    words.add(doc)
    tokens.add(doc)
    by_word = {s.item: s for s in words.results()}
    by_token = {s.item: s for s in tokens.results()}
    assert by_word["playing"].mean_share == pytest.approx(0.4 / 1.0)
    assert by_word["playing"].top_k_rate == 1.0  # 0.4 ties with "well"; the earlier unit wins
    assert by_token["##ing"].mean_share == pytest.approx(0.1)
    assert by_word["playing"].rationale_count == 1 and by_word["playing"].rationale_lift == pytest.approx(0.4 * 3)
    assert words.rationale_share == [pytest.approx(0.4)]
    assert words.rationale_fraction == [pytest.approx(1 / 3)]


def test_evidence_keeps_the_most_and_least_relevant_documents(stats):
    assert [e[1] for e in stats["movie"].top_evidence] == ["C", "D", "A"]
    assert [e[1] for e in stats["movie"].low_evidence] == ["A", "C", "D"]
    assert "«movie»" in stats["movie"].top_evidence[0][2]


def item(name, **overrides):
    values = dict(
        item=name, level="word", count=10, documents=10, mean_share=0.1, mean_lift=1.0, total_share=1.0, top_k_rate=0.5,
        positive_rate=1.0, log_odds=[0.0, 0.0], mutual_information=0.0, associated_class=0, special=False,
        punctuation=False, stop_word=False, rationale_count=0, rationale_lift=None,
    )
    values.update(overrides)
    return ItemStats(**values)


def test_flags_follow_the_thresholds():
    words = [
        item("the", mean_lift=3.0, stop_word=True, log_odds=[0.1, -0.1]),
        item("zz", mean_lift=2.5, log_odds=[0.2, -0.2]),
        item("!", mean_lift=4.0, punctuation=True, log_odds=[-2.0, 2.0], associated_class=1),  # evidence in this data
        item("great", mean_lift=2.5, log_odds=[-2.0, 2.0], associated_class=1),  # relevant and associated: fine
        item("awful", mean_lift=0.2, log_odds=[2.0, -2.0]),  # associated, little relevance
        item("plot", mean_lift=1.0, rationale_count=5, rationale_lift=0.3),
        item("rare", mean_lift=9.0, count=2),  # too rare to judge
    ]
    meta = {"labels": {0: "negative", 1: "positive"}}
    report = AuditReport(meta=meta, words=words, tokens=[], shortcuts=[], thresholds=Thresholds())
    assert [f.item for f in report.over_relevant()] == ["the", "zz"]
    assert any("stop word" in r for r in report.over_relevant()[0].reasons)
    assert [f.item for f in report.under_relevant()] == ["awful", "plot"]
    assert "negative" in report.under_relevant()[0].reasons[0]
    assert report.rank("zz", "over_relevant") == 2 and report.rank("great", "over_relevant") is None
    markdown = report.to_markdown()
    assert "## Over-relevant words" in markdown and "`zz`" in markdown

"""The audit's statistics on a hand-made data set equal values computed by hand, and the label
tests equal exact rational computations."""

import math
from fractions import Fraction

import pytest

from relevancy.audit import Statistics, log_odds_ratio, mutual_information
from relevancy.audit.stats import association_test, binomial_tail, equivalence_p_value
from tests.audit.records import record


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
    # the binomial test: 2 of 2 "good" documents are positive, base rate 1/2
    assert stats["good"].label_counts == [0, 2]
    assert stats["good"].p_values == pytest.approx([1.0, 0.25])
    assert stats["good"].z == pytest.approx([-math.sqrt(2), math.sqrt(2)])
    # movie: 2 of its 3 documents are negative: P(K >= 2 | 3, 1/2) = (3 + 1) / 8
    assert stats["movie"].associated_class == 0 and stats["movie"].p_values[0] == pytest.approx(4 / 8)


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


def exact_tail(k: int, n: int, p: Fraction) -> float:
    """P(K >= k), K ~ Binomial(n, p), in exact rational arithmetic."""
    return float(sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(max(k, 0), n + 1)))


@pytest.mark.parametrize("n", [1, 7, 40, 151])
@pytest.mark.parametrize("p", [Fraction(1, 2), Fraction(427, 1000), Fraction(1, 20), Fraction(9, 10)])
def test_binomial_tail_equals_exact_sums(n, p):
    for k in sorted({0, 1, n // 3, n // 2, (2 * n) // 3, n - 1, n, n + 1}):
        expected = exact_tail(k, n, p)
        assert binomial_tail(k, n, float(p)) == pytest.approx(expected, rel=1e-9, abs=1e-15), (k, n, p)


def test_binomial_tail_known_values_and_edges():
    assert binomial_tail(144, 144, 0.5) == pytest.approx(2.0**-144, rel=1e-12)  # far tails stay relative-accurate
    assert binomial_tail(3, 5, 0.5) == pytest.approx(0.5)  # symmetric: P(K >= 3) = P(K <= 2)
    assert binomial_tail(1, 10, 0.1) == pytest.approx(1 - 0.9**10)
    assert binomial_tail(0, 5, 0.3) == 1.0 and binomial_tail(6, 5, 0.3) == 0.0
    assert binomial_tail(2, 5, 0.0) == 0.0 and binomial_tail(2, 5, 1.0) == 1.0
    big = binomial_tail(600, 1000, 0.5)  # normal approximation: z = 6.32, tail ~ 1.3e-10
    assert 0.5e-10 < big < 2e-10


def test_association_test_per_class():
    z, p = association_test([2, 12], [573, 427])
    base = Fraction(427, 1000)
    assert p[1] == pytest.approx(exact_tail(12, 14, base), rel=1e-9)
    assert p[0] == pytest.approx(exact_tail(2, 14, 1 - base), rel=1e-9)
    assert z[1] == pytest.approx((12 - 14 * 0.427) / math.sqrt(14 * 0.427 * 0.573))
    assert z[0] == pytest.approx(-z[1])
    assert association_test([3], [10]) == ([0.0], [1.0])  # one class: base rate 1, nothing to test


def test_equivalence_p_value_is_the_worse_of_two_one_sided_tests():
    # 52 of 100 positive, base 1/2, margin 0.15: reject share >= 0.65 (P(K <= 52 | 0.65)) and
    # share <= 0.35 (P(K >= 52 | 0.35)); per class the same two tests mirrored
    expected = max(1 - exact_tail(53, 100, Fraction(65, 100)), exact_tail(52, 100, Fraction(35, 100)))
    assert equivalence_p_value([48, 52], [500, 500], 0.15) == pytest.approx(expected, rel=1e-9)
    assert equivalence_p_value([48, 52], [500, 500], 0.15) < 0.01
    # the same share in 5 documents proves nothing; all 5 in one class even less
    assert equivalence_p_value([2, 3], [500, 500], 0.15) > 0.3
    assert equivalence_p_value([0, 5], [500, 500], 0.15) == pytest.approx(1.0)

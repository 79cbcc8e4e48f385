"""The audit report: flags rest on the label test (with its stated confidence), and the HTML page has a
row per word, the plot, examples even when nothing is flagged, and no Markdown left in it."""

import html
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from fractions import Fraction

import pytest

from relevancy.audit import AuditReport, ShortcutResult, Statistics, Thresholds
from relevancy.audit.page import render_document
from relevancy.cli.main import main
from relevancy.audit.stats import ItemStats, association_test
from tests.audit.records import record
from tests.audit.test_stats import exact_tail

LABELS = {0: "negative", 1: "positive"}
CLASS_DOCUMENTS = [430, 570]  # base rates 43 % / 57 %, as on the first 1,000 rows of SST-2 dev
FILLER = 200  # ordinary words, so that the correction counts a realistic number of tests


def item(name, counts, **overrides):
    z, p = association_test(counts, CLASS_DOCUMENTS)
    values = dict(
        item=name, level="word", count=sum(counts), documents=sum(counts), mean_share=0.1, mean_lift=1.0,
        total_share=1.0, top_k_rate=0.5, positive_rate=1.0, log_odds=[0.0, 0.0], mutual_information=0.0,
        label_counts=list(counts), z=z, p_values=p, associated_class=min(range(2), key=lambda c: p[c]),
        special=False, punctuation=False, stop_word=False, rationale_count=0, rationale_lift=None,
    )
    values.update(overrides)
    return ItemStats(**values)


def removal(word, measured, flips, class_drops):
    drop = max(class_drops)
    return ShortcutResult(word, measured, flips, flips, drop, class_drops, [[drop, "d1", f"a «{word}» b"]])


@pytest.fixture(scope="module")
def report():
    words = [
        item("zq", [0, 60], mean_lift=7.0),  # planted: every document with it is positive
        item("bad", [12, 2], mean_lift=6.0),  # a sentiment word: 86 % negative, but 14 documents
        item("not", [16, 15], mean_lift=5.0),  # a negation: barely tied to a label
        item("great", [0, 40], mean_lift=3.0),  # tied to positive, but its removal raises positive
        item("[SEP]", [430, 570], mean_lift=3.0, special=True),  # in every document
        item("movie", [129, 171], mean_lift=2.5),  # 300 documents at the base rates
        item("delightful", [0, 3], mean_lift=9.0),  # all positive, but 3 documents tell nothing
        item("too", [23, 1], mean_lift=5.0, stop_word=True),  # a stop word the data ties to negative
        item("awful", [40, 0], mean_lift=0.2),  # tied to negative, little relevance
        item("dull", [9, 0], mean_lift=0.2),  # as strong a share, too few documents
        item("plot", [40, 60], rationale_count=5, rationale_lift=0.3),
        item("rare", [0, 2], mean_lift=9.0),  # fewer than min_count: not judged, not a test
        *[item(f"filler{i}", [43, 57], mean_lift=0.8) for i in range(FILLER)],
    ]
    shortcuts = [
        removal("zq", 32, 28, [-0.9, 0.9]),
        removal("bad", 14, 9, [-0.5, 0.5]),
        removal("not", 31, 11, [0.1, -0.1]),
        removal("great", 20, 10, [0.3, -0.3]),  # positive's probability rises without it
    ]
    meta = {"labels": LABELS, "class_documents": CLASS_DOCUMENTS, "top_k": 5}
    return AuditReport(meta=meta, words=words, tokens=[], shortcuts=shortcuts, thresholds=Thresholds())


def test_tests_are_counted_and_corrected(report):
    tested = len(report.words) - 1  # "rare" is below min_count
    assert report.tests() == 2 * tested
    bad = report.association(next(s for s in report.words if s.item == "bad"))
    uncorrected = exact_tail(12, 14, Fraction(43, 100))
    assert bad.p_value == pytest.approx(uncorrected, rel=1e-9)
    assert bad.p_adjusted == pytest.approx(min(1.0, uncorrected * 2 * tested), rel=1e-9)
    assert bad.label == "negative" and bad.with_label == 12 and bad.documents == 14
    assert bad.z == pytest.approx((12 - 14 * 0.43) / math.sqrt(14 * 0.43 * 0.57))
    assert not bad.significant


def test_planted_word_is_flagged_with_its_confidence(report):
    (flag,) = report.shortcut_flags()
    assert flag.item == "zq" and flag.association.significant
    p_adjusted = exact_tail(60, 60, Fraction(57, 100)) * report.tests()
    assert flag.association.p_adjusted == pytest.approx(p_adjusted, rel=1e-9)
    text = "; ".join(flag.reasons)
    assert "60 of the 60 documents with it are positive" in text and "57% of all documents" in text
    assert f"{p_adjusted:.1e} after Bonferroni correction for {report.tests()} tests" in text
    assert "flips 28" in text and "positive's probability falls by 0.90" in text


def test_expected_reliance_is_not_a_shortcut(report):
    """A sentiment word and a negation that move predictions, without a significant tie, are listed
    as relied on; a tied word whose removal pushes towards its class is not a shortcut either."""
    relied = {r.item: a for r, a in report.relied_on()}
    assert set(relied) == {"bad", "not", "great"}
    assert not relied["bad"].significant and "too few documents to tell" in relied["bad"].describe()
    assert relied["great"].significant  # tied, but removing it raises positive: not the shortcut pattern
    assert report.rank("bad", "shortcut") is None


def test_over_relevant_needs_evidence_of_no_tie(report):
    flags = {f.item: f for f in report.over_relevant()}
    assert list(flags) == ["[SEP]", "movie"]  # most lift first; ties by name
    assert "special token" in flags["[SEP]"].reasons[0]
    assert re.search(r"within 15% of the base rate \(equivalence test, p = .+ after Bonferroni", flags["movie"].reasons[1])
    # "delightful" (3 documents) and "rare" cannot be shown to be tied to nothing; "too" is tied to negative
    assert not {"delightful", "rare", "too", "zq", "bad"} & set(flags)


def test_under_relevant_needs_a_significant_tie(report):
    flags = {f.item: f for f in report.under_relevant()}
    assert list(flags) == ["awful", "plot"]
    assert flags["awful"].reasons[0].startswith("the data ties it to negative: 40 of the 40")
    assert "rationales 5 times" in flags["plot"].reasons[0]
    assert "dull" not in flags  # 9 of 9 negative, not significant after correction


def test_report_json_states_the_tests(report):
    data = report.to_dict()
    assert [f["item"] for f in data["flags"]["shortcut"]] == ["zq"]
    assert data["flags"]["shortcut"][0]["association"]["tests"] == report.tests()
    assert [r["item"] for r in data["relied_on"]] == ["bad", "not", "great"]
    assert "Bonferroni" in data["association_test"]
    zq = next(w for w in data["words"] if w["item"] == "zq")
    assert zq["p_adjusted"] == pytest.approx(report.association(report.words[0]).p_adjusted)


def test_html_of_a_flagged_report(report):
    page = report.to_html()
    rows = re.findall(r"<tr id='row-\d+' class='([^']*)' data-word='([^']*)'", page)
    assert sorted(word for _, word in rows) == sorted(html.escape(s.item, quote=True) for s in report.words)
    assert {word for cls, word in rows if cls == "flagged"} == {"zq", "[SEP]", "movie", "awful", "plot"}
    assert "`" not in page
    assert "Shortcut candidates" in page and "Relied on, not flagged" in page
    points = re.findall(r"<circle class='pt' data-row='row-\d+' data-word='([^']*)'", page)
    assert sorted(points) == sorted(html.escape(s.item, quote=True) for s in report.words if s.count >= 3)
    assert "(documents not kept)" in page  # hand-made statistics have no records to show


DOCS = [
    record("A", 1, ["[CLS]", "good", "movie", "[SEP]"], [1.0, 0.6, 0.2, 0.2]),
    record("B", 1, ["[CLS]", "good", "plot", "[SEP]"], [1.0, 0.3, 0.3, 0.0]),
    record("C", 0, ["[CLS]", "bad", "movie", "[SEP]"], [1.0, 0.5, 0.5, 0.0]),
    record("D", 0, ["[CLS]", "bad", "plot", "movie", "[SEP]"], [1.0, 0.4, -0.2, 0.4, 0.2]),
    record("E", 1, ["[CLS]", "good", "plot", "[SEP]"], [1.0, 0.5, 0.1, 0.1]),
    record("F", 0, ["[CLS]", "bad", "movie", "[SEP]"], [1.0, 0.3, 0.2, 0.0]),
]


@pytest.fixture(scope="module")
def quiet_report():
    """A real aggregation of six documents: too few for any tie to be significant, nothing flagged."""
    words, tokens = Statistics("word", 2, top_k=2), Statistics("token", 2, top_k=2)
    for doc in DOCS:
        words.add(doc)
        tokens.add(doc)
    meta = {"labels": LABELS, "class_documents": words.class_documents, "top_k": 2, "documents": len(DOCS)}
    report = AuditReport(meta=meta, words=words.results(), tokens=tokens.results(), shortcuts=[], thresholds=Thresholds())
    report.attach_examples(DOCS)
    return report


def test_html_shows_table_plot_and_examples_when_nothing_is_flagged(quiet_report):
    report = quiet_report
    assert not report.flags("word") and not report.flags("token")
    page = report.to_html()
    assert "No word is flagged." in page and "<p>none</p>" not in page
    assert "`" not in page
    rows = re.findall(r"<tr id='row-\d+' class='' data-word='([^']*)'", page)
    assert sorted(rows) == sorted(html.escape(s.item, quote=True) for s in report.words)
    assert "<svg class='plot'" in page and page.count("<circle class='pt'") == sum(s.count >= 3 for s in report.words)
    # the most relevant words' documents are rendered with their maps, the word outlined
    for word in ("good", "bad", "movie", "plot"):
        section = re.search(rf"<section id='ex-\d+'><h3 class='w'>{word}</h3>(.*?)</section>", page)
        assert section, word
        assert section.group(1).count("<figure>") == 3
        assert re.search(rf"<span class='tok hit' title='{word}: [-0-9.e]+' style='background:rgba", section.group(1))
    markdown = report.to_markdown()
    assert "## Shortcut candidates" not in markdown and "No shortcut candidates, over-relevant words" in markdown


def test_html_is_self_contained_and_its_parts_parse(quiet_report):
    page = quiet_report.to_html()
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page) and "<link" not in page
    svg = page[page.index("<svg"): page.index("</svg>") + len("</svg>")]
    root = ElementTree.fromstring(svg)  # well-formed XML: the plot can be saved or embedded on its own
    assert root.tag.endswith("svg") and any(c.tag.endswith("title") for c in root.iter())
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the script's syntax is not checked")
    script = page[page.index("<script>") + len("<script>"): page.index("</script>")]
    checked = subprocess.run(["node", "--check", "-"], input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def visible_text(fragment: str) -> str:
    """The text a reader sees: tags removed, special-token chips dropped, entities decoded."""
    fragment = re.sub(r"<span class='chip[^>]*>[^<]*</span>", "", fragment)
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_render_document_keeps_the_text_and_marks_the_word():
    text = "the plot was dull, dull & <slow>"
    tokens = ["[CLS]", "the", "plot", "was", "du", "##ll", ",", "du", "##ll", "&", "<", "slow", ">", "[SEP]"]
    offsets = [(0, 0), (0, 3), (4, 8), (9, 12), (13, 15), (15, 17), (17, 18), (19, 21), (21, 23), (24, 25), (26, 27),
               (27, 31), (31, 32), (0, 0)]
    words = [["the", [1]], ["plot", [2]], ["was", [3]], ["dull", [4, 5]], [",", [6]], ["dull", [7, 8]], ["&", [9]],
             ["<", [10]], ["slow", [11]], [">", [12]]]
    scores = [5.0, 0.1, 0.2, 0.0, 0.8, 0.4, 0.0, 0.3, 0.1, 0.0, 0.0, -0.4, 0.0, 0.1]
    doc = {"id": "x", "label": 0, "predicted": 0, "probabilities": [0.9, 0.1], "text": text, "tokens": tokens,
           "scores": scores, "special": [t in ("[CLS]", "[SEP]") for t in tokens],
           "excluded": [t == "[CLS]" for t in tokens], "offsets": offsets, "words": words}
    shown = render_document(doc, "dull", LABELS.get)
    body = shown[shown.index("<div class=doc>") + len("<div class=doc>"): shown.rindex("</div>")]
    assert visible_text(body) == text
    assert body.count("class='tok hit'") == 4  # both occurrences, both pieces
    assert "rgba(220,40,40,1.000)" in body  # the largest score (0.8; the readout's 5.0 is excluded)
    assert "rgba(40,80,220,0.500)" in body  # -0.4: negative relevance in blue, on the same scale
    assert "label negative, predicted negative (90%)" in shown
    long_doc = {**doc, "tokens": ["[CLS]"] + ["w"] * 200 + ["[SEP]"], "scores": [1.0] + [0.1] * 200 + [0.0],
                "special": [True] + [False] * 200 + [True], "excluded": [True] + [False] * 201, "offsets": None,
                "words": [["w", [100]]], "text": None}
    cut = render_document(long_doc, "w", LABELS.get)
    assert cut.count("class='tok") == 81 and cut.count("\u2026") == 2 and cut.count("hit") == 1


def test_bad_significance_level_is_refused_before_the_model_loads(tmp_path, capsys):
    with pytest.raises(ValueError, match="alpha must lie between 0 and 1"):
        Thresholds(alpha=0.0)
    with pytest.raises(ValueError, match="weak_margin must lie between 0 and 1"):
        Thresholds(weak_margin=1.5)
    data = tmp_path / "data.csv"
    data.write_text("text,label\ngood,1\n")
    assert main(["audit", str(data), "--alpha", "1.5", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path)]) == 2
    assert "alpha must lie between 0 and 1 (exclusive), got 1.5" in capsys.readouterr().err


def test_plot_names_every_flagged_point_and_skips_crowded_others():
    from relevancy.audit.page import _labels

    names = [(False, 0, 100, 100, 4, "too"), (False, 0, 101, 101, 4, "t"), (True, 1, 100, 100, 4, "movie"),
             (True, 2, 100, 100, 4, "film"), (True, 3, 100, 100, 4, "plot"), (True, 4, 100, 100, 4, "scene")]
    placed = re.findall(r">([^<]+)</text>", "".join(_labels(names)))
    assert set(placed[:2]) == {"t", "too"} and "scene" not in placed  # flagged names first, crowded others left out

"""The audit's findings: what is flagged, why and with what confidence, as JSON, Markdown and HTML.

Every flag rests on a test of the item's label distribution against its count (see
``relevancy.audit.stats``), Bonferroni-corrected for the number of tests the report makes (items
counted at least ``min_count`` times x classes), at family-wise level ``alpha``:
- shortcut candidate: the data ties the word to a class beyond chance, and removing the word moves
  many predictions away from that class. Words the model relies on without such a tie (negations,
  ordinary sentiment words on a balanced sample) are listed as relied on, not flagged;
- over-relevant: much relevance (mean lift >= ``high_lift``) on an item that the data shows to be
  tied to no class (an equivalence test: every class's share within ``weak_margin`` of its base
  rate). Too few documents to tell is not evidence of a weak tie, so rare items are never flagged;
- under-relevant: items the data ties to a class, or that sit inside human rationales, but that get
  little relevance (mean lift <= ``low_lift``).
"Lift" is an occurrence's share of its document's positive relevance times the number of units in
the document: 1 is what a uniform map gives, whatever the document's length.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .stats import ItemStats, equivalence_p_value

TABLE_ROWS = 20
HTML_EXAMPLES = 5  # flagged items per kind whose documents the HTML shows
TOP_WORDS = 10  # most relevant words whose documents the HTML shows, flagged or not


@dataclass
class Thresholds:
    min_count: int = 3  # fewer occurrences are not judged (nor counted as tests)
    alpha: float = 0.05  # family-wise error rate of the label tests (Bonferroni)
    weak_margin: float = 0.15  # "tied to no class": every class's share within this of its base rate
    high_lift: float = 2.0  # over-relevant: mean lift at least this
    low_lift: float = 0.5  # under-relevant: mean lift at most this
    move: float = 0.2  # shortcut: a drop of the predicted class's probability that counts as strong
    shortcut_rate: float = 0.25  # shortcut: share of documents flipped or strongly moved

    def __post_init__(self) -> None:
        for name in ("alpha", "weak_margin"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie between 0 and 1 (exclusive), got {getattr(self, name)}")


@dataclass
class Association:
    """An item's label test, corrected for the number of tests the report makes."""

    item: str
    label: str  # the class the item is most tied to
    with_label: int  # documents with the item in that class
    documents: int  # documents with the item
    base_rate: float  # that class's share of all documents
    z: float
    p_value: float  # one-sided binomial, uncorrected
    p_adjusted: float  # Bonferroni: p_value x tests, at most 1
    tests: int
    significant: bool

    @property
    def share(self) -> float:
        return self.with_label / self.documents if self.documents else 0.0

    def describe(self) -> str:
        """The test's result in plain words, with its confidence."""
        counts = (
            f"{self.with_label} of the {self.documents} documents with it are {self.label} ({self.share:.0%}, "
            f"against {self.base_rate:.0%} of all documents; z = {self.z:.1f}, p = {format_p(self.p_value)}, "
            f"{format_p(self.p_adjusted)} after Bonferroni correction for {self.tests} tests)"
        )
        if self.significant:
            return f"the data ties it to {self.label}: {counts}"
        return f"no tie to a label significant after correction (a weak tie, or too few documents to tell): {counts}"

    def to_dict(self) -> dict:
        return {**asdict(self), "share": self.share}


def format_p(p: float) -> str:
    if p <= 0.0:
        return "< 1e-300"
    if p >= 1.0:
        return "1"
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


@dataclass
class ShortcutResult:
    """What removing one word (all its occurrences in a document) does to the predictions."""

    item: str
    measured: int  # documents measured
    flips: int  # predictions that changed class
    affected: int  # flipped, or the predicted class's probability fell by >= thresholds.move
    mean_drop: float  # mean fall of the predicted class's probability
    class_drops: list[float] = field(default_factory=list)  # per class: mean fall of its probability
    evidence: list = field(default_factory=list)  # [drop, doc id, snippet], largest drop first

    @property
    def affected_rate(self) -> float:
        return self.affected / self.measured if self.measured else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "affected_rate": self.affected_rate}


@dataclass
class Flag:
    item: str
    level: str
    kind: str  # "over_relevant", "under_relevant" or "shortcut"
    reasons: list[str]  # plain words, each with its evidence and confidence
    evidence: list  # [value, doc id, snippet]
    stats: ItemStats | None = None
    shortcut: ShortcutResult | None = None
    association: Association | None = None

    def to_dict(self) -> dict:
        data = {"item": self.item, "level": self.level, "kind": self.kind, "reasons": self.reasons, "evidence": self.evidence}
        if self.stats is not None:
            data["stats"] = {k: v for k, v in self.stats.to_dict().items() if k not in ("top_evidence", "low_evidence")}
        if self.shortcut is not None:
            data["shortcut"] = {k: v for k, v in self.shortcut.to_dict().items() if k != "evidence"}
        if self.association is not None:
            data["association"] = self.association.to_dict()
        return data


SHORTCUT_MEANING = (
    "The data alone ties the word to a class beyond chance, and the model's predictions depend on it: the pattern "
    "of a data-set shortcut (Gardner et al. 2021). Whether the word should decide the label is a question about "
    "the task: a sentiment word deciding sentiment is expected, a name, a formatting token or a made-up word is not."
)
OVER_MEANING = (
    "The map puts much relevance on an item whose label distribution shows, with the stated confidence, that it "
    "says little about the label: an artefact of the model or of the method (often special tokens or punctuation)."
)
UNDER_MEANING = (
    "The data ties the word to a class (or humans marked it as evidence), yet the map gives it little relevance: "
    "the model may ignore evidence, or the method may not show it."
)

RELIED_MEANING = (
    "Removing these words moves many predictions, but the data does not tie them, beyond chance, to the class their "
    "presence pushes the model towards: the model uses them (for sentiment, negations and sentiment words are "
    "expected to matter), and nothing here points to a data-set shortcut."
)


@dataclass
class AuditReport:
    meta: dict  # "labels" (class names) and "class_documents" (documents per class) are needed
    words: list[ItemStats]
    tokens: list[ItemStats]
    shortcuts: list[ShortcutResult]
    thresholds: Thresholds
    rationale: dict | None = None
    examples: dict = field(default_factory=dict)  # doc id -> its record (text, tokens, scores, ...), for the HTML
    prompt: dict | None = None  # causal LMs: relevance of the prompt template against the input (audit.llm.template_view)
    _tests: dict = field(default_factory=dict, init=False, repr=False)

    # -- the label test ----------------------------------------------------------------------------
    def tests(self, level: str = "word") -> int:
        """How many one-sided label tests the report's claims at ``level`` are corrected for."""
        if level not in self._tests:
            counted = sum(1 for s in self._level(level) if s.count >= self.thresholds.min_count)
            self._tests[level] = counted * len(self._class_documents())
        return self._tests[level]

    def association(self, stats: ItemStats, level: str = "word") -> Association:
        c = stats.associated_class
        class_documents = self._class_documents()
        tests = max(self.tests(level), 1)
        p_adjusted = min(1.0, stats.p_values[c] * tests)
        return Association(
            item=stats.item, label=self.label_name(c), with_label=stats.label_counts[c], documents=stats.documents,
            base_rate=class_documents[c] / sum(class_documents), z=stats.z[c], p_value=stats.p_values[c],
            p_adjusted=p_adjusted, tests=tests,
            significant=stats.count >= self.thresholds.min_count and p_adjusted < self.thresholds.alpha,
        )

    def weak_tie_p(self, stats: ItemStats, level: str = "word") -> float:
        """Bonferroni-corrected p-value of "tied to no class" (within ``weak_margin`` of every base rate)."""
        p = equivalence_p_value(stats.label_counts, self._class_documents(), self.thresholds.weak_margin)
        return min(1.0, p * max(self.tests(level), 1))

    # -- flags -------------------------------------------------------------------------------------
    def over_relevant(self, level: str = "word") -> list[Flag]:
        """Most lift first."""
        t = self.thresholds
        flags = []
        for s in sorted(self._level(level), key=lambda s: (-s.mean_lift, s.item)):
            if s.count < t.min_count or s.mean_lift < t.high_lift:
                continue
            association = self.association(s, level)
            if association.significant:
                continue  # the data ties it to a class: relevance on it may be evidence
            p_weak = self.weak_tie_p(s, level)
            if p_weak >= t.alpha:
                continue  # too few documents, or a tie too strong, to say it tells nothing
            what = "a special token, not part of the text" if s.special else (
                "punctuation" if s.punctuation else "a stop word" if s.stop_word else "a word")
            reasons = [
                f"{what} with {s.mean_lift:.1f}x a uniform share of relevance "
                f"(among its document's {self.meta.get('top_k', 'k')} most relevant in {s.top_k_rate:.0%} of its occurrences)",
                f"tied to no label: every class's share of its {s.documents} documents lies within "
                f"{t.weak_margin:.0%} of the base rate (equivalence test, p = {format_p(p_weak)} after Bonferroni correction)",
            ]
            flags.append(Flag(s.item, level, "over_relevant", reasons, s.top_evidence, stats=s, association=association))
        return flags

    def under_relevant(self, level: str = "word") -> list[Flag]:
        """Most significant tie to a label first, then most occurrences inside rationales."""
        t = self.thresholds
        flags = []
        for s in sorted(self._level(level), key=lambda s: (min(s.p_values), -s.rationale_count, s.item)):
            if s.count < t.min_count or s.special or s.punctuation or s.stop_word:
                continue
            association = self.association(s, level)
            reasons = []
            if association.significant and s.mean_lift <= t.low_lift:
                reasons += [association.describe(), f"but it gets {s.mean_lift:.2f}x a uniform share of relevance"]
            if s.rationale_count >= t.min_count and s.rationale_lift is not None and s.rationale_lift <= t.low_lift:
                reasons.append(f"in human rationales {s.rationale_count} times but {s.rationale_lift:.2f}x a uniform share there")
            if reasons:
                flags.append(Flag(s.item, level, "under_relevant", reasons, s.low_evidence, stats=s, association=association))
        return flags

    def relies_on(self, r: ShortcutResult) -> bool:
        """Whether removing the word moves many predictions."""
        return r.affected >= 2 and r.affected_rate >= self.thresholds.shortcut_rate

    @staticmethod
    def describe_removal(r: ShortcutResult) -> str:
        return (
            f"removing it flips {r.flips} and strongly moves {r.affected - r.flips} more of {r.measured} predictions "
            f"(mean drop of the predicted class's probability {r.mean_drop:.2f})"
        )

    def shortcut_flags(self) -> list[Flag]:
        """Words the data ties to a class and whose removal moves many predictions away from that
        class; most affected documents first."""
        flags = []
        for r in self.shortcuts:
            s = self._find(r.item)
            if not self.relies_on(r) or s is None:
                continue
            association = self.association(s)
            removal = self.describe_removal(r)
            c = s.associated_class
            if association.significant and r.class_drops[c] > 0:  # its presence pushes towards its class
                removal += f"; {association.label}'s probability falls by {r.class_drops[c]:.2f} on average"
                flags.append(Flag(r.item, "word", "shortcut", [association.describe(), removal], r.evidence,
                                  stats=s, shortcut=r, association=association))
        return flags

    def relied_on(self) -> list[tuple[ShortcutResult, Association]]:
        """Words whose removal moves many predictions but that are not flagged: the data does not tie
        them to the class they push (for sentiment: negations, ordinary sentiment words)."""
        flagged = {f.item for f in self.shortcut_flags()}
        found = []
        for r in self.shortcuts:
            s = self._find(r.item)
            if s is not None and self.relies_on(r) and r.item not in flagged:
                found.append((r, self.association(s)))
        return found

    def rank(self, item: str, kind: str, level: str = "word") -> int | None:
        """1-based rank of ``item`` among the flags of ``kind`` ("over_relevant", "under_relevant",
        "shortcut", or "relevance": all items by mean lift among those counted), None if absent."""
        if kind == "relevance":
            ordered = [s.item for s in self.by_relevance(level)]
        elif kind == "shortcut":
            ordered = [f.item for f in self.shortcut_flags()]
        elif kind in ("over_relevant", "under_relevant"):
            ordered = [f.item for f in getattr(self, kind)(level)]
        else:
            raise ValueError(f"unknown kind {kind!r}: use over_relevant, under_relevant, shortcut or relevance")
        return ordered.index(item) + 1 if item in ordered else None

    def by_relevance(self, level: str = "word") -> list[ItemStats]:
        """Items counted at least ``min_count`` times, special tokens aside, most lift first: the ranking."""
        counted = [s for s in self._level(level) if s.count >= self.thresholds.min_count and not s.special]
        return sorted(counted, key=lambda s: (-s.mean_lift, s.item))

    def flags(self, level: str = "word") -> list[Flag]:
        return [*(self.shortcut_flags() if level == "word" else []), *self.over_relevant(level), *self.under_relevant(level)]

    def _level(self, level: str) -> list[ItemStats]:
        if level not in ("word", "token"):
            raise ValueError(f"unknown level {level!r}: use 'word' or 'token'")
        return self.words if level == "word" else self.tokens

    def _find(self, item: str) -> ItemStats | None:
        return next((s for s in self.words if s.item == item), None)

    def label_name(self, index: int) -> str:
        labels = self.meta.get("labels") or {}
        return str(labels.get(index, labels.get(str(index), index)))

    def _class_documents(self) -> list[int]:
        counts = self.meta.get("class_documents")
        if not counts:
            raise ValueError("the report's meta needs 'class_documents' (documents per class) for the label tests")
        return counts

    # -- examples for the HTML view ----------------------------------------------------------------
    def example_words(self) -> list[tuple[str, list]]:
        """(word, [doc ids]) shown with their documents: flagged words first, then the most relevant."""
        chosen: dict[str, list] = {}
        for flag in [*self.shortcut_flags()[:HTML_EXAMPLES], *self.over_relevant()[:HTML_EXAMPLES],
                     *self.under_relevant()[:HTML_EXAMPLES]]:
            chosen.setdefault(flag.item, [e[1] for e in flag.evidence])
        for s in self.by_relevance()[:TOP_WORDS]:
            chosen.setdefault(s.item, [e[1] for e in s.top_evidence])
        return list(chosen.items())

    def example_ids(self) -> set[str]:
        """The documents the HTML report shows."""
        return {doc for _, docs in self.example_words() for doc in docs}

    def attach_examples(self, records) -> None:
        """Keep the records of the documents the HTML report shows (``records`` may hold others)."""
        wanted = self.example_ids()
        keep = ("id", "text", "label", "predicted", "probabilities", "tokens", "scores", "special", "excluded", "offsets", "words")
        for record in records:
            if record["id"] in wanted:
                self.examples[record["id"]] = {k: record.get(k) for k in keep}

    # -- outputs -----------------------------------------------------------------------------------
    def word_rows(self) -> list[dict]:
        """One row per word with its statistics, label test and removal result: the report's table."""
        removal = {r.item: r for r in self.shortcuts}
        flagged: dict[str, list[str]] = {}
        for flag in self.flags("word"):
            flagged.setdefault(flag.item, []).append(flag.kind)
        rank = {s.item: i for i, s in enumerate(self.by_relevance(), 1)}
        order = sorted(self.words, key=lambda s: (s.item not in rank, rank.get(s.item, 0), -s.mean_lift, s.item))
        rows = []
        for s in order:
            association = self.association(s)
            r = removal.get(s.item)
            rows.append({
                "rank": rank.get(s.item), "word": s.item, "count": s.count, "documents": s.documents,
                "total_share": s.total_share, "mean_share": s.mean_share, "lift": s.mean_lift, "top_k": s.top_k_rate,
                "positive": s.positive_rate, "special": s.special, "label": association.label, "label_share": association.share,
                "base_rate": association.base_rate, "z": association.z, "p": association.p_value,
                "p_adjusted": association.p_adjusted, "significant": association.significant, "tested": s.count >= self.thresholds.min_count,
                "removal": None if r is None else {"measured": r.measured, "flips": r.flips, "affected": r.affected,
                                                   "rate": r.affected_rate, "mean_drop": r.mean_drop},
                "flags": flagged.get(s.item, []),
            })
        return rows

    def to_dict(self) -> dict:
        return {
            "meta": self.meta,
            "thresholds": asdict(self.thresholds),
            "association_test": self.test_description(),
            "rationale": self.rationale,
            **({"prompt": self.prompt} if self.prompt else {}),
            "flags": {
                "shortcut": [f.to_dict() for f in self.shortcut_flags()],
                "over_relevant": {level: [f.to_dict() for f in self.over_relevant(level)] for level in ("word", "token")},
                "under_relevant": {level: [f.to_dict() for f in self.under_relevant(level)] for level in ("word", "token")},
            },
            "relied_on": [{"item": r.item, "removal": r.to_dict(), "association": a.to_dict()}
                          for r, a in self.relied_on()],
            "shortcuts": [r.to_dict() for r in self.shortcuts],
            "words": [{**s.to_dict(), "p_adjusted": self.association(s).p_adjusted} for s in self.words],
            "tokens": [{**s.to_dict(), "p_adjusted": self.association(s, "token").p_adjusted} for s in self.tokens],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def test_description(self) -> str:
        t = self.thresholds
        return (
            f"For each word seen at least {t.min_count} times and each class: among the n documents that contain "
            "the word, are more of them in the class than the class's share of all documents predicts? A one-sided "
            f"exact binomial test; p-values are multiplied by the number of tests ({self.tests('word')} for words, "
            f"Bonferroni), and a tie counts when the corrected p-value is below {t.alpha:g}: at most a {t.alpha:.0%} "
            "chance that any reported tie is due to chance alone."
        )

    def summary(self) -> list[str]:
        """What was audited, how, and how much relevance the human rationales get (plain text lines)."""
        m = self.meta
        lines = [
            f"- model: {m.get('model')}; method: {m.get('method')}; explained class: {m.get('target')}",
            f"- data: {m.get('data')}: {m.get('documents')} documents"
            + (f", {m['truncated']} truncated to {m.get('max_length')} tokens" if m.get("truncated") else ""),
            "- lift = share of the document's positive relevance x units in the document (1 = uniform); "
            f"top-k with k = {m.get('top_k')}",
        ]
        if m.get("class_documents"):
            total = sum(m["class_documents"])
            shares = ", ".join(f"{self.label_name(c)} {n / total:.0%}" for c, n in enumerate(m["class_documents"]))
            lines.append(f"- labels: {shares}")
        if self.rationale:
            r = self.rationale
            lines.append(
                f"- human rationales ({r['documents']} documents): {r['mean_relevance_inside']:.1%} of the relevance "
                f"on {r['mean_fraction_of_words_inside']:.1%} of the words"
            )
        return lines

    def flag_sections(self) -> list[tuple[str, list, str]]:
        """(title, flags, what a flag there means) for each kind of flag, in reading order."""
        return [
            ("Shortcut candidates", self.shortcut_flags(), SHORTCUT_MEANING),
            ("Over-relevant words", self.over_relevant("word"), OVER_MEANING),
            ("Under-relevant words", self.under_relevant("word"), UNDER_MEANING),
            ("Over-relevant tokens", self.over_relevant("token"), OVER_MEANING),
            ("Under-relevant tokens", self.under_relevant("token"), UNDER_MEANING),
        ]

    def to_markdown(self, rows: int = TABLE_ROWS) -> str:
        lines = ["# Relevance audit", "", *self.summary(), "", self.test_description(), ""]
        if self.prompt:
            from .llm import template_markdown

            lines += template_markdown(self.prompt)
        sections = self.flag_sections()
        empty = [title for title, flags, _ in sections if not flags]
        for title, flags, meaning in sections:
            if flags:
                lines += [f"## {title}", "", meaning, ""]
                lines += [f"{i}. {_code(f.item)}: " + "; ".join(f.reasons) + f" (e.g. {_example(f.evidence)})"
                          for i, f in enumerate(flags[:rows], 1)]
                lines.append("")
        if empty:
            lines += ["No " + ", ".join(t.lower() for t in empty) + " found.", ""]
        relied = self.relied_on()
        if relied:
            lines += ["## Relied on, not flagged", "",
                      RELIED_MEANING, ""]
            lines += [f"- {_code(r.item)}: {self.describe_removal(r)}; {a.describe()}" for r, a in relied[:rows]]
            lines.append("")
        lines += ["## Removal test", ""]
        lines += _table(
            ["rank", "word", "measured", "flips", "affected", "mean drop", "flagged", "example"],
            [
                [i, _code(r.item), r.measured, r.flips, r.affected, f"{r.mean_drop:.3f}",
                 "yes" if r.item in {f.item for f in self.shortcut_flags()} else "", _example(r.evidence)]
                for i, r in enumerate(self.shortcuts[:rows], 1)
            ],
        )
        lines += ["", "## Most relevant words (mean lift, seen at least "
                  f"{self.thresholds.min_count} times)", ""]
        lines += _table(
            ["rank", "word", "count", "total share", "lift", "top-k", "positive", "label share (base)", "z", "p (corrected)", "flags"],
            [
                [row["rank"], _code(row["word"]), row["count"], f"{row['total_share']:.2f}", f"{row['lift']:.2f}",
                 f"{row['top_k']:.2f}", f"{row['positive']:.2f}",
                 f"{row['label_share']:.0%} {row['label']} ({row['base_rate']:.0%})", f"{row['z']:.1f}",
                 format_p(row["p_adjusted"]), ", ".join(row["flags"])]
                for row in self.word_rows()[:rows] if row["rank"] is not None
            ],
        )
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        from .page import render_report

        return render_report(self)

    def save(self, out: str | Path) -> list[Path]:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in (("report.json", self.to_json()), ("report.md", self.to_markdown()), ("report.html", self.to_html())):
            (folder / name).write_text(text, encoding="utf-8")
            written.append(folder / name)
        return written


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _example(evidence: list) -> str:
    if not evidence:
        return ""
    _, doc, text = evidence[0]
    return f"{doc}: {text}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    if not rows:
        return ["(none)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines

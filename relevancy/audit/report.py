"""The audit's findings: what is flagged and why, as ranked Markdown tables, JSON and HTML.

Three kinds of flags, each with evidence (document ids and snippets):
- over-relevant: much relevance (mean lift >= ``high_lift``) on items with little label association,
  on special tokens, or on punctuation and stop words that the labels do not strongly favour;
- shortcut: items whose removal flips or strongly moves the prediction in many documents;
- under-relevant: items strongly associated with a label, or inside human rationales, that get
  little relevance (mean lift <= ``low_lift``).
"Lift" is an occurrence's share of its document's positive relevance times the number of units in
the document: 1 is what a uniform map gives, whatever the document's length.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .stats import ItemStats

TABLE_ROWS = 20
HTML_EXAMPLES = 5


@dataclass
class Thresholds:
    min_count: int = 3  # fewer occurrences are not judged
    high_lift: float = 2.0  # over-relevant: mean lift at least this
    weak_association: float = 0.5  # over-relevant: log odds ratio below this
    strong_association: float = 1.5  # under-relevant: log odds ratio at least this (odds x 4.5)
    low_lift: float = 0.5  # under-relevant: mean lift at most this
    move: float = 0.2  # shortcut: a drop of the predicted class's probability that counts as strong
    shortcut_rate: float = 0.25  # shortcut: share of documents flipped or strongly moved


@dataclass
class ShortcutResult:
    """What removing one word (all its occurrences in a document) does to the predictions."""

    item: str
    measured: int  # documents measured
    flips: int  # predictions that changed class
    affected: int  # flipped, or the predicted class's probability fell by >= thresholds.move
    mean_drop: float  # mean fall of the predicted class's probability
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
    reasons: list[str]
    evidence: list  # [value, doc id, snippet]
    stats: ItemStats | None = None
    shortcut: ShortcutResult | None = None

    def to_dict(self) -> dict:
        data = {"item": self.item, "level": self.level, "kind": self.kind, "reasons": self.reasons, "evidence": self.evidence}
        if self.stats is not None:
            data["stats"] = {k: v for k, v in self.stats.to_dict().items() if k not in ("top_evidence", "low_evidence")}
        if self.shortcut is not None:
            data["shortcut"] = {k: v for k, v in self.shortcut.to_dict().items() if k != "evidence"}
        return data


@dataclass
class AuditReport:
    meta: dict
    words: list[ItemStats]
    tokens: list[ItemStats]
    shortcuts: list[ShortcutResult]
    thresholds: Thresholds
    rationale: dict | None = None
    examples: dict = field(default_factory=dict)  # doc id -> tokens and scores, for the HTML view

    # -- flags -------------------------------------------------------------------------------------
    def over_relevant(self, level: str = "word") -> list[Flag]:
        """Most lift first."""
        t = self.thresholds
        flags = []
        for s in sorted(self._level(level), key=lambda s: (-s.mean_lift, s.item)):
            if s.count < t.min_count or s.mean_lift < t.high_lift:
                continue
            function_word = s.association < t.strong_association  # "!" or "too" may be real evidence in the data
            kinds = (("special token", s.special), ("punctuation", s.punctuation and function_word),
                     ("stop word", s.stop_word and function_word))
            reasons = [reason for reason, hit in kinds if hit]
            if s.association < t.weak_association:
                reasons.append(f"weak label association (log odds {s.association:.2f})")
            if reasons:
                reasons.insert(0, f"{s.mean_lift:.1f}x a uniform share of relevance")
                flags.append(Flag(s.item, level, "over_relevant", reasons, s.top_evidence, stats=s))
        return flags

    def under_relevant(self, level: str = "word") -> list[Flag]:
        """Strongest label association first, then most occurrences inside rationales."""
        t = self.thresholds
        flags = []
        for s in sorted(self._level(level), key=lambda s: (-s.association, -s.rationale_count, s.item)):
            if s.count < t.min_count or s.special or s.punctuation or s.stop_word:
                continue
            reasons = []
            if s.association >= t.strong_association and s.mean_lift <= t.low_lift:
                reasons.append(
                    f"strong association with {self._label(s.associated_class)} (log odds {s.association:.2f}) "
                    f"but {s.mean_lift:.2f}x a uniform share of relevance"
                )
            if s.rationale_count >= t.min_count and s.rationale_lift is not None and s.rationale_lift <= t.low_lift:
                reasons.append(f"in human rationales {s.rationale_count} times but {s.rationale_lift:.2f}x a uniform share there")
            if reasons:
                flags.append(Flag(s.item, level, "under_relevant", reasons, s.low_evidence, stats=s))
        return flags

    def shortcut_flags(self) -> list[Flag]:
        """Measured candidates that move many predictions, most affected documents first."""
        t = self.thresholds
        flags = []
        for r in self.shortcuts:
            if r.affected >= 2 and r.affected_rate >= t.shortcut_rate:
                reason = (
                    f"removing it flips {r.flips} and strongly moves {r.affected - r.flips} of {r.measured} predictions "
                    f"(mean drop {r.mean_drop:.2f})"
                )
                flags.append(Flag(r.item, "word", "shortcut", [reason], r.evidence, stats=self._find(r.item), shortcut=r))
        return flags

    def rank(self, item: str, kind: str, level: str = "word") -> int | None:
        """1-based rank of ``item`` among the flags of ``kind`` ("over_relevant", "under_relevant",
        "shortcut", or "relevance": all items by mean lift among those counted), None if absent."""
        if kind == "relevance":
            counted = [s for s in self._level(level) if s.count >= self.thresholds.min_count and not s.special]
            ordered = [s.item for s in sorted(counted, key=lambda s: (-s.mean_lift, s.item))]
        elif kind == "shortcut":
            ordered = [f.item for f in self.shortcut_flags()]
        elif kind in ("over_relevant", "under_relevant"):
            ordered = [f.item for f in getattr(self, kind)(level)]
        else:
            raise ValueError(f"unknown kind {kind!r}: use over_relevant, under_relevant, shortcut or relevance")
        return ordered.index(item) + 1 if item in ordered else None

    def _level(self, level: str) -> list[ItemStats]:
        if level not in ("word", "token"):
            raise ValueError(f"unknown level {level!r}: use 'word' or 'token'")
        return self.words if level == "word" else self.tokens

    def _find(self, item: str) -> ItemStats | None:
        return next((s for s in self.words if s.item == item), None)

    def _label(self, index: int) -> str:
        labels = self.meta.get("labels") or {}
        return str(labels.get(index, labels.get(str(index), index)))

    # -- examples for the HTML view ----------------------------------------------------------------
    def _sections(self) -> list[tuple[str, list[Flag]]]:
        return [
            ("Shortcut candidates", self.shortcut_flags()),
            ("Over-relevant words", self.over_relevant("word")),
            ("Under-relevant words", self.under_relevant("word")),
            ("Over-relevant tokens", self.over_relevant("token")),
            ("Under-relevant tokens", self.under_relevant("token")),
        ]

    def attach_examples(self, records) -> None:
        """Keep the tokens and scores of the documents the HTML report shows."""
        wanted = {f.evidence[0][1] for _, flags in self._sections() for f in flags[:HTML_EXAMPLES] if f.evidence}
        for record in records:
            if record["id"] in wanted:
                self.examples[record["id"]] = {k: record[k] for k in ("tokens", "scores", "special", "excluded")}

    # -- outputs -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "meta": self.meta,
            "thresholds": asdict(self.thresholds),
            "rationale": self.rationale,
            "flags": {
                "shortcut": [f.to_dict() for f in self.shortcut_flags()],
                "over_relevant": {level: [f.to_dict() for f in self.over_relevant(level)] for level in ("word", "token")},
                "under_relevant": {level: [f.to_dict() for f in self.under_relevant(level)] for level in ("word", "token")},
            },
            "shortcuts": [r.to_dict() for r in self.shortcuts],
            "words": [s.to_dict() for s in self.words],
            "tokens": [s.to_dict() for s in self.tokens],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self) -> list[str]:
        """What was audited, how, and how much relevance the human rationales get."""
        m = self.meta
        lines = [
            f"- model: `{m.get('model')}`; method: `{m.get('method')}`; explained class: {m.get('target')}",
            f"- data: {m.get('data')}: {m.get('documents')} documents"
            + (f", {m['truncated']} truncated to {m.get('max_length')} tokens" if m.get("truncated") else ""),
            "- lift = share of the document's positive relevance x units in the document (1 = uniform); "
            f"top-k with k = {m.get('top_k')}",
        ]
        if self.rationale:
            r = self.rationale
            lines.append(
                f"- human rationales ({r['documents']} documents): {r['mean_relevance_inside']:.1%} of the relevance "
                f"on {r['mean_fraction_of_words_inside']:.1%} of the words"
            )
        return lines

    def to_markdown(self, rows: int = TABLE_ROWS) -> str:
        lines = ["# Relevance audit", "", *self.summary(), "", "## Shortcut candidates (removal test)", ""]
        lines += _table(
            ["rank", "word", "measured", "flips", "affected", "mean drop", "flagged", "example"],
            [
                [i, _code(r.item), r.measured, r.flips, r.affected, f"{r.mean_drop:.3f}",
                 "yes" if r.affected >= 2 and r.affected_rate >= self.thresholds.shortcut_rate else "",
                 _example(r.evidence)]
                for i, r in enumerate(self.shortcuts[:rows], 1)
            ],
        )
        for title, flags in self._sections()[1:]:
            lines += ["", f"## {title}", ""]
            lines += _table(
                ["rank", "item", "count", "mean share", "lift", "top-k", "log odds (class)", "MI (bits)", "why", "example"],
                [
                    [i, _code(f.item), f.stats.count, f"{f.stats.mean_share:.3f}", f"{f.stats.mean_lift:.2f}",
                     f"{f.stats.top_k_rate:.2f}", f"{f.stats.association:+.2f} ({self._label(f.stats.associated_class)})",
                     f"{f.stats.mutual_information:.4f}", "; ".join(f.reasons), _example(f.evidence)]
                    for i, f in enumerate(flags[:rows], 1)
                ],
            )
        lines += ["", "## Most relevant words (total share)", ""]
        lines += _table(
            ["rank", "word", "count", "total share", "mean share", "lift", "top-k", "positive", "log odds (class)", "MI (bits)"],
            [
                [i, _code(s.item), s.count, f"{s.total_share:.2f}", f"{s.mean_share:.3f}", f"{s.mean_lift:.2f}",
                 f"{s.top_k_rate:.2f}", f"{s.positive_rate:.2f}",
                 f"{s.association:+.2f} ({self._label(s.associated_class)})", f"{s.mutual_information:.4f}"]
                for i, s in enumerate(self.words[:rows], 1)
            ],
        )
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        items = "".join(f"<li>{html.escape(line[2:])}</li>" for line in self.summary())
        parts = [f"<h1>Relevance audit</h1><ul>{items}</ul>"]
        for title, flags in self._sections():
            parts.append(f"<h2>{html.escape(title)}</h2>")
            if not flags:
                parts.append("<p>none</p>")
            for flag in flags[:HTML_EXAMPLES]:
                parts.append(f"<h3><code>{html.escape(flag.item)}</code></h3><p>{html.escape('; '.join(flag.reasons))}</p>")
                evidence = "".join(
                    f"<li><b>{html.escape(str(doc))}</b>: {html.escape(text)}</li>" for _, doc, text in flag.evidence
                )
                parts.append(f"<ul>{evidence}</ul>")
                if flag.evidence and flag.evidence[0][1] in self.examples:
                    doc = flag.evidence[0][1]
                    example = self.examples[doc]
                    shown = [0.0 if ex else s for s, ex in zip(example["scores"], example["excluded"])]
                    parts.append(render_tokens(example["tokens"], shown, signed=False, title=f"document {doc}"))
        style = "body{font-family:sans-serif;max-width:60em;margin:auto}pre{white-space:pre-wrap}"
        head = f"<meta charset='utf-8'><title>Relevance audit</title><style>{style}</style>"
        return f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(parts)}</body></html>"

    def save(self, out: str | Path) -> list[Path]:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in (("report.json", self.to_json()), ("report.md", self.to_markdown()), ("report.html", self.to_html())):
            (folder / name).write_text(text, encoding="utf-8")
            written.append(folder / name)
        return written


def render_tokens(tokens: list[str], scores: list[float], *, signed: bool, title: str) -> str:
    """Tokens shaded by relevance (red positive, blue negative), word pieces joined."""
    peak = max((abs(s) for s in scores), default=0.0) or 1.0
    spans = []
    for token, score in zip(tokens, scores):
        text = token[2:] if token.startswith("##") else " " + token
        value = score / peak if signed else max(score, 0.0) / peak
        colour = f"rgba(220,40,40,{value:.3f})" if value >= 0 else f"rgba(40,80,220,{-value:.3f})"
        spans.append(f"<span title='{score:.4g}' style='background:{colour}'>{html.escape(text)}</span>")
    return f"<figure><figcaption>{html.escape(title)}</figcaption><p>{''.join(spans)}</p></figure>"


def _table(header: list[str], rows: list[list]) -> list[str]:
    if not rows:
        return ["none"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _example(evidence: list) -> str:
    if not evidence:
        return ""
    _, doc, text = evidence[0]
    return f"{doc}: {text}"

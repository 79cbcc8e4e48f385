"""The audit report as one self-contained HTML page: findings in plain words, a plot of relevance
lift against label association, a sortable table of every word, and example documents shaded by
their maps. No network: the style and the script are inline. The pieces (``report_body``,
``render_document``, ``STYLE``, ``SCRIPT``) are what the explorer (``relevancy serve``) shows for an
audit folder, so the static report and the explorer show the same table and plot.
"""

from __future__ import annotations

import html
import math
from statistics import NormalDist

from .report import RELIED_MEANING, AuditReport, format_p

LABELLED = 10  # most relevant words named in the plot (flagged words always are)
WINDOW = 40  # tokens shown on either side of the word in a long document
FLAG_NAMES = {"shortcut": "shortcut candidate", "over_relevant": "over-relevant", "under_relevant": "under-relevant"}
COLOURS = {"shortcut": "#d62728", "over_relevant": "#ff7f0e", "under_relevant": "#1f77b4"}

STYLE = """
body{font-family:system-ui,sans-serif;max-width:72em;margin:auto;padding:0 1em;color:#222}
h1,h2,h3{font-weight:600}code,.w{font-family:ui-monospace,monospace}
table.words{border-collapse:collapse;font-size:.85em;width:100%}
table.words th{position:sticky;top:0;background:#f3f3f3;cursor:pointer;user-select:none;text-align:right;padding:3px 6px}
table.words th[aria-sort=ascending]::after{content:" \\25B2"}table.words th[aria-sort=descending]::after{content:" \\25BC"}
table.words td{text-align:right;padding:2px 6px;border-bottom:1px solid #eee}
table.words td.t,table.words th.t{text-align:left}
table.words tr.flagged td.word{font-weight:700;color:#b00}
table.words tr.sel{background:#fff3b0}
.table-box{max-height:34em;overflow:auto;border:1px solid #ddd}
.controls{margin:.5em 0}.controls input{margin-right:1em}
svg.plot{border:1px solid #ddd;background:#fff}svg.plot .pt{cursor:pointer}
svg.plot .pt.sel{stroke:#000;stroke-width:2.5}svg.plot text{font-size:11px}
#plot-info{min-height:1.4em;font-size:.9em}
.doc{line-height:1.9;margin:.3em 0 1em}.doc .tok{border-radius:2px}
.doc .hit{outline:2px solid #000;outline-offset:1px}
.doc .chip{font-size:.7em;color:#555;border:1px solid #bbb;border-radius:3px;padding:0 2px;margin:0 2px}
figcaption{font-size:.8em;color:#555}
.legend span{display:inline-block;margin-right:1.2em}
.legend i{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.3em;vertical-align:middle}
"""

# relevancyAudit(root): the table's sorting and filtering and the plot's selection inside ``root``
# (the document here; the explorer's audit panel in ``relevancy serve``). Clicking a point or a row also
# sends an 'audit-word' event with the word, which the explorer answers with the word's documents.
SCRIPT = """
function relevancyAudit(root) {
  var table = root.querySelector('#words');
  if (!table) return;
  var body = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;
  function key(row, i, numeric) {
    var cell = row.cells[i];
    if (!numeric) return cell.textContent.toLowerCase();
    var v = parseFloat(cell.getAttribute('data-v'));
    return isNaN(v) ? null : v;
  }
  Array.prototype.forEach.call(headers, function (th, i) {
    th.addEventListener('click', function () {
      var numeric = th.getAttribute('data-type') === 'num';
      var current = th.getAttribute('aria-sort');
      var descending = current ? current === 'ascending' : numeric && th.getAttribute('data-first') !== 'ascending';
      Array.prototype.forEach.call(headers, function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, i, numeric), y = key(b, i, numeric);
        if (x === y) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * (descending ? -1 : 1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  var filter = root.querySelector('#filter'), flaggedOnly = root.querySelector('#flagged-only');
  function applyFilter() {
    var q = filter.value.toLowerCase();
    Array.prototype.forEach.call(body.rows, function (row) {
      var hide = row.getAttribute('data-word').toLowerCase().indexOf(q) < 0 ||
        (flaggedOnly.checked && !row.classList.contains('flagged'));
      row.style.display = hide ? 'none' : '';
    });
  }
  filter.addEventListener('input', applyFilter);
  flaggedOnly.addEventListener('change', applyFilter);
  var info = root.querySelector('#plot-info');
  function select(id, scroll) {
    root.querySelectorAll('.sel').forEach(function (e) { e.classList.remove('sel'); });
    var row = root.querySelector('#' + id);
    if (row) {
      row.classList.add('sel');
      if (scroll) row.scrollIntoView({block: 'center'});
    }
    var point = root.querySelector('.pt[data-row="' + id + '"]');
    if (point) point.classList.add('sel');
    if (row) table.dispatchEvent(new CustomEvent('audit-word', {bubbles: true, detail: row.getAttribute('data-word')}));
  }
  root.querySelectorAll('.pt').forEach(function (point) {
    point.addEventListener('mouseenter', function () {
      info.textContent = point.getAttribute('data-info');
    });
    point.addEventListener('click', function () {
      info.textContent = point.getAttribute('data-info');
      select(point.getAttribute('data-row'), true);
    });
  });
  Array.prototype.forEach.call(body.rows, function (row) {
    row.addEventListener('click', function () { select(row.id, false); });
  });
}
"""


def render_report(report: AuditReport) -> str:
    head = f"<meta charset='utf-8'><title>Relevance audit</title><style>{STYLE}</style>"
    return (f"<!DOCTYPE html><html lang='en'><head>{head}</head><body>{report_body(report)}"
            f"<script>{SCRIPT}relevancyAudit(document);</script></body></html>")


def report_body(report: AuditReport) -> str:
    """The report's content (findings, plot, table, examples) without the page around it, as the
    static report and the explorer's audit panel both show it."""
    from .llm import template_html

    rows = report.word_rows()
    examples = report.example_words()
    example_ids = {word: f"ex-{i}" for i, (word, _) in enumerate(examples)}
    summary = "".join(f"<li>{html.escape(line[2:])}</li>" for line in report.summary())
    parts = [
        "<h1>Relevance audit</h1>", f"<ul>{summary}</ul>",
        f"<p>{html.escape(report.test_description())}</p>",
        template_html(report.prompt) if report.prompt else "",
        "<h2>Findings</h2>", _findings(report, example_ids),
        "<h2>Relevance lift against label association</h2>", association_plot(report, rows),
        "<h2>Every word</h2>", word_table(rows, example_ids),
        "<h2>Examples</h2>",
        "<p>The documents where each word got the most relevance (for under-relevant words: the least), shaded by "
        "the map (red: positive relevance, blue: negative; the word outlined; hover for the exact score).</p>",
        _examples(report, examples, example_ids),
    ]
    return "".join(parts)


def _findings(report: AuditReport, example_ids: dict) -> str:
    sections = report.flag_sections()
    parts = []
    for title, flags, meaning in sections:
        if not flags:
            continue
        items = "".join(
            f"<li>{_word_link(f.item, example_ids)}: {html.escape('; '.join(f.reasons))}</li>" for f in flags
        )
        parts.append(f"<h3>{title}</h3><p>{html.escape(meaning)}</p><ol>{items}</ol>")
    if not parts:
        parts.append(
            "<p><b>No word is flagged.</b> No word that the model relies on is tied to a label beyond chance, no "
            "word with high relevance is shown to be tied to no label, and no word tied to a label is ignored by the "
            "map. The table, the plot and the examples below show where the relevance goes.</p>"
        )
    empty = [title.lower() for title, flags, _ in sections if not flags]
    if empty and len(empty) < len(sections):
        parts.append(f"<p>No {', '.join(empty)}.</p>")
    relied = report.relied_on()
    if relied:
        items = "".join(
            f"<li>{_word_link(r.item, example_ids)}: {html.escape(report.describe_removal(r))}; "
            f"{html.escape(a.describe())}</li>"
            for r, a in relied
        )
        parts.append(
            f"<h3>Relied on, not flagged</h3><p>{html.escape(RELIED_MEANING)}</p><ul>{items}</ul>"
        )
    return "".join(parts)


def _word_link(word: str, example_ids: dict) -> str:
    text = f"<span class='w'>{html.escape(word)}</span>"
    return f"<a href='#{example_ids[word]}'>{text}</a>" if word in example_ids else text


COLUMNS = [  # header, tooltip, numeric (numbers sort largest first, except rank and p)
    ("rank", "rank by mean lift among words seen at least min_count times", True),
    ("word", "", False),
    ("count", "occurrences", True),
    ("docs", "documents containing it", True),
    ("total share", "sum of its shares of its documents' positive relevance", True),
    ("mean share", "mean share of its document's positive relevance", True),
    ("lift", "mean share x units in the document: 1 = what a uniform map gives", True),
    ("top-k", "share of occurrences among the document's k most relevant units", True),
    ("positive", "share of occurrences with a positive score", True),
    ("label", "the class it is most tied to", False),
    ("label share", "share of its documents in that class, against the class's share of all documents", True),
    ("z", "(k - n p0) / sqrt(n p0 (1 - p0))", True),
    ("p", "one-sided binomial p-value, Bonferroni-corrected", True),
    ("removal", "predictions flipped or strongly moved when the word is removed / documents measured", True),
    ("flag", "", False),
]


def word_table(rows: list[dict], example_ids: dict | None = None) -> str:
    """A sortable table, one row per word (``AuditReport.word_rows``): click a header to sort."""
    example_ids = example_ids or {}
    head = "".join(
        f"<th title='{html.escape(tip, quote=True)}' data-type='{'num' if numeric else 'text'}'"
        f"{' data-first=ascending' if name in ('rank', 'p') else ''}{'' if numeric else ' class=t'}>{name}</th>"
        for name, tip, numeric in COLUMNS
    )
    body = []
    for i, row in enumerate(rows):
        r = row["removal"]
        flags = ", ".join(FLAG_NAMES[k] for k in row["flags"])
        significance = "" if not row["tested"] else (" *" if row["significant"] else "")
        cells = [
            _num("" if row["rank"] is None else row["rank"], row["rank"]),
            f"<td class='t word'>{_word_link(row['word'], example_ids)}</td>",
            _num(row["count"], row["count"]),
            _num(row["documents"], row["documents"]),
            _num(f"{row['total_share']:.2f}", row["total_share"]),
            _num(f"{row['mean_share']:.3f}", row["mean_share"]),
            _num(f"{row['lift']:.2f}", row["lift"]),
            _num(f"{row['top_k']:.2f}", row["top_k"]),
            _num(f"{row['positive']:.2f}", row["positive"]),
            f"<td class=t>{html.escape(row['label'])}</td>",
            _num(f"{row['label_share']:.0%} ({row['base_rate']:.0%})", row["label_share"] - row["base_rate"]),
            _num(f"{row['z']:.1f}", row["z"]),
            _num(format_p(row["p_adjusted"]) + significance, row["p_adjusted"]),
            _num("" if r is None else f"{r['affected']}/{r['measured']}", None if r is None else r["rate"]),
            f"<td class=t>{flags}</td>",
        ]
        classes = "flagged" if row["flags"] else ""
        body.append(
            f"<tr id='row-{i}' class='{classes}' data-word='{html.escape(row['word'], quote=True)}'>{''.join(cells)}</tr>"
        )
    controls = (
        "<div class=controls><input id=filter type=search placeholder='filter words'>"
        "<label><input id=flagged-only type=checkbox> flagged only</label>"
        " <small>click a header to sort; * = tie to the label significant after correction</small></div>"
    )
    return (f"{controls}<div class=table-box><table id=words class=words><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _num(text, value) -> str:
    v = "" if value is None else f"{float(value):.6g}"
    return f"<td data-v='{v}'>{html.escape(str(text))}</td>"


def association_plot(report: AuditReport, rows: list[dict], width: int = 760, height: int = 440) -> str:
    """Inline SVG: one point per word seen at least ``min_count`` times; x the label test's z (for
    two classes signed: right = the second class), y the mean lift on a log scale."""
    tested = [(i, row) for i, row in enumerate(rows) if row["tested"]]
    if not tested:
        return "<p>No word was seen often enough to be tested.</p>"
    labels = [report.label_name(c) for c in range(len(report.meta.get("class_documents", [])))]
    binary = len(labels) == 2
    xs = {i: (row["z"] if row["label"] == labels[1] else -row["z"]) if binary else row["z"] for i, row in tested}
    tests = max(report.tests("word"), 1)
    critical = NormalDist().inv_cdf(1 - report.thresholds.alpha / tests)
    span = max(max(abs(x) for x in xs.values()), critical * 1.2, 3.0) * 1.05
    x_low = -span if binary else min(0.0, min(xs.values()) * 1.05)
    lifts = [row["lift"] for _, row in tested]
    y_low, y_high = -5.0, max(2.0, math.log2(max(max(lifts), 1e-9)) + 0.5)
    left, right, top, bottom = 48, 16, 16, 44

    def px(x: float) -> float:
        return left + (x - x_low) / (span - x_low) * (width - left - right)

    def py(lift: float) -> float:
        value = min(max(math.log2(lift) if lift > 0 else y_low, y_low), y_high)
        return top + (y_high - value) / (y_high - y_low) * (height - top - bottom)

    parts = [f"<rect x='{left}' y='{top}' width='{width - left - right}' height='{height - top - bottom}' fill='none' stroke='#ccc'/>"]
    for power in range(math.ceil(y_low), math.floor(y_high) + 1, 2):
        y = py(2.0 ** power)
        tick = f"{2.0 ** power:g}" if power >= 0 else f"1/{2 ** -power}"
        parts.append(f"<line x1='{left}' x2='{width - right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>"
                     f"<text x='{left - 4}' y='{y + 4:.1f}' text-anchor='end'>{tick}</text>")
    for lift, note in ((1.0, "uniform"), (report.thresholds.high_lift, "high lift")):
        y = py(lift)
        parts.append(f"<line x1='{left}' x2='{width - right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#999' stroke-dasharray='4 3'/>"
                     f"<text x='{width - right - 4}' y='{y - 3:.1f}' text-anchor='end' fill='#777'>{note}</text>")
    for x in (critical, -critical) if binary else (critical,):
        parts.append(f"<line x1='{px(x):.1f}' x2='{px(x):.1f}' y1='{top}' y2='{height - bottom}' stroke='#999' stroke-dasharray='4 3'/>")
    for tick in range(math.ceil(x_low), math.floor(span) + 1, max(1, round(span / 6))):
        parts.append(f"<text x='{px(tick):.1f}' y='{height - bottom + 14}' text-anchor='middle'>{tick}</text>")
    axis = (f"z: tied to {html.escape(labels[0])} \u2190 \u2192 tied to {html.escape(labels[1])}" if binary
            else "z of the class the word is most tied to")
    parts.append(f"<text x='{(left + width - right) / 2}' y='{height - 6}' text-anchor='middle'>{axis} "
                 "(dashed: significant after correction, normal approximation)</text>"
                 f"<text transform='rotate(-90)' x='{-(top + height - bottom) / 2}' y='12' text-anchor='middle'>"
                 "mean lift (log scale)</text>")
    order = sorted(tested, key=lambda pair: (bool(pair[1]["flags"]), pair[1]["significant"]))  # flagged drawn last
    names = []
    for i, row in order:
        kind = row["flags"][0] if row["flags"] else None
        colour = COLOURS[kind] if kind else ("#333" if row["significant"] else "#bbb")
        x, y = px(xs[i]), py(row["lift"])
        radius = 2.5 + 1.5 * math.log10(row["count"])
        info = (f"{row['word']}: lift {row['lift']:.2f}, {row['count']} occurrences, {row['label_share']:.0%} "
                f"{row['label']} (base {row['base_rate']:.0%}), z = {row['z']:.1f}, p = {format_p(row['p_adjusted'])}"
                + (f"; {', '.join(FLAG_NAMES[k] for k in row['flags'])}" if row["flags"] else ""))
        parts.append(
            f"<circle class='pt' data-row='row-{i}' data-word='{html.escape(row['word'], quote=True)}' "
            f"data-info='{html.escape(info, quote=True)}' cx='{x:.1f}' cy='{y:.1f}' r='{radius:.1f}' fill='{colour}' "
            f"fill-opacity='0.75'><title>{html.escape(info)}</title></circle>"
        )
        if row["flags"] or (row["rank"] or LABELLED + 1) <= LABELLED:
            names.append((not row["flags"], row["rank"] or 0, x, y, radius, row["word"]))
    parts += _labels(names)
    legend = "".join(
        f"<span><i style='background:{colour}'></i>{name}</span>"
        for name, colour in [(FLAG_NAMES[k], COLOURS[k]) for k in COLOURS]
        + [("tied to a label (significant)", "#333"), ("not significant", "#bbb")]
    )
    return (f"<svg class='plot' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='relevance lift against label association'>"
            f"{''.join(parts)}</svg><div class=legend>{legend}</div>"
            "<div id=plot-info>Hover over a point to see its word; click it to find the word in the table.</div>")


def _labels(names: list[tuple]) -> list[str]:
    """Word names beside their points, flagged first, then by rank: right of the point, else left,
    above or below; a flagged word's name is always placed, another's only where it overlaps no
    name already placed (its tooltip still names it)."""
    placed, out = [], []
    for unflagged, _, x, y, radius, word in sorted(names):
        width = 6.5 * len(word)
        candidates = [(x + radius + 2, y + 4), (x - radius - 2 - width, y + 4), (x - width / 2, y - radius - 3),
                      (x - width / 2, y + radius + 11)]
        boxes = [(cx, cy - 10, cx + width, cy + 2) for cx, cy in candidates]
        free = [box for box in boxes if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                                                 for b in placed)]
        if not free and unflagged:
            continue
        box = (free or boxes)[0]
        placed.append(box)
        out.append(f"<text x='{box[0]:.1f}' y='{box[3] - 2:.1f}'>{html.escape(word)}</text>")
    return out


def _examples(report: AuditReport, examples: list, example_ids: dict) -> str:
    flagged = {}
    for flag in report.flags("word"):
        flagged.setdefault(flag.item, flag)
    stats = {s.item: s for s in report.words}
    rank = {s.item: i for i, s in enumerate(report.by_relevance(), 1)}
    parts = []
    for word, docs in examples:
        flag = flagged.get(word)
        if flag is not None:
            about = f"{FLAG_NAMES[flag.kind]}: " + "; ".join(flag.reasons)
        else:
            s = stats[word]
            about = (f"rank {rank[word]} by relevance: {s.mean_lift:.1f}x a uniform share, among the top-k in "
                     f"{s.top_k_rate:.0%} of its {s.count} occurrences; {report.association(s).describe()}")
        shown = [render_document(report.examples[doc], word, report.label_name) for doc in docs if doc in report.examples]
        parts.append(
            f"<section id='{example_ids[word]}'><h3 class='w'>{html.escape(word)}</h3><p>{html.escape(about)}</p>"
            f"{''.join(shown) or '<p>(documents not kept)</p>'}</section>"
        )
    return "".join(parts)


def render_document(record: dict, item: str, label_name=str) -> str:
    """The document's text shaded by its map (red positive, blue negative, relative to the document's
    largest score), with ``item``'s occurrences outlined; long documents are cut around the item."""
    tokens, scores, special, excluded = record["tokens"], record["scores"], record["special"], record["excluded"]
    hits = {p for key, positions in record.get("words") or [] if key == item for p in positions}
    hits |= {p for p, token in enumerate(tokens) if special[p] and token == item}
    peak = max((abs(s) for s, ex in zip(scores, excluded) if not ex), default=0.0) or 1.0
    centre = min(hits) if hits else 0
    start = max(0, min(centre - WINDOW, len(tokens) - 2 * WINDOW - 1))
    end = min(len(tokens), start + 2 * WINDOW + 1)
    text, offsets = record.get("text") or "", record.get("offsets")
    out = ["\u2026 "] if start > 0 else []
    cursor = None
    for p in range(start, end):
        score = scores[p]
        value = 0.0 if excluded[p] else score / peak
        colour = f"rgba(220,40,40,{value:.3f})" if value >= 0 else f"rgba(40,80,220,{-value:.3f})"
        tip = f"{tokens[p]}: {score:.4g}" + (" (excluded: the readout's own relevance)" if excluded[p] else "")
        hit = " hit" if p in hits else ""
        if special[p]:
            out.append(f"<span class='chip{hit}' title='{html.escape(tip, quote=True)}' style='background:{colour}'>"
                       f"{html.escape(tokens[p])}</span>")
            continue
        if offsets is not None:
            begin, finish = offsets[p]
            if cursor is not None and begin > cursor:
                out.append(html.escape(text[cursor:begin]))
            piece = text[max(begin, cursor or 0):finish]
            cursor = max(cursor or 0, finish)
        else:
            piece = tokens[p][2:] if tokens[p].startswith("##") else " " + tokens[p]
        out.append(f"<span class='tok{hit}' title='{html.escape(tip, quote=True)}' style='background:{colour}'>"
                   f"{html.escape(piece)}</span>")
    if end < len(tokens):
        out.append(" \u2026")
    probabilities = record.get("probabilities") or []
    predicted = record.get("predicted")
    caption = f"document {record['id']}: label {label_name(record['label'])}"
    if predicted is not None and probabilities:
        caption += f", predicted {label_name(predicted)} ({probabilities[predicted]:.0%})"
    return f"<figure><figcaption>{html.escape(caption)}</figcaption><div class=doc>{''.join(out)}</div></figure>"

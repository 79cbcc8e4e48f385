"""The output folders the explorer shows, read back exactly as the library wrote them: an audit folder
(``relevancy audit --out``: report.json and documents.jsonl) and an evaluation folder (``relevancy
evaluate --out``: results.json and its plots). Nothing is recomputed here: the audit's statistics,
flags and removal results come from report.json, the maps from the documents' records."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from ..audit.report import AuditReport, ShortcutResult, Thresholds
from ..audit.stats import ItemStats

AUDIT_FILES = ("report.json", "documents.jsonl")
EVALUATION_FILE = "results.json"
PLOT_SUFFIXES = (".png", ".svg")


def _stats(data: dict) -> ItemStats:
    return ItemStats(**{f.name: data[f.name] for f in fields(ItemStats)})


def check_folders(audits: list, evaluations: list) -> None:
    """Refuse folders that are not audit or evaluation outputs, before any model loads."""
    for folder in audits:
        missing = [name for name in AUDIT_FILES if not (Path(folder) / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{folder} is not an audit folder ({', '.join(missing)} missing): give a folder written by "
                "`relevancy audit ... --out DIR`"
            )
    for folder in evaluations:
        if not (Path(folder) / EVALUATION_FILE).is_file():
            raise FileNotFoundError(
                f"{folder} is not an evaluation folder (no {EVALUATION_FILE}): give a folder written by "
                "`relevancy evaluate ... --out DIR`"
            )


def load_audit_report(folder: str | Path) -> AuditReport:
    """The AuditReport that ``relevancy audit --out FOLDER`` saved, with the records of the documents
    that any word's evidence names (the documents the page can show)."""
    check_folders([folder], [])
    folder = Path(folder)
    saved = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    report = AuditReport(
        meta=saved["meta"],
        words=[_stats(s) for s in saved["words"]],
        tokens=[_stats(s) for s in saved["tokens"]],
        shortcuts=[ShortcutResult(**{f.name: s[f.name] for f in fields(ShortcutResult)}) for s in saved["shortcuts"]],
        thresholds=Thresholds(**saved["thresholds"]),
        rationale=saved.get("rationale"),
    )
    wanted = {e[1] for s in report.words for e in (*s.top_evidence, *s.low_evidence)}
    wanted |= {e[1] for r in report.shortcuts for e in r.evidence}
    keep = ("id", "text", "label", "predicted", "probabilities", "tokens", "scores", "special", "excluded", "offsets", "words")
    with (folder / "documents.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["id"] in wanted:
                report.examples[record["id"]] = {k: record.get(k) for k in keep}
    return report


@dataclass
class EvaluationFolder:
    """results.json of ``relevancy evaluate --out FOLDER`` and the plots beside it (by file name)."""

    folder: Path
    results: dict
    plots: list[str]

    @classmethod
    def load(cls, folder: str | Path) -> "EvaluationFolder":
        check_folders([], [folder])
        folder = Path(folder)
        results = json.loads((folder / EVALUATION_FILE).read_text(encoding="utf-8"))
        plots = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PLOT_SUFFIXES and p.is_file())
        return cls(folder, results, plots)

    def plot_path(self, name: str) -> Path | None:
        """The plot called ``name``, only if it is one of the files listed at start-up and still lies
        inside the folder (no ``..``, no absolute path, no link out of it)."""
        if name not in self.plots:
            return None
        path = (self.folder / name).resolve()
        return path if path.parent == self.folder.resolve() and path.is_file() else None


def unique_names(folders: list[str | Path]) -> dict[str, Path]:
    """Each folder under its own name (its last part; -2, -3, ... where two share one): the page names
    folders only by these, never by path."""
    named: dict[str, Path] = {}
    for folder in folders:
        base = Path(folder).resolve().name or "folder"
        name, number = base, 1
        while name in named:
            number += 1
            name = f"{base}-{number}"
        named[name] = Path(folder)
    return named

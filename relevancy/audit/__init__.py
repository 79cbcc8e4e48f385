"""Audit a labelled text data set for wrong relevance: over-relevant items, shortcuts, under-relevant
items (``relevancy audit`` on the command line)."""

from .data import TextDataset, TextExample, encode_labels, load_texts
from .report import AuditReport, Flag, ShortcutResult, Thresholds
from .runner import AuditSettings, audit, measure_shortcuts
from .stats import ItemStats, Statistics, log_odds_ratio, mutual_information
from .stopwords import STOP_WORDS

__all__ = [
    "STOP_WORDS", "AuditReport", "AuditSettings", "Flag", "ItemStats", "ShortcutResult", "Statistics", "TextDataset",
    "TextExample", "Thresholds", "audit", "encode_labels", "load_texts", "log_odds_ratio", "measure_shortcuts",
    "mutual_information",
]

"""A small English stop-word list: words that rarely carry a text's meaning, so much relevance on
them hints at an artefact of the model or the method rather than evidence. Negations (no, nor, not,
n't) are left out: they change a text's meaning and are legitimate evidence for sentiment."""

from __future__ import annotations

import unicodedata

STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves 's 're 've 'd 'll 'm s t
    """.split()
)


def is_stop_word(text: str) -> bool:
    return text.lower() in STOP_WORDS


def is_punctuation(text: str) -> bool:
    """True for a non-empty string of punctuation/symbol characters only (WordPiece '##' ignored)."""
    stripped = text[2:] if text.startswith("##") else text
    stripped = stripped.lstrip("Ġ▁")  # byte-level BPE / SentencePiece word-start markers
    return bool(stripped) and all(unicodedata.category(c)[0] in "PS" for c in stripped)

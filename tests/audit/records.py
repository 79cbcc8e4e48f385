"""Hand-made audit records (what ``relevancy.audit.runner`` stores per document)."""


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

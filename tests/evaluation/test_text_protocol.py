"""The text side of the protocol end to end, on hand-computed cases: word pieces -> words -> token-F1
and AUPRC through the runner, and comprehensiveness/sufficiency of token removals on a keyword model."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import relevancy.evaluation.runner as runner
from relevancy.engine import Attribution
from relevancy.evaluation import evaluate, load_eraser
from relevancy.evaluation.perturbation import TokenRemoval, faithfulness_scores, perturbation_curves

from .conftest import eraser_row, write_eraser

# 10 words; "unwatchably" is several word pieces, and it and "dull" are the human rationale
DOC = "the film is unwatchably dull and the cast looks lost"
EVIDENCE = [3, 4]


def fake_attribute(word_score, all_word_ids):
    """Replaces the engine: each token scores ``word_score(word index, piece number)`` (specials: 9),
    from the tokenizer's word_ids, as a method's map is indexed."""

    def attribute(model, inputs, method, target=None, **_):
        ids = inputs["input_ids"]
        scores = torch.zeros(ids.shape)
        for b, word_ids in enumerate(all_word_ids):
            seen = {}
            for position, word in enumerate(word_ids):
                if word is None:
                    scores[b, position] = 9.0  # special tokens must never count as words
                else:
                    seen[word] = seen.get(word, -1) + 1
                    scores[b, position] = word_score(word, seen[word])
        return Attribution(scores, "tokens", False, method, torch.zeros(ids.shape[0], 2), torch.ones(ids.shape[0], dtype=torch.long))

    return attribute


@pytest.fixture
def one_review(tmp_path, minilm_tokenizer):
    words = DOC.split()
    spans = [(3, 5, "unwatchably dull")]
    data = load_eraser(write_eraser(tmp_path / "data", {"r1": DOC}, [eraser_row("r1", "NEG", spans)]), "val")
    encoding = minilm_tokenizer([words], is_split_into_words=True)
    word_ids = [encoding.word_ids(0)]
    assert word_ids[0].count(3) > 1, "the test needs a word split into several pieces"
    return data, word_ids


def rationale(tmp_path, model, tokenizer, review, monkeypatch, word_score):
    data, word_ids = review
    monkeypatch.setattr(runner, "attribute", fake_attribute(word_score, word_ids))
    results = evaluate(model, tokenizer, data, ["rollout"], ["rationale"], out_dir=tmp_path / "out", restart=True, progress=False)
    return {row.name: row.values["rollout"] for row in results.rows}


def test_perfect_map_through_word_pieces(tmp_path, tiny_bert, minilm_tokenizer, one_review, monkeypatch):
    # only the LAST piece of "unwatchably" is high: the word's score is the max over its pieces
    values = rationale(tmp_path, tiny_bert, minilm_tokenizer, one_review, monkeypatch, lambda w, piece: float(w in EVIDENCE and (w == 4 or piece > 0)))
    assert values["AUPRC"] == pytest.approx(1.0)
    # k = 5: both rationale words + 3 tied words; P = 2/5, R = 1; k >= 10: all 10 words, P = 1/5
    assert values["token F1@5"] == pytest.approx(2 * 0.4 / 1.4)
    assert values["token F1@10"] == values["token F1@80"] == pytest.approx(2 * 0.2 / 1.2)


def test_inverted_and_constant_maps(tmp_path, tiny_bert, minilm_tokenizer, one_review, monkeypatch):
    inverted = rationale(tmp_path, tiny_bert, minilm_tokenizer, one_review, monkeypatch, lambda w, piece: float(w not in EVIDENCE))
    assert inverted["AUPRC"] == pytest.approx(2 / 10)  # one threshold with 8 misses, then all 10 words
    assert inverted["token F1@5"] == 0.0
    constant = rationale(tmp_path, tiny_bert, minilm_tokenizer, one_review, monkeypatch, lambda w, piece: 0.5)
    assert constant["AUPRC"] == pytest.approx(2 / 10)  # a tie of all words: precision = prevalence
    # ties go to the earliest words: the top 5 are words 0..4, which hold both rationale words
    assert constant["token F1@5"] == pytest.approx(2 * 0.4 / 1.4)


class KeywordModel(nn.Module):
    """Positive logit 4 per occurrence of one token id, negative logit 1: p(positive) = sigmoid(4n − 1)."""

    def __init__(self, keyword: int) -> None:
        super().__init__()
        self.keyword = keyword

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        count = ((input_ids == self.keyword) & attention_mask.bool()).sum(-1).float()
        return torch.stack([torch.ones_like(count), 4 * count], -1)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("mode", ["mask", "delete"])
def test_faithfulness_on_tokens_perfect_inverted_constant(minilm_tokenizer, mode):
    inputs = dict(minilm_tokenizer(["the acting is superb"], return_tensors="pt"))
    superb = minilm_tokenizer.convert_tokens_to_ids("superb")
    assert inputs["input_ids"][0].tolist().index(superb) == 4  # [CLS] the acting is superb [SEP]
    model, removal = KeywordModel(superb), TokenRemoval(inputs, minilm_tokenizer, mode)
    labels = classes = torch.tensor([1])
    full, without = sigmoid(3), sigmoid(-1)
    # 4 removable words; bins 1, 5, 10, 20, 50 % take ceil: 1, 1, 1, 1, 2 words
    perfect = torch.tensor([[9.0, 0, 0, 0, 5, 9]])  # specials score high but are never removed
    (scores,) = faithfulness_scores(model, removal, perfect, labels, classes)
    assert scores["comprehensiveness"] == pytest.approx(full - without)
    assert scores["sufficiency"] == pytest.approx(0.0)
    inverted = torch.tensor([[0.0, 3, 2, 1, 0, 0]])
    (scores,) = faithfulness_scores(model, removal, inverted, labels, classes)
    assert scores["comprehensiveness"] == pytest.approx(0.0)
    assert scores["sufficiency"] == pytest.approx(full - without)
    # constant: ties remove the earliest words first, so "superb" (last) is never in the top 50 %
    (scores,) = faithfulness_scores(model, removal, torch.zeros(1, 6), labels, classes)
    assert (scores["comprehensiveness"], scores["sufficiency"]) == pytest.approx((0.0, full - without))


def test_text_perturbation_curves_on_tokens(minilm_tokenizer):
    inputs = dict(minilm_tokenizer(["a b c d e f g h i superb"], return_tensors="pt"))
    superb = minilm_tokenizer.convert_tokens_to_ids("superb")
    removal = TokenRemoval(inputs, minilm_tokenizer, "mask")
    scores = torch.zeros(1, 12)
    scores[0, 10] = 1.0  # "superb"
    labels = classes = torch.tensor([1])
    positive = perturbation_curves(KeywordModel(superb), removal, scores, labels, classes, most_relevant_first=True)
    assert [float(r.correct[0]) for r in positive] == [1] + [0] * 9  # gone at the first step (1 of 10 words)
    negative = perturbation_curves(KeywordModel(superb), removal, scores, labels, classes, most_relevant_first=False)
    assert [float(r.correct[0]) for r in negative] == [1] * 10  # at 90 %, 9 of 10 removed: "superb" is last
    assert np.allclose([r.probability[0] for r in negative], sigmoid(3))


def test_span_without_token_indices_names_the_line(tmp_path):
    row = eraser_row("r1", "NEG", [])
    row["evidences"] = [[{"docid": "r1", "start_token": "3", "end_token": 5, "text": "unwatchably dull"}]]
    write_eraser(tmp_path, {"r1": DOC}, [row])
    with pytest.raises(ValueError, match=r"val\.jsonl:1: an evidence span needs integer 'start_token'"):
        load_eraser(tmp_path, "val")


def test_oracle_map_on_real_reviews_scores_what_the_window_allows(tmp_path, minilm_tokenizer, monkeypatch):
    """A map that is the human evidence, through word pieces, truncation and the runner, on real val
    reviews: token-F1@k must equal the best possible, 2PR/(P+R) with P = min(k, E_in)/min(k, n_in) and
    R = min(k, E_in)/E (E_in, n_in: evidence words and words inside the 512-token window; E: all evidence),
    and be high — so low F1 of real maps is the maps', not the protocol's."""
    from transformers import BertConfig, BertForSequenceClassification

    from .conftest import require_eraser

    data = load_eraser(require_eraser(), "val").head(4)
    encodings = [minilm_tokenizer(item.words, is_split_into_words=True, truncation=True, max_length=512) for item in data.items]
    word_ids = [e.word_ids() for e in encodings]

    def attribute(model, inputs, method, target=None, **_):
        scores = torch.zeros(inputs["input_ids"].shape)
        for b, (item, encoding, ids) in enumerate(zip(data.items, encodings, word_ids)):
            assert inputs["input_ids"][b, : len(ids)].tolist() == encoding["input_ids"], "the batch holds the reviews in order"
            scores[b, : len(ids)] = torch.tensor([float(w is not None and item.evidence[w]) for w in ids])
        return Attribution(scores, "tokens", False, method, torch.zeros(len(scores), 2), torch.zeros(len(scores), dtype=torch.long))

    monkeypatch.setattr(runner, "attribute", attribute)
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=minilm_tokenizer.vocab_size, id2label={0: "negative", 1: "positive"})
    model = BertForSequenceClassification(config).eval()
    results = evaluate(  # batches in the data's order (length_window=0), as the stand-in attribute expects
        model, minilm_tokenizer, data, ["rollout"], ["rationale"], out_dir=tmp_path, batch_size=4, target="true", progress=False, length_window=0,
    )
    values = {row.name: row.values["rollout"] for row in results.rows}

    def best(item, ids, k):
        window = max(w for w in ids if w is not None) + 1
        evidence = np.asarray(item.evidence, dtype=bool)
        hits = min(k, int(evidence[:window].sum()))
        precision, recall = hits / min(k, window), hits / evidence.sum()
        return 2 * precision * recall / (precision + recall) if hits else 0.0

    for k in (5, 20, 40, 80):
        expected = np.mean([best(item, ids, k) for item, ids in zip(data.items, word_ids)])
        assert values[f"token F1@{k}"] == pytest.approx(expected)
    assert values["token F1@20"] > 0.3  # random word scores give ~0.04 on these data (see the benchmark's reference table)

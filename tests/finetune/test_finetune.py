"""Fine-tuning end to end: the base model is never changed, bad inputs give clear errors."""

import copy
import hashlib
import json
import re

import pytest
import torch

from relevancy.audit import AuditSettings, audit, load_texts
from relevancy.cli.main import main
from relevancy.finetune import (
    RelevanceCollator, RelevanceLoss, audit_words, fine_tune, penalised_token_ids, training_examples,
)
from tests.audit import toy
from tests.models import assert_unchanged, snapshot

ROWS = toy.sentences(24)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    model, tokenizer = toy.model(), toy.tokenizer()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    data = folder.parent / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return model, tokenizer, folder, data


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_fine_tune_trains_a_copy(base):
    model, tokenizer, _, _ = base
    before = snapshot(model)
    examples = training_examples(load_texts(ROWS), toy.LABELS)
    loss = RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=penalised_token_ids(tokenizer, [toy.PLANTED]))
    result = fine_tune(model, tokenizer, examples, loss, steps=3, batch_size=8, learning_rate=1e-3, progress=False)
    assert_unchanged(model, before)
    assert result.model is not model and not result.model.training
    changed = [not torch.equal(a, b) for a, b in zip(model.parameters(), result.model.parameters())]
    assert any(changed)
    assert len(result.history) == 3 and result.history[0]["penalty"] > 0
    with pytest.raises(ValueError, match="no training examples"):
        fine_tune(model, tokenizer, [], loss, steps=1)


def test_on_step_sees_every_step_without_changing_the_training(base):
    """A learning-curve hook (evaluation in eval mode, its own random draws) leaves the trained weights as they were."""
    model, tokenizer, _, _ = base
    model = copy.deepcopy(model)
    for module in model.modules():  # the toy has none: with dropout, a shifted random state would show
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.2
    examples = training_examples(load_texts(ROWS), toy.LABELS)
    loss = RelevanceLoss(penalty_weight=0.0, rationale_weight=0.0)
    options = dict(steps=4, batch_size=8, learning_rate=1e-3, progress=False)
    seen = []

    def hook(step, trained):
        seen.append((step, trained.training))
        trained.eval()
        torch.rand(3)  # a draw that must not shift the dropout masks of the next steps

    plain = fine_tune(model, tokenizer, examples, loss, **options).model
    hooked = fine_tune(model, tokenizer, examples, loss, on_step=hook, **options).model
    assert seen == [(1, True), (2, True), (3, True), (4, True)]
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), hooked.parameters()))


def test_word_lists_are_checked_against_the_vocabulary(base):
    _, tokenizer, _, _ = base
    with pytest.warns(UserWarning, match=r"1 of 2 words.*skipped: blorf"):
        ids = penalised_token_ids(tokenizer, ["ZQ", "blorf"])  # the toy tokenizer lower-cases
    assert ids == [tokenizer.convert_tokens_to_ids("zq")]
    with pytest.raises(ValueError, match="not tokens of the model's vocabulary.*nothing is left"):
        penalised_token_ids(tokenizer, ["blorf", "glarb"])
    with pytest.raises(ValueError, match="word list is empty"):
        penalised_token_ids(tokenizer, [" "])


def test_audit_words_reads_flags():
    report = {"flags": {"shortcut": [{"item": "zq", "stats": {"special": False}}],
                        "over_relevant": {"word": [{"item": "[SEP]", "stats": {"special": True}}, {"item": "the"}]}}}
    assert audit_words(report, ["shortcut", "over_relevant"]) == ["zq", "the"]
    with pytest.raises(ValueError, match="flagged no shortcut"):
        audit_words({"flags": {"shortcut": []}})
    with pytest.raises(ValueError, match="not an audit report"):
        audit_words({"words": []})


def test_collator_places_rationales_on_tokens(base):
    _, tokenizer, _, _ = base
    batch = RelevanceCollator(tokenizer)([{"text": "the plot was dull", "label": 0, "rationales": [(13, 17)]}])
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert [t for t, inside in zip(tokens, batch["rationale_mask"][0]) if inside] == ["dull"]


def test_cli_finetune_writes_a_new_model_and_leaves_the_base(base, tmp_path, capsys):
    _, _, folder, data = base
    before = digest(folder)
    out = tmp_path / "tuned"
    with pytest.warns(UserWarning, match="skipped: blorf"):
        code = main([
            "finetune", str(data), "--model", str(folder), "--out", str(out), "--words", "zq,blorf", "--steps", "2",
            "--batch-size", "8", "--learning-rate", "1e-3", "--id-column", "id", "--quiet",
        ])
    assert code == 0
    assert digest(folder) == before
    assert "penalised tokens: zq" in capsys.readouterr().out
    record = json.loads((out / "finetune.json").read_text())
    assert record["penalised_tokens"] == ["zq"] and len(record["history"]) == 2
    from transformers import AutoModelForSequenceClassification

    tuned = AutoModelForSequenceClassification.from_pretrained(out)
    original = AutoModelForSequenceClassification.from_pretrained(folder)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), original.parameters()))


def test_cli_finetune_magnitude_penalty(base, tmp_path):
    _, _, folder, data = base
    out = tmp_path / "tuned"
    code = main([
        "finetune", str(data), "--model", str(folder), "--out", str(out), "--words", "zq", "--steps", "2", "--batch-size", "8",
        "--method", "input_x_gradient", "--penalty-mode", "magnitude", "--penalty-weight", "100", "--id-column", "id", "--quiet",
        "--relevance-warmup", "4",
    ])
    assert code == 0
    record = json.loads((out / "finetune.json").read_text())
    assert record["settings"]["penalty_mode"] == "magnitude" and record["settings"]["relevance_warmup"] == 4
    assert all(h["penalty"] > 0 for h in record["history"])  # squared relevance of zq, never exactly 0


@pytest.mark.parametrize("mode", ["removal", "deletion"])
def test_cli_finetune_removal_penalty(base, tmp_path, mode):
    _, _, folder, data = base
    out = tmp_path / "tuned"
    code = main([
        "finetune", str(data), "--model", str(folder), "--out", str(out), "--words", "zq", "--steps", "2", "--batch-size", "8",
        "--penalty-mode", mode, "--removal-steps", "2", "--insert-penalised", "--id-column", "id", "--quiet",
    ])
    assert code == 0
    record = json.loads((out / "finetune.json").read_text())
    assert record["settings"]["penalty_mode"] == mode and record["settings"]["insert_penalised"]
    assert all(h["penalty"] > 0 for h in record["history"])


@pytest.mark.parametrize(
    "rows, extra, message",
    [
        ([{"text": "good", "label": "POS"}], ["--words", "zq"], "'POS'.*not among the model's labels"),
        ([{"text": "good", "stars": 5}], ["--words", "zq"], "no label column 'label'"),
        ([], ["--words", "zq"], "no examples"),
        ([{"text": "good", "label": 1}], ["--words", "blorf"], "nothing is left to penalise"),
        ([{"text": "good", "label": 1}], [], "nothing to guide"),
        ([{"text": "good", "label": 1}], ["--rationales"], "no human rationales"),
    ],
)
def test_cli_finetune_errors(base, tmp_path, capsys, rows, extra, message):
    _, _, folder, _ = base
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["finetune", str(data), "--model", str(folder), "--out", str(tmp_path / "out"), "--quiet", *extra])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_relevance_trainer(base, tmp_path):
    pytest.importorskip("accelerate", reason="the Hugging Face Trainer needs the accelerate package")
    from transformers import TrainingArguments

    from relevancy.finetune import RelevanceTrainer

    _, tokenizer, _, _ = base
    student = toy.model()
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-3, report_to=[],
        save_strategy="no", use_cpu=True, remove_unused_columns=False, disable_tqdm=True,
    )
    trainer = RelevanceTrainer(
        model=student, args=args, train_dataset=training_examples(load_texts(ROWS), toy.LABELS),
        data_collator=RelevanceCollator(tokenizer),
        relevance_loss=RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=penalised_token_ids(tokenizer, ["zq"])),
    )
    initial = [p.detach().clone() for p in student.parameters()]
    output = trainer.train()
    assert torch.isfinite(torch.tensor(output.training_loss))
    assert any(not torch.equal(a, b) for a, b in zip(initial, student.parameters()))


def test_miniature_experiment_moves_relevance_off_the_shortcut():
    """The planted-shortcut experiment in miniature: from the toy shortcut model, further steps with the
    penalty take the planted word's relevance away (the audit no longer ranks it near the top), the
    same steps of cross-entropy alone do not. Whether predictions stop using it is what the benchmark
    measures (benchmarks/shortcut_experiment.py): a map can lose relevance faster than the model its habit."""
    model, tokenizer, rows = toy.shortcut_model()
    examples = training_examples(load_texts(rows), toy.LABELS)
    settings = AuditSettings(batch_size=64, shortcut_candidates=4, shortcut_documents=32)
    options = dict(steps=12, batch_size=32, learning_rate=5e-3, progress=False)
    ids = penalised_token_ids(tokenizer, [toy.PLANTED])
    measure = RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=ids)  # the penalty term of either model
    ranks, penalties = {}, {}
    for name, weight in (("plain", 0.0), ("guided", 1.0)):
        loss = RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=ids, penalty_weight=weight)
        result = fine_tune(model, tokenizer, examples, loss, **options)
        report = audit(result.model, tokenizer, rows[:64], settings=settings, progress=False, id_column="id")
        ranks[name] = report.rank(toy.PLANTED, "relevance")
        penalties[name] = measure(result.model, RelevanceCollator(tokenizer)(examples[:64])).penalty.item()
    assert ranks["plain"] <= 3 and ranks["guided"] > 10, ranks
    assert penalties["guided"] < penalties["plain"] / 5, penalties

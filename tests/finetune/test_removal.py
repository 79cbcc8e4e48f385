"""The removal penalty: integrated gradients from the removal baseline, their completeness, an exact
gradient, and that training on it lowers the real effect of removing the token."""

import pytest
import torch

import relevancy
from relevancy.finetune import RelevanceLoss
from relevancy.methods.integrated_gradients import IntegratedGradients
from tests.audit import toy
from tests.finetune.test_loss import TEXTS, batch, check_gradient
from tests.models import redraw


@pytest.fixture(scope="module")
def setup():
    tokenizer = toy.tokenizer()
    model = toy.model(dtype=torch.float64)
    redraw(model, 1)
    ids = [tokenizer.convert_tokens_to_ids(toy.PLANTED)]
    return model, tokenizer, ids


def inputs_of(data):
    return {k: data[k] for k in ("input_ids", "attention_mask")}


def margin(model, inputs, labels):
    with torch.no_grad():
        logits = model(**inputs).logits
    own = logits.gather(-1, labels[:, None]).squeeze(-1)
    return own - (logits.sum(-1) - own)


def test_integrated_gradients_are_complete_from_zero(setup):
    model, tokenizer, _ = setup
    inputs = inputs_of(batch(tokenizer, rationales=False))
    scores = relevancy.attribute(model, inputs, IntegratedGradients(64), 1).scores
    with torch.no_grad():
        full = model(**inputs).logits[:, 1]
        embeds = torch.zeros(*inputs["input_ids"].shape, model.config.hidden_size, dtype=torch.float64)
        zero = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits[:, 1]
    assert scores.sum(-1) == pytest.approx((full - zero).tolist(), rel=1e-3, abs=1e-6)


def _planted_masked(tokenizer, ids):
    """The toy batch, where its planted token sits, and the batch with that token masked."""
    inputs = inputs_of(batch(tokenizer, rationales=False))
    planted = inputs["input_ids"] == ids[0]
    return inputs, planted, inputs["input_ids"].masked_fill(planted, tokenizer.mask_token_id)


def test_integrated_gradients_from_a_masked_baseline_sum_to_the_removal_effect(setup):
    model, tokenizer, ids = setup
    inputs, planted, baseline = _planted_masked(tokenizer, ids)
    scores = relevancy.attribute(model, inputs, IntegratedGradients(64, baseline_ids=baseline), 1).scores
    assert scores[~planted].abs().max() == 0  # no path elsewhere
    with torch.no_grad():
        full = model(**inputs).logits[:, 1]
        removed = model(input_ids=baseline, attention_mask=inputs["attention_mask"]).logits[:, 1]
    assert scores.sum(-1) == pytest.approx((full - removed).tolist(), rel=1e-3, abs=1e-6)
    with pytest.raises(ValueError, match="one baseline id per input token"):
        relevancy.attribute(model, inputs, IntegratedGradients(2, baseline_ids=baseline[:, :2]), 1)


def assert_squared_effect(penalty, effect, rel):
    """The penalty is the mean squared effect over the texts with the planted token (not the third)."""
    expected = effect[:2].pow(2).mean()
    assert expected > 1e-4
    assert penalty.item() == pytest.approx(expected.item(), rel=rel)


def test_removal_penalty_is_the_squared_removal_effect_on_the_margin(setup):
    model, tokenizer, ids = setup
    data = batch(tokenizer, rationales=False)
    loss = RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=ids, penalty_mode="removal", removal_steps=64)(model, data)
    inputs = inputs_of(data)
    planted = inputs["input_ids"] == ids[0]
    removed = {**inputs, "input_ids": inputs["input_ids"].masked_fill(planted, tokenizer.mask_token_id)}
    effect = margin(model, inputs, data["labels"]) - margin(model, removed, data["labels"])
    assert_squared_effect(loss.penalty, effect, rel=1e-2)


def test_removal_gradient_matches_finite_differences(setup):
    model, tokenizer, ids = setup
    probes = [
        ("bert.encoder.layer.0.attention.self.query.weight", (3, 5)),
        ("bert.encoder.layer.1.output.dense.weight", (4, 9)),
        ("bert.embeddings.word_embeddings.weight", (ids[0], 3)),
        ("bert.embeddings.word_embeddings.weight", (tokenizer.mask_token_id, 3)),
        ("classifier.weight", (1, 4)),
    ]
    check_gradient(model, tokenizer, ids, "transformer_attribution", probes, penalty_mode="removal", penalty_weight=10.0)


def test_removal_penalty_lowers_the_real_removal_effect():
    tokenizer = toy.tokenizer()
    model = toy.model()
    redraw(model, 2)
    ids = [tokenizer.convert_tokens_to_ids(toy.PLANTED)]
    loss_fn = RelevanceLoss.for_tokenizer(
        tokenizer, penalised_ids=ids, penalty_mode="removal", removal_steps=4, classification_weight=0.0, rationale_weight=0.0
    )
    data = batch(tokenizer, rationales=False)
    inputs = inputs_of(data)
    removed = {**inputs, "input_ids": inputs["input_ids"].masked_fill(inputs["input_ids"] == ids[0], tokenizer.mask_token_id)}

    def effect():
        return (margin(model, inputs, data["labels"]) - margin(model, removed, data["labels"]))[:2].abs().mean().item()

    before = effect()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(10):
        output = loss_fn(model, data)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    assert effect() < 0.5 * before


def test_removal_needs_a_replacement_token():
    with pytest.raises(ValueError, match="removal_id"):
        RelevanceLoss(penalty_mode="removal")
    with pytest.raises(ValueError, match="removal_steps"):
        RelevanceLoss(penalty_mode="removal", removal_id=4, removal_steps=0)


def test_stratified_points_estimate_the_removal_effect_without_bias(setup):
    model, tokenizer, ids = setup
    inputs, planted, baseline = _planted_masked(tokenizer, ids)
    exact = relevancy.attribute(model, inputs, IntegratedGradients(64, baseline_ids=baseline), 1).scores.sum(-1)
    torch.manual_seed(0)
    draws = [
        relevancy.attribute(model, inputs, IntegratedGradients(2, baseline_ids=baseline, stratified=True), 1).scores.sum(-1)
        for _ in range(40)
    ]
    assert not torch.equal(draws[0], draws[1])
    mean, spread = torch.stack(draws).mean(0), torch.stack(draws).std(0)
    assert ((mean - exact).abs() <= 4 * spread / 40**0.5 + 1e-9).all()


def test_inserted_token_is_penalised_in_every_sample(setup):
    from relevancy.finetune.loss import _insert

    model, tokenizer, ids = setup
    data = batch(tokenizer, rationales=False)
    inputs = {**inputs_of(data), "token_type_ids": torch.zeros_like(data["input_ids"])}
    planted = inputs["input_ids"] == ids[0]
    torch.manual_seed(0)
    wide, mask = _insert(inputs, planted, ids[0])
    assert wide["input_ids"].shape[1] == inputs["input_ids"].shape[1] + 1
    assert mask.sum(-1).tolist() == [1, 1, 1] and (wide["input_ids"][mask] == ids[0]).all()
    third = wide["input_ids"][2][wide["attention_mask"][2].bool()].tolist()
    original = inputs["input_ids"][2][inputs["attention_mask"][2].bool()].tolist()
    assert third[0] == original[0] and third[-1] == original[-1]  # [CLS] and [SEP] stay at the ends
    assert third[:mask[2].nonzero().item()] + third[mask[2].nonzero().item() + 1 :] == original
    assert torch.equal(wide["input_ids"][0, :-1], inputs["input_ids"][0])  # rows with the token are unchanged

    options = dict(penalised_ids=ids, penalty_mode="removal", removal_steps=4, rationale_weight=0.0)
    only_present = RelevanceLoss.for_tokenizer(tokenizer, **options)
    everywhere = RelevanceLoss.for_tokenizer(tokenizer, insert_penalised=True, **options)
    no_token = {k: v[2:] for k, v in data.items()}  # the third text has no planted token
    assert only_present(model, no_token).penalty.item() == 0
    assert everywhere(model, no_token).penalty.item() > 0
    with pytest.raises(ValueError, match="insert_penalised"):
        RelevanceLoss.for_tokenizer(tokenizer, insert_penalised=True)


def test_deletion_penalty_is_the_squared_margin_change_without_the_token(setup):
    """Against the texts written without the token: deletion closes the sequence up, as a real absence."""
    model, tokenizer, ids = setup
    model.train()  # the penalty's forwards run in eval mode; the mode is restored
    data = batch(tokenizer, rationales=False)
    loss = RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=ids, penalty_mode="deletion")(model, data)
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    texts = [t.replace(toy.PLANTED + " ", "") for t in TEXTS]
    without = tokenizer(texts, padding=True, return_tensors="pt")
    labels = data["labels"]
    effect = margin(model, inputs_of(data), labels) - margin(model, inputs_of(without), labels)
    assert_squared_effect(loss.penalty, effect, rel=1e-9)


def test_deletion_gradient_matches_finite_differences(setup):
    model, tokenizer, ids = setup
    probes = [
        ("bert.encoder.layer.0.attention.self.query.weight", (3, 5)),
        ("bert.embeddings.word_embeddings.weight", (ids[0], 3)),
        ("bert.embeddings.position_embeddings.weight", (2, 1)),
        ("classifier.weight", (1, 4)),
    ]
    check_gradient(model, tokenizer, ids, "transformer_attribution", probes, penalty_mode="deletion", penalty_weight=10.0)


def test_deletion_with_insertion_penalises_the_token_in_every_sample(setup):
    model, tokenizer, ids = setup
    data = batch(tokenizer, rationales=False)
    no_token = {k: v[2:] for k, v in data.items()}
    options = dict(penalised_ids=ids, penalty_mode="deletion", rationale_weight=0.0)
    assert RelevanceLoss.for_tokenizer(tokenizer, **options)(model, no_token).penalty.item() == 0
    assert RelevanceLoss.for_tokenizer(tokenizer, insert_penalised=True, **options)(model, no_token).penalty.item() > 0

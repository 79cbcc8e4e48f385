"""RelevanceLoss: its value, an exact gradient (finite differences in float64), its direction, images."""

import pytest
import torch

import relevancy
from relevancy.finetune import RelevanceCollator, RelevanceLoss, fine_tune
from tests.audit import toy
from tests.models import build, redraw

TEXTS = ["zq good movie", "the plot was zq dull .", "a fine film"]


def batch(tokenizer, rationales=True):
    examples = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    if rationales:
        examples[1]["rationales"] = [(16, 20)]  # "dull"
    return RelevanceCollator(tokenizer)(examples)


@pytest.fixture(scope="module")
def setup():
    tokenizer = toy.tokenizer()
    model = toy.model(dtype=torch.float64)
    redraw(model, 1)  # larger weights than BERT's initialiser: a map with real structure
    ids = [tokenizer.convert_tokens_to_ids(toy.PLANTED)]
    return model, tokenizer, ids


def test_terms_equal_shares_of_the_map(setup):
    model, tokenizer, ids = setup
    data = batch(tokenizer)
    loss = RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=ids)(model, data)
    scores = relevancy.attribute(
        model, {k: data[k] for k in ("input_ids", "attention_mask")}, "transformer_attribution", data["labels"]
    ).scores
    content = data["attention_mask"].bool() & ~data["special_tokens_mask"].bool()
    shares = scores.clamp(min=0) * content
    shares = shares / shares.sum(-1, keepdim=True)
    planted = data["input_ids"] == ids[0]
    expected_penalty = (shares * planted).sum(-1)[:2].mean()  # the third text has no planted token
    assert loss.penalty.item() == pytest.approx(expected_penalty.item(), rel=1e-9)
    assert loss.rationale.item() == pytest.approx(1 - (shares[1] * data["rationale_mask"][1]).sum().item(), rel=1e-9)
    ce = torch.nn.functional.cross_entropy(model(**{k: data[k] for k in ("input_ids", "attention_mask")}).logits, data["labels"])
    assert loss.classification.item() == pytest.approx(ce.item(), rel=1e-12)
    assert loss.loss.item() == pytest.approx((ce + expected_penalty + loss.rationale).item(), rel=1e-9)



def test_relevance_scale_multiplies_every_term_but_the_cross_entropy(setup):
    model, tokenizer, ids = setup
    data = batch(tokenizer)
    loss_fn = RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=ids, penalty_weight=2.0, rationale_weight=0.5)
    full, scaled = loss_fn(model, data), loss_fn(model, data, relevance_scale=0.25)
    relevance = 2.0 * full.penalty + 0.5 * full.rationale
    assert relevance.item() > 0
    assert scaled.loss.item() == pytest.approx((full.classification + 0.25 * relevance).item(), rel=1e-9)


def test_warmup_ramps_the_penalty_in_fine_tuning(setup):
    """With a warm-up the first step sees 1/warmup of the penalty, so it moves the model differently."""
    model, tokenizer, ids = setup
    examples = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    loss_fn = RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=ids, penalty_weight=1.0, rationale_weight=0.0)
    options = dict(steps=1, batch_size=3, learning_rate=1e-2, progress=False)
    moved = {}
    for warmup in (0, 1, 1000):
        trained = fine_tune(model, tokenizer, examples, loss_fn, relevance_warmup=warmup, **options).model
        moved[warmup] = [p.detach().clone() for p in trained.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(moved[0], moved[1]))  # a 1-step ramp is no ramp
    assert any(not torch.equal(a, b) for a, b in zip(moved[0], moved[1000]))
    with pytest.raises(ValueError, match="relevance_warmup"):
        fine_tune(model, tokenizer, examples, loss_fn, relevance_warmup=-1, **options)

def check_gradient(model, tokenizer, ids, method, probes, penalty_mode="share", penalty_weight=2.0):
    """d loss / d theta from autograd against central differences, one parameter entry at a time."""
    data = batch(tokenizer)
    loss_fn = RelevanceLoss.for_tokenizer(
        tokenizer, method=method, penalised_ids=ids, penalty_weight=penalty_weight, rationale_weight=0.5,
        penalty_mode=penalty_mode,
    )
    for name, analytic, numeric in gradients(lambda: loss_fn(model, data).loss, model, probes, allow_unused=True):
        assert abs(analytic - numeric) <= 1e-4 * max(abs(numeric), 1e-3), (name, analytic, numeric)


def gradients(loss_of, model, probes, h=1e-6, allow_unused=False):
    """(name, autograd, central difference) of d loss / d theta for each probed (parameter name, index);
    ``loss_of()`` recomputes the loss. With ``allow_unused`` a parameter the loss does not reach gives 0."""
    parameters = dict(model.named_parameters())
    grads = torch.autograd.grad(loss_of(), [parameters[name] for name, _ in probes], allow_unused=allow_unused)
    results = []
    for (name, index), grad in zip(probes, grads):
        parameter = parameters[name]
        with torch.no_grad():
            original = parameter[index].item()
            parameter[index] = original + h
            up = loss_of().item()
            parameter[index] = original - h
            down = loss_of().item()
            parameter[index] = original
        results.append((name, 0.0 if grad is None else grad[index].item(), (up - down) / (2 * h)))
    return results


@pytest.mark.parametrize("method", ["transformer_attribution", "gradient_x_attention"])
def test_gradient_matches_finite_differences(setup, method):
    model, tokenizer, ids = setup
    probes = [
        ("bert.encoder.layer.0.attention.self.query.weight", (3, 5)),
        ("bert.encoder.layer.1.attention.self.key.weight", (7, 2)),
        ("bert.encoder.layer.1.output.dense.weight", (4, 9)),
        ("bert.encoder.layer.0.output.LayerNorm.weight", (11,)),
        ("bert.embeddings.position_embeddings.weight", (2, 6)),
        ("classifier.weight", (1, 4)),
    ]
    check_gradient(model, tokenizer, ids, method, probes)


def test_magnitude_penalty_is_the_mean_squared_relevance_of_the_tokens(setup):
    model, tokenizer, ids = setup
    data = batch(tokenizer, rationales=False)
    loss = RelevanceLoss.for_tokenizer(tokenizer, method="input_x_gradient", penalised_ids=ids, penalty_mode="magnitude")(model, data)
    scores = relevancy.attribute(
        model, {k: data[k] for k in ("input_ids", "attention_mask")}, "input_x_gradient", data["labels"]
    ).scores
    planted = data["input_ids"] == ids[0]
    expected = torch.stack([scores[row][planted[row]].pow(2).mean() for row in range(2)]).mean()  # row 3: no token
    assert loss.penalty.item() == pytest.approx(expected.item(), rel=1e-9)
    assert scores[planted].lt(0).any() or scores[planted].gt(0).any()  # a signed map: the penalty is not trivially 0


@pytest.mark.parametrize("method", ["input_x_gradient", "full_lrp"])
def test_magnitude_gradient_matches_finite_differences(setup, method):
    model, tokenizer, ids = setup
    probes = [
        ("bert.encoder.layer.0.attention.self.query.weight", (3, 5)),
        ("bert.encoder.layer.1.output.dense.weight", (4, 9)),
        ("bert.embeddings.word_embeddings.weight", (ids[0], 3)),
        ("classifier.weight", (1, 4)),
    ]
    # squared input x gradient is ~1e-4 on this model: a weight that makes the term count in the check
    check_gradient(model, tokenizer, ids, method, probes, penalty_mode="magnitude", penalty_weight=1000.0)


def test_gradient_reaches_the_word_embeddings(setup):
    model, tokenizer, ids = setup
    check_gradient(model, tokenizer, ids, "transformer_attribution", [("bert.embeddings.word_embeddings.weight", (ids[0], 3))])


def test_penalty_moves_relevance_off_the_tokens():
    torch.manual_seed(0)
    tokenizer = toy.tokenizer()
    model = toy.model()
    redraw(model, 2)
    ids = [tokenizer.convert_tokens_to_ids(toy.PLANTED)]
    loss_fn = RelevanceLoss.for_tokenizer(tokenizer, penalised_ids=ids, classification_weight=0.0)
    data = batch(tokenizer, rationales=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = []
    for _ in range(8):
        output = loss_fn(model, data)
        history.append(output.penalty.item())
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    assert history[-1] < history[0]


def test_robustvit_terms_on_the_patch_grid():
    model = build("vit")  # 32 x 32 pixels, 8 x 8 patches: a 4 x 4 grid after one class token
    mask = torch.zeros(1, 4, 4)
    mask[0, :2] = 1
    scores = torch.cat([torch.ones(1, 1), mask.flatten(1) * 3.0], 1)  # relevance exactly on the foreground
    foreground, background = RelevanceLoss._robustvit(model, scores, mask)
    assert foreground.item() == 0 and background.item() == 0
    uniform = torch.ones(1, 17)
    pixels = mask.repeat_interleave(8, 1).repeat_interleave(8, 2)  # the same mask in pixels
    foreground, background = RelevanceLoss._robustvit(model, uniform, pixels)
    assert foreground.item() == pytest.approx(0.0) and background.item() == pytest.approx(0.5)
    loss_fn = RelevanceLoss(classification_weight=0.0, foreground_weight=1.0, background_weight=1.0)
    inputs = {
        "pixel_values": torch.randn(2, 3, 32, 32), "labels": torch.tensor([0, 1]), "foreground_mask": pixels.expand(2, -1, -1)
    }
    output = loss_fn(model, inputs)
    (gradient,) = torch.autograd.grad(output.loss, model.vit.layers[0].attention.q_proj.weight)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_bad_options():
    with pytest.raises(ValueError, match="unknown target"):
        RelevanceLoss(target="logit")
    with pytest.raises(ValueError, match="penalty_weight"):
        RelevanceLoss(penalty_weight=-1)
    with pytest.raises(ValueError, match="unknown penalty_mode"):
        RelevanceLoss(penalty_mode="squared")
    with pytest.raises(ValueError, match="unknown method"):
        RelevanceLoss(method="nope")

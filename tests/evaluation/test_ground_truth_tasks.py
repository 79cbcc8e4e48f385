"""The ground-truth tasks are what scripts/make_ground_truth.py says: the label follows the planted
evidence, distractors carry none, and rendering without a role removes exactly its parts."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_ground_truth.py"


@pytest.fixture(scope="module")
def tasks():
    spec = importlib.util.spec_from_file_location("make_ground_truth", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_a_document_is_labelled_by_its_most_frequent_trigger_class(tasks):
    owner = {w: c for c, words in tasks.TRIGGERS.items() for w in words}
    documents = tasks.make_documents(300, seed=5)
    for document in documents:
        counts = Counter(owner[w] for w in document.words if w in owner)
        (top, n), *rest = counts.most_common()
        assert tasks.TEXT_CLASSES.index(top) == document.label and all(m < n for _, m in rest)
        assert all((w in owner) == (r != "distractor") for w, r in zip(document.words, document.roles))
        assert 20 <= document.roles.count("distractor") <= 40
    assert sum(d.contrast is not None for d in documents) == pytest.approx(150, abs=30)


def test_distractor_words_are_independent_of_the_label(tasks):
    documents = tasks.make_documents(2000, seed=6)
    per_label = [Counter(w for d in documents if d.label == c for w, r in zip(d.words, d.roles) if r == "distractor") for c in range(4)]
    vocabulary = tasks.distractor_words()
    shares = np.array([[counts[w] / sum(counts.values()) for w in vocabulary] for counts in per_label])
    assert np.abs(shares - 1 / len(vocabulary)).max() < 0.004  # uniform for every label (expected 0.005 each)


def test_rendering_without_a_role_drops_exactly_its_words(tasks):
    document = tasks.make_documents(1, seed=7)[0]
    text, roles = document.render(keep=("distractor",))
    assert set(roles) == {"distractor"} and len(text.split()) == document.roles.count("distractor")
    assert document.render()[0].split() == document.words


def test_the_tokenizer_maps_each_word_to_one_token(tasks):
    tokenizer = tasks.text_tokenizer()
    document = tasks.make_documents(1, seed=8)[0]
    ids = tokenizer(document.render()[0])["input_ids"]
    assert len(ids) == len(document.words) + 2 and tokenizer.unk_token_id not in ids


def test_a_scene_has_one_decisive_item_and_renders_without_it(tasks):
    if not (tasks.FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    for scene in tasks.make_scenes(20, seed=9, source="test"):
        assert [item["role"] for item in scene.items].count("evidence") == 1
        image, masks = scene.render()
        assert masks["evidence"].any() and masks["distractor"].any() and not (masks["evidence"] & masks["distractor"]).any()
        without, _ = scene.render(keep=("distractor",))
        assert not without[masks["evidence"]].any() and np.array_equal(without[masks["distractor"]], image[masks["distractor"]])


def test_scene_items_fill_distinct_slots_on_the_patch_grid(tasks):
    if not (tasks.FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    assert tasks.ITEM_SIZE % tasks.PATCH == 0 and tasks.IMAGE_SIZE == 2 * tasks.ITEM_SIZE
    used = Counter()
    for scene in tasks.make_scenes(200, seed=10, source="train"):
        corners = [(item["top"], item["left"]) for item in scene.items]
        assert len(set(corners)) == len(corners) == 1 + tasks.DISTRACTORS_PER_SCENE and set(corners) <= set(tasks.SLOTS)
        image, masks = scene.render()
        for item in scene.items:  # painted at its own resolution, inside its slot only
            box = slice(item["top"], item["top"] + tasks.ITEM_SIZE), slice(item["left"], item["left"] + tasks.ITEM_SIZE)
            painted = item["pixels"] > 0.1 * 255
            assert np.array_equal(masks[item["role"]][box] & painted, painted)
        used.update(corners[:1])
    assert all(count > 30 for count in used.values()) and len(used) == 4  # the decisive item is anywhere
    with pytest.raises(ValueError, match="slots"):
        tasks.make_scenes(1, seed=0, source="train", distractors=len(tasks.SLOTS))


def test_fresh_training_draws_are_new_reproducible_and_from_the_same_distribution(tasks):
    fixed, first, again, second = (tasks.examples("text", "train", 400, draw=d) for d in (0, 1, 1, 2))
    texts = [[d.render()[0] for d in docs] for docs in (fixed, first, again, second)]
    assert texts[1] == texts[2]  # seeded per draw
    assert not set(texts[0]) & set(texts[1]) and not set(texts[1]) & set(texts[3])
    assert [d.render()[0] for d in tasks.make_documents(400, tasks.SPLIT_SEEDS["train"])] == texts[0]  # draw 0 is the fixed set
    for docs in (first, second):
        shares = Counter(d.label for d in docs)
        assert all(abs(shares[c] / len(docs) - 0.25) < 0.08 for c in range(4))


@pytest.mark.parametrize(("task", "right", "chance"), [("text", 0.99, 0.25), ("image", 0.99, 1 / 3)])
def test_the_committed_models_use_the_planted_evidence(tasks, task, right, chance):
    """The ablation check on the whole test set the models were scored on: right with everything, near
    chance without the evidence, as right without the distractors."""
    folder = tasks.MODELS / task
    if task == "image" and not (tasks.FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    from relevancy.adapters.loading import load

    model, processor = load(str(folder))
    examples = tasks.examples(task, "test", json.loads((folder / "info.json").read_text())["test"])
    assert tasks.accuracy(task, model, processor, examples) >= right
    assert abs(tasks.accuracy(task, model, processor, examples, keep=("distractor",)) - chance) < 0.1
    assert tasks.accuracy(task, model, processor, examples, keep=("evidence", "contrast")) >= right

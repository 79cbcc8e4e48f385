"""The Fashion-MNIST scenes benchmark: pixel-exact masks, its folders read by the library's loader,
``relevancy evaluate`` end to end on a tiny generated set, and bad image/mask pairs refused early.

The generator runs on a fake Fashion-MNIST (simple shapes written in the IDX format), so these tests
need neither the Debian package nor ../shared."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relevancy.cli.main import main
from relevancy.evaluation import load_image_folder
from tests.scripts import load_script


@pytest.fixture(scope="module")
def scenes():
    return load_script("scripts/make_fashion_scenes.py")


def write_fake_fashion_mnist(folder: Path, per_class: int = 3) -> Path:
    """IDX files of 28x28 items, one filled ellipse of a class-dependent shape per image."""
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:28, :28]
    images, labels = [], []
    for label in range(10):
        for copy in range(per_class):
            ry, rx = 4 + label, 13 - label + copy
            images.append((((yy - 14) / ry) ** 2 + ((xx - 14) / rx) ** 2 <= 1).astype(np.uint8) * (150 + 10 * copy))
            labels.append(label)
    images, labels = np.stack(images), np.array(labels, dtype=np.uint8)
    for prefix in ("train", "t10k"):
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as handle:
            handle.write(np.array([2051, len(images), 28, 28], dtype=">i4").tobytes() + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write(np.array([2049, len(labels)], dtype=">i4").tobytes() + labels.tobytes())
    return folder


@pytest.fixture(scope="module")
def scene_folder(scenes, tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion")
    source = write_fake_fashion_mnist(root / "source")
    scenes.main(["--out", str(root / "scenes"), "--source", str(source), "--size", "32", "--train", "2", "--test", "3", "--pairs", "2"])
    return root / "scenes"


def test_the_mask_is_exactly_the_painted_pixels(scenes):
    canvas = np.full((40, 40, 3), np.nan, dtype=np.float32)
    item = np.zeros((28, 28), dtype=np.uint8)
    item[5:20, 8:12] = 200
    item[3, 3] = 20  # below the silhouette threshold: neither painted nor in the mask
    mask = scenes.paste(canvas, item, 28, 6, 9, np.random.default_rng(0))
    assert mask.sum() == 15 * 4
    assert np.array_equal(mask, ~np.isnan(canvas).any(-1))


def test_generated_folders_are_read_by_the_loader(scene_folder, scenes):
    test = load_image_folder(scene_folder / "test")
    assert len(test) == 3 and test.has_masks and not test.has_class_masks
    image, mask, _ = test.items[0].load()
    assert image.shape == (32, 32, 3) and 20 <= mask.sum() < 32 * 32
    pairs = load_image_folder(scene_folder / "test_pairs")
    assert pairs.has_class_masks
    for item in pairs.items:
        _, union, objects = item.load()
        (first, a), (second, b) = sorted(objects.items())
        assert first != second and {first, second} <= set(scenes.CLASSES)
        assert not (a & b).any() and np.array_equal(union, a | b)  # two separate objects, both kept
        assert item.label in (first, second)


def test_relevancy_evaluate_on_generated_scenes(scene_folder, scenes, tmp_path, capsys):
    from transformers import ViTConfig, ViTForImageClassification

    from tests.models import redraw

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
                       patch_size=8, id2label=dict(enumerate(scenes.CLASSES)))
    model = ViTForImageClassification(config)
    redraw(model, 0)
    model.save_pretrained(tmp_path / "vit")
    runs = {"test": "segmentation,perturbation", "test_pairs": "specificity"}
    for split, tests in runs.items():
        code = main([
            "evaluate", "--model", str(tmp_path / "vit"), "--data", str(scene_folder / split), "--format", "images",
            "--methods", "transformer_attribution,rollout", "--tests", tests, "--out", str(tmp_path / split), "--batch-size", "4",
        ])
        assert code == 0, capsys.readouterr().err
    single = json.loads((tmp_path / "test" / "results.json").read_text())
    rows = {(r["test"], r["metric"]): r["values"] for r in single["rows"]}
    assert set(rows[("segmentation", "mAP (%)")]) == {"transformer_attribution", "rollout"}
    assert all(0 < v <= 100 for v in rows[("segmentation", "mAP (%)")].values())
    assert all(0 <= v <= 90 for v in rows[("perturbation", "positive AUC (accuracy)")].values())
    pairs = json.loads((tmp_path / "test_pairs" / "results.json").read_text())
    shares = [r for r in pairs["rows"] if r["test"] == "specificity"][0]["values"]
    assert all(0 <= v <= 1 for v in shares.values())
    assert pairs["notes"]["specificity items"] == {"transformer_attribution": 2, "rollout": 2}


def test_a_class_mask_of_another_size_is_refused_when_the_folder_is_loaded(scene_folder, tmp_path):
    import shutil

    folder = shutil.copytree(scene_folder / "test_pairs", tmp_path / "pairs")
    bad = sorted((folder / "masks" / "000001").iterdir())[1]
    Image.new("L", (16, 32)).save(bad)
    with pytest.raises(ValueError, match=rf"images/000001\.png is 32x32 pixels but its mask .*{bad.name} is 16x32"):
        load_image_folder(folder)


def test_the_standard_variant_is_the_default_and_the_easy_one_draws_larger_items(scenes, scene_folder, tmp_path):
    source = scene_folder.parent / "source"
    common = ["--source", str(source), "--size", "32", "--train", "2", "--test", "3", "--pairs", "2"]
    scenes.main(["--out", str(tmp_path / "standard"), *common, "--variant", "standard"])
    scenes.main(["--out", str(tmp_path / "easy"), *common, "--variant", "easy"])
    for split in ("train", "test", "test_pairs"):  # no --variant: the same images as before the option existed
        for path in sorted((scene_folder / split / "images").iterdir()):
            assert path.read_bytes() == (tmp_path / "standard" / split / "images" / path.name).read_bytes()
    meta = {v: json.loads((tmp_path / v / "meta.json").read_text()) for v in ("standard", "easy")}
    assert meta["easy"]["variant"] == "easy" and meta["easy"]["single_scales"][0] > meta["standard"]["single_scales"][0]
    mean_area = {v: np.mean([item.load()[1].sum() for item in load_image_folder(tmp_path / v / "test").items]) for v in meta}
    assert mean_area["easy"] > mean_area["standard"]


def test_vit_training_runs_the_curriculum_and_saves_a_loadable_model(scenes, tmp_path):
    """Tiny sizes: the easy stage then the standard stage, the model downscaled to its input size."""
    training = load_script("scripts/train_image_models.py")
    source = write_fake_fashion_mnist(tmp_path / "source")
    common = ["--source", str(source), "--size", "32", "--train", "20", "--test", "6", "--pairs", "1"]
    scenes.main(["--out", str(tmp_path / "standard"), *common])
    scenes.main(["--out", str(tmp_path / "easy"), *common, "--variant", "easy"])
    training.main(["--models", "vit", "--data", str(tmp_path / "standard"), "--out", str(tmp_path / "models"), "--vit-easy-data",
                   str(tmp_path / "easy"), "--vit-easy-epochs", "1", "--vit-epochs", "1", "--vit-size", "16", "--vit-patch", "4",
                   "--vit-width", "32", "--vit-heads", "2", "--vit-depth", "1", "--batch-size", "8"])
    metrics = json.loads((tmp_path / "models" / "vit" / "metrics.json").read_text())
    assert [h["stage"] for h in metrics["history"]] == ["easy", "standard"] and metrics["complete"]
    assert metrics["easy_images"] == 20 and metrics["train_images"] == 18 and 0 <= metrics["test_accuracy"] <= 1
    from relevancy.adapters.loading import load

    model, processor = load(str(tmp_path / "models" / "vit"))
    assert model.config.image_size == 16 and processor.size == {"height": 16, "width": 16}
    with pytest.raises(FileNotFoundError, match="--variant easy"):
        training.main(["--models", "vit", "--data", str(tmp_path / "standard"), "--out", str(tmp_path / "m2"),
                       "--vit-easy-data", str(tmp_path / "none"), "--vit-easy-epochs", "1"])


def test_per_image_statistics_are_paired_and_respect_each_direction():
    bench = load_script("benchmarks/image_evaluation.py")
    flat, falling = [0.5] * 10, [0.5] + [0.0] * 9  # AUCs 45 and 2.5

    def records(method, ap, positive, negative):
        return [{"method": method, "test": "segmentation", "id": "a", "ap": ap},
                {"method": method, "test": "perturbation", "id": "a", "positive": {"probability": positive}, "negative": {"probability": negative}}]

    stats = bench.per_image(records("transformer_attribution", 0.9, falling, flat) + records("rollout", 0.5, flat, falling),
                            ["transformer_attribution", "rollout"])
    assert stats["rollout"]["ap"]["mean"] == pytest.approx(50.0) and stats["rollout"]["ap"]["ta_wins"] == 1.0
    assert stats["rollout"]["pos_prob_auc"]["mean"] == pytest.approx(45.0)
    assert stats["rollout"]["pos_prob_auc"]["ta_wins"] == 1.0  # lower is better for the positive AUC
    assert stats["rollout"]["neg_prob_auc"]["ta_wins"] == 1.0
    swapped = bench.per_image(records("transformer_attribution", 0.5, flat, falling) + records("rollout", 0.9, falling, flat),
                              ["transformer_attribution", "rollout"])
    assert all(swapped["rollout"][q]["ta_wins"] == 0.0 for q in ("ap", "pos_prob_auc", "neg_prob_auc"))
    assert stats["rollout"]["share"]["n"] == 0 and "ta_wins" not in stats["rollout"]["share"]


def test_interval_rows_cover_segmentation_perturbation_and_specificity():
    bench = load_script("benchmarks/image_evaluation.py")
    from relevancy.evaluation.runner import aggregate

    rng = np.random.default_rng(0)
    records = []
    for method, shift in (("transformer_attribution", 0.0), ("rollout", 0.3)):
        for i in range(12):
            curve = list(rng.random(10))
            records += [
                {"method": method, "test": "segmentation", "id": f"i{i:02d}", "correct": int(rng.integers(50, 100)), "pixels": 100,
                 "intersection": [10, 20], "union": [30, 40], "ap": float(rng.random())},
                {"method": method, "test": "perturbation", "id": f"i{i:02d}",
                 **{d: {"correct": curve, "probability": curve, "logit": curve} for d in ("positive", "negative")}},
                {"method": method, "test": "specificity", "id": f"p{i:02d}", "share": min(1.0, float(rng.random()) * 0.5 + shift)},
            ]
    methods = ["transformer_attribution", "rollout"]
    rows = bench.intervals(records, methods, resamples=200)
    table = aggregate(records, methods, ["segmentation", "perturbation", "specificity"])
    assert {row.test for row in rows} == {"segmentation", "perturbation", "specificity"}
    for row in rows:
        for method in methods:
            assert row.intervals[method].estimate == pytest.approx(table.value(row.test, row.name, method), nan_ok=True)
    share = next(row for row in rows if row.name == "share on own object")
    assert share.versus_reference["rollout"].significant and share.versus_reference["rollout"].difference.estimate > 0


def tiny_dinov2(folder: Path) -> Path:
    """A seeded two-block Dinov2Model standing in for the pretrained DINOv2-S."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=28,
                             patch_size=14)).save_pretrained(folder)
    return folder


def test_dinov2_fine_tuning_trains_only_the_last_blocks_and_saves_a_plain_model(scenes, tmp_path):
    training = load_script("scripts/train_image_models.py")
    scenes.main(["--out", str(tmp_path / "scenes"), "--source", str(write_fake_fashion_mnist(tmp_path / "source")),
                 "--size", "28", "--train", "20", "--test", "6", "--pairs", "1"])
    backbone = tiny_dinov2(tmp_path / "dinov2")
    arguments = ["--models", "dinov2", "--data", str(tmp_path / "scenes"), "--out", str(tmp_path / "models"), "--dinov2", str(backbone),
                 "--dinov2-train-blocks", "1", "--dinov2-epochs", "2", "--batch-size", "8", "--dinov2-lr", "1e-2"]
    training.main(arguments)
    from transformers import Dinov2ForImageClassification, Dinov2Model

    metrics = json.loads((tmp_path / "models" / "dinov2" / "metrics.json").read_text())
    assert metrics["train_blocks"] == 1 and len(metrics["history"]) == 2 and 0 <= metrics["test_accuracy"] <= 1
    model = Dinov2ForImageClassification.from_pretrained(tmp_path / "models" / "dinov2")
    original = Dinov2Model.from_pretrained(backbone)

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    assert same(model.dinov2.encoder.layer[0], original.encoder.layer[0])  # frozen, so its cached outputs stay valid
    assert not same(model.dinov2.encoder.layer[1], original.encoder.layer[1])
    assert not same(model.dinov2.layernorm, original.layernorm)
    # a second call resumes after the last epoch: nothing is retrained, the same model comes back
    training.main(arguments)
    again = Dinov2ForImageClassification.from_pretrained(tmp_path / "models" / "dinov2")
    assert same(model, again)
    with pytest.raises(ValueError, match="another configuration"):
        training.main([*arguments[:-1], "2e-2"])
    with pytest.raises(ValueError, match="between 1 and 2"):
        training.main([*arguments[:-8], "--dinov2-train-blocks", "3"])


def test_re_running_one_model_keeps_the_other_models_results(tmp_path):
    bench = load_script("benchmarks/image_evaluation.py")
    (tmp_path / "image_evaluation.md").write_text("# title\n\n## vit: a ViT\n\nits table\n\n## dinov2: old\n\nold rows\n\n## The paper\n")
    (tmp_path / "image_evaluation.json").write_text(json.dumps({"command": "python old", "models": {"vit": {"table": 1}, "dinov2": {}}}))
    kept = bench.earlier_sections(tmp_path, ["dinov2"])
    assert list(kept) == ["vit"]
    section, entry = kept["vit"]
    assert section.startswith("## vit: a ViT\n") and "its table" in section and "old rows" not in section
    assert "Carried over unchanged from the earlier run `python old`" in section
    assert entry == {"table": 1, "command": "python old"}
    assert bench.earlier_sections(tmp_path, ["vit", "dinov2"]) == {}

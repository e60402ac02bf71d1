"""The augmentation experiment on tiny folders: generated images only in train, the report files."""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from covid_keras import data, experiment

SIZE = 32


def write_tree(root: pathlib.Path, per_class: int, name: str, seed: int) -> pathlib.Path:
    """root/<class>/<name>-NN.png: grey 32 px images, COVID brighter than Normal, all distinct."""
    rng = np.random.default_rng(seed)
    for label, class_name in enumerate(("Normal", "COVID")):
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = rng.integers(0, 100, (SIZE, SIZE)) + 100 * label
            Image.fromarray(pixels.astype(np.uint8), mode="L").save(folder / f"{name}-{index:05d}.png")
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("experiment")
    real = write_tree(base / "real", 10, "real", seed=1)
    generated = write_tree(base / "generated", 4, "gen-s0", seed=2)  # generate.py's names
    return {"real": real, "generated": generated, "tfds": base / "tfds", "base": base}


def tiny_config(tiny, **overrides) -> experiment.ExperimentConfig:
    values = dict(
        data=data.DataSpec("folder", str(tiny["real"]), str(tiny["tfds"])),
        generated_dir=str(tiny["generated"]),
        backbones=("vgg16",),
        seeds=(0, 1),
        weights=None,
        image_size=SIZE,
        epochs=1,
        batch_size=4,
    )
    return experiment.ExperimentConfig(**{**values, **overrides})


def test_generated_images_reach_train_only(tiny):
    splits = experiment.load_experiment_splits(tiny_config(tiny, per_class=3))
    for split in ("train", "validation", "test"):
        names = [name for name, _ in data.file_names_and_labels(getattr(splits, split))]
        assert names and not any(experiment.is_generated_name(n) for n in names), split
    generated = [name for name, _ in data.file_names_and_labels(splits.generated)]
    assert len(generated) == 6  # per_class=3 of the folder's 4 per class
    assert all(name.startswith(data.GENERATED_PREFIX) for name in generated)
    assert splits.contents["generated"]["per_class"] == {"Normal": 3, "COVID": 3}
    assert splits.contents["train"]["n"] + splits.contents["validation"]["n"] + splits.contents["test"]["n"] == 20


def test_generated_images_in_validation_or_test_are_refused(tiny):
    config = tiny_config(tiny)
    train, validation, test = (data.load_split(config.data, s) for s in ("train", "validation", "test"))
    leaky_validation = data.with_generated(validation, config.generated_dir, config.data.data_dir)
    with pytest.raises(experiment.SyntheticLeakError, match="validation split"):
        experiment.check_split_contents({"train": train, "validation": leaky_validation, "test": test})


def test_a_real_folder_mixed_with_generated_files_is_refused(tiny):
    mixed = write_tree(tiny["base"] / "mixed", 10, "real", seed=1)
    write_tree(mixed, 10, "gen-s0", seed=3)  # the study's leak: synthetic files inside the real tree
    config = tiny_config(tiny, data=data.DataSpec("folder", str(mixed), str(tiny["tfds"])))
    with pytest.raises(experiment.SyntheticLeakError, match="must be real-only"):
        experiment.load_experiment_splits(config)


def test_experiment_writes_mean_and_sd_over_seeds(tiny, tmp_path):
    results = experiment.run_experiment(tiny_config(tiny), tmp_path, verbose=0)

    saved = json.loads((tmp_path / experiment.RESULTS_JSON).read_text())
    vgg = saved["backbones"]["vgg16"]
    assert vgg["weights"]["name"] == "none"
    assert vgg["n_train"]["augmented"] == vgg["n_train"]["baseline"] + 8
    for setting in experiment.SETTINGS:
        assert [run["seed"] for run in vgg["runs"][setting]] == [0, 1]
        test_accuracy = vgg["summary"][setting]["test_accuracy"]
        values = [run["metrics"]["test"]["accuracy"] for run in vgg["runs"][setting]]
        assert test_accuracy["values"] == values
        assert test_accuracy["mean"] == pytest.approx(np.mean(values))
        assert test_accuracy["sd"] == pytest.approx(np.std(values, ddof=1))
        assert 0.0 <= vgg["summary"][setting]["test_auc"]["mean"] <= 1.0
    # Validation and test are the same real images in both settings.
    for split in ("validation", "test"):
        assert vgg["runs"]["baseline"][0]["metrics"][split]["n"] == vgg["runs"]["augmented"][0]["metrics"][split]["n"]
    assert saved["generated"]["per_class_used"] == {"Normal": 4, "COVID": 4}
    assert saved == json.loads(json.dumps(results))

    table = (tmp_path / experiment.RESULTS_MD).read_text()
    assert "| vgg16 | baseline (real) |" in table and "| vgg16 | augmented (+GAN) |" in table
    assert " ± " in table and "RANDOM INIT" in table
    assert experiment.comparison_sentence("vgg16", vgg["comparison"], 2) in table
    chart = tmp_path / experiment.BAR_CHART
    assert chart.stat().st_size > 1000 and chart.read_bytes()[:4] == b"\x89PNG"
    # A rerun takes the backbone features from the on-disk cache.
    assert any((tmp_path / experiment.FEATURE_CACHE_DIR).glob("*.npz"))


def test_tuned_learning_rate_is_used_and_a_missing_one_falls_back(tmp_path):
    (tmp_path / "vgg16").mkdir()
    (tmp_path / "vgg16" / "best_hyperparameters.json").write_text(
        json.dumps({"learning_rate": 3e-4, "optimizer": "rmsprop", "backbone": "vgg16"})
    )
    tuned = experiment.head_hyperparameters("vgg16", tmp_path)
    assert (tuned["learning_rate"], tuned["optimizer"]) == (3e-4, "rmsprop")
    fallback = experiment.head_hyperparameters("resnet50", tmp_path)
    assert fallback["learning_rate"] == 1e-4 and fallback["source"].startswith("study")


def test_the_verdict_is_the_paired_interval_over_seeds():
    def sentence(augmented, baseline):
        runs = {name: [{"metrics": {"test": {"accuracy": a}}} for a in values]
                for name, values in (("augmented", augmented), ("baseline", baseline))}
        return experiment.comparison_sentence("vgg16", experiment.compare_settings(runs), len(baseline))

    # Same mean gain (+0.02): consistent per seed -> helped; scattered per seed -> noise.
    assert "helped" in sentence([0.82, 0.83, 0.84], [0.80, 0.81, 0.82])
    assert "not distinguishable from seed noise" in sentence([0.86, 0.80, 0.83], [0.80, 0.84, 0.79])
    assert "hurt" in sentence([0.78, 0.79, 0.80], [0.80, 0.81, 0.82])
    assert "95 % interval [+0.0200, +0.0200]" in sentence([0.82, 0.83, 0.84], [0.80, 0.81, 0.82])
    assert "use at least 2 seeds" in sentence([0.82], [0.80])

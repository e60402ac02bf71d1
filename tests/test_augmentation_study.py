"""The augmentation study: subsets, the GAN's data, equal rows per arm, the degradation, the intervals,
and the --quick profile end to end through the script."""

import json
import math
import pathlib
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from covid_keras import augmentation_study as study
from covid_keras import classifier, cli, data
from covid_keras.augment import ClassicAugmenter
from covid_keras.gan import run_dir as gan_run_dir
from covid_keras.gan import training as gan_training

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import augment_study  # noqa: E402


def _pairs(per_class: int = 30):
    return [(f"{c}/img{i:03d}.png", label) for label, c in enumerate(("Normal", "COVID")) for i in range(per_class)]


def test_scarce_subset_is_stable_nested_and_per_class():
    pairs = _pairs()
    small = study.scarce_subset(pairs, 5, seed=3)
    assert small == study.scarce_subset(list(reversed(pairs)), 5, seed=3)  # the order of the split does not matter
    assert sum(name.startswith("COVID/") for name in small) == 5 and len(small) == 10
    larger = study.scarce_subset(pairs, 12, seed=3)
    assert set(small) <= set(larger)  # a smaller n lies inside a larger one
    assert study.scarce_subset(pairs, 5, seed=4) != small  # the seed decides
    assert len(study.scarce_subset(pairs, study.ALL, seed=3)) == 60
    with pytest.raises(ValueError, match="only 30 train images"):
        study.scarce_subset(pairs, 31, seed=0)


def test_subsets_come_from_the_train_split_only():
    spec = data.DataSpec("phantom_small")
    train = data.file_names_and_labels(data.load_split(spec, "train", balanced=True))
    held_out = {name for split in ("validation", "test")
                for name, _ in data.file_names_and_labels(data.load_split(spec, split))}
    subset = study.scarce_subset(train, 6, seed=0)
    assert set(subset) <= {name for name, _ in train}
    assert not set(subset) & held_out


def test_a_gan_for_a_subset_is_refused_images_outside_it():
    spec = data.DataSpec("phantom_small")
    train = data.load_split(spec, "train", balanced=True)
    names = [name for name, _ in data.file_names_and_labels(train)]
    validation_file = data.file_names_and_labels(data.load_split(spec, "validation"))[0][0]
    with pytest.raises(ValueError, match="not in the train split"):
        gan_training.train_subset(train, names[:4] + [validation_file])
    kept = gan_training.train_subset(train, names[:4])
    assert sorted(name for name, _ in data.file_names_and_labels(kept)) == sorted(names[:4])


def test_an_epoch_of_a_subset_takes_as_many_steps_as_one_of_the_whole_split():
    spec = data.DataSpec("phantom_small")
    train = data.load_split(spec, "train", balanced=True)
    names = [name for name, _ in data.file_names_and_labels(train)]
    config = study.quick_config().gan_config()
    whole = gan_training._epoch_dataset(train, config)
    subset = gan_training._epoch_dataset(gan_training.train_subset(train, names[:6]), config)
    assert len(list(whole)) == len(list(subset)) == config.epoch_images // config.batch_size


def test_degradation_is_one_layer_inside_the_saved_classifier(tmp_path):
    extractor = classifier.FeatureExtractor("vgg16", 48, weights=None, degrade_to=16)
    layer = next(l for l in extractor.model.layers if isinstance(l, classifier.DegradeResolution))
    images = np.random.default_rng(0).uniform(-120, 140, (2, 48, 48, 3)).astype("float32")
    expected = tf.image.resize(tf.image.resize(images, (16, 16), antialias=True), (48, 48)).numpy()
    np.testing.assert_allclose(layer(images).numpy(), expected, atol=1e-4)
    head = classifier.build_head(extractor.feature_shape)
    model = classifier.assemble_classifier(extractor, head)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert any(isinstance(l, classifier.DegradeResolution) for l in _all_layers(loaded))
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    # Degrading is linear and preprocessing subtracts a constant per channel: before or after is the same.
    shifted = layer(images + 7.0).numpy() - 7.0
    np.testing.assert_allclose(shifted, layer(images).numpy(), atol=1e-3)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def test_classic_copies_are_seeded_and_independent_of_how_many():
    images = np.random.default_rng(0).integers(0, 255, (4, 40, 40, 1)).astype(np.uint8)
    augmenter = ClassicAugmenter(seed=1)
    three = augmenter.copies(images, 3)
    assert three.shape == (3, 4, 40, 40, 1) and three.dtype == np.uint8
    np.testing.assert_array_equal(augmenter.copies(images, 1)[0], three[0])
    assert not np.array_equal(three[0], three[1]) and not np.array_equal(three[0], images)
    assert not np.array_equal(ClassicAugmenter(seed=2).copies(images, 1)[0], three[0])


def _cell(arm, ratio, values, gan_seed=None, n="50"):
    return {"n": n, "arm": arm, "ratio": ratio, "gan_seed": gan_seed, "rows": 0,
            "seeds": {s: {"test": {"accuracy": v, "auc": v, "sensitivity": v, "specificity": v},
                          "test_correct": [1, 0, 1, 1]} for s, v in enumerate(values)}}


def test_paired_differences_pool_gan_seeds_per_classifier_seed_by_hand():
    config = study.quick_config()
    results = {
        "real": _cell("real", 0, [0.70, 0.72, 0.74]),
        "classic": _cell("classic", 1, [0.74, 0.73, 0.78]),
        "gan0": _cell("gan", 1, [0.71, 0.75, 0.74], gan_seed=0),
        "gan1": _cell("gan", 1, [0.73, 0.75, 0.78], gan_seed=1),
    }
    rows = {(r["arm"], r["ratio"]): r for r in study.summarise(results, config)}
    gan = rows[("gan", 1)]
    # Per classifier seed, the GAN seeds' mean: 0.72, 0.75, 0.76; minus real: 0.02, 0.03, 0.02.
    d = np.array([0.02, 0.03, 0.02])
    half = 4.303 * d.std(ddof=1) / math.sqrt(3)
    paired = gan["paired"]["real"]["accuracy"]
    assert paired["mean"] == pytest.approx(d.mean())
    assert (paired["low"], paired["high"]) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert paired["verdict"] == "better"  # the interval [+0.0090, +0.0377] excludes 0
    versus_classic = gan["paired"]["classic"]["accuracy"]  # 0.72-0.74, 0.75-0.73, 0.76-0.78
    assert versus_classic["mean"] == pytest.approx(np.mean([-0.02, 0.02, -0.02]))
    assert versus_classic["verdict"] == "no detectable difference"
    assert gan["metrics"]["accuracy"]["n"] == 6  # 2 GAN seeds x 3 classifier seeds
    assert gan["gan_seeds"] == [0, 1]


def test_quick_study_end_to_end_and_resumed(tmp_path, capsys):
    out = tmp_path / "study"
    assert augment_study.main(["--quick", "--out", str(out)]) == 0
    record = json.loads((out / study.RESULTS_JSON).read_text())
    assert (out / study.FIGURE).stat().st_size > 0 and "| n per class |" in (out / study.RESULTS_MD).read_text()
    cells = record["cells"]
    # Every arm that adds rows adds the same number at a given n and ratio.
    by_cell: dict = {}
    for cell in cells.values():
        if cell["arm"] not in ("real", "real_full_resolution"):
            by_cell.setdefault((cell["n"], cell["ratio"]), set()).add(cell["rows"])
        assert set(map(int, cell["seeds"])) == {0, 1}
    assert by_cell and all(len(rows) == 1 for rows in by_cell.values())
    real_rows = {c["n"]: c["rows"] for c in cells.values() if c["arm"] == "real"}
    assert by_cell[(6, 1)] == {2 * real_rows[6]} and by_cell[(6, 2)] == {3 * real_rows[6]}
    # Each GAN trained on its subset only, for the same number of steps.
    for name, run in record["gan_runs"].items():
        saved = json.loads((pathlib.Path(run["run_dir"]) / gan_run_dir.CONFIG_FILE).read_text())
        n = name.split("-")[0]
        assert saved["data"]["train_files"] == record["subsets"][n[1:]]["files"]
    assert len({run["generator_steps"] for run in record["gan_runs"].values()}) == 1
    # Every classifier is saved and scores a folder through its own degradation step.
    model_dir = out / "classifiers" / "n6-gan-x1-gan0" / "seed1"
    model, metadata = classifier.load_classifier(model_dir)
    assert metadata["training"]["degrade_to"] == 32
    assert any(isinstance(l, classifier.DegradeResolution) for l in _all_layers(model))
    full = classifier.load_classifier_metadata(out / "classifiers" / "nall-real_full_resolution" / "seed0")
    assert full["training"]["degrade_to"] is None
    # The same command again reuses everything: no classifier is trained twice.
    before = {p: p.stat().st_mtime_ns for p in out.glob("classifiers/*/*/model.keras")}
    capsys.readouterr()
    assert augment_study.main(["--quick", "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("classifiers/*/*/model.keras")} == before
    assert "seed 0: test accuracy" not in capsys.readouterr().out
    # --report-only reports the finished cells and trains nothing, even where a seed is missing.
    import shutil

    shutil.rmtree(out / "classifiers" / "n6-classic-x2" / "seed1")
    assert augment_study.main(["--quick", "--out", str(out), "--report-only"]) == 0
    partial = json.loads((out / study.RESULTS_JSON).read_text())
    assert partial["unfinished_cells"] == ["n6-classic-x2"] and "n6-classic-x2" not in partial["cells"]
    assert not (out / "classifiers" / "n6-classic-x2" / "seed1").exists()
    assert "Not finished yet" in (out / study.RESULTS_MD).read_text()


def test_another_study_in_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "study"
    config = study.quick_config()
    study.claim_study_dir(out, config)
    other = study.StudyConfig(**{**config.__dict__, "sizes": (7, study.ALL)})
    with pytest.raises(ValueError, match="another configuration"):
        study.claim_study_dir(out, other)
    assert cli.run(augment_study.main, ["--quick", "--sizes", "7", "all", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        study.claim_study_dir(tmp_path / "busy", config)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_a_gan_without_a_class_guide_has_no_guide_filtered_arm(tmp_path, capsys):
    config = study.StudyConfig(**{**study.quick_config().__dict__, "gan_preset": "projected",
                                  "gan_overrides": {"batch_size": 8}})
    assert not config.filters_by_guide and study.quick_config().filters_by_guide
    arms = {cell["arm"] for cell in study.AugmentationStudy(config, tmp_path / "unused").plan_cells()}
    assert "gan_filtered" not in arms and {"gan", "classic_gan", "classic", "real"} <= arms
    # Its discriminator backbone's weights are looked for before the study folder is made.
    no_weights = study.StudyConfig(**{**config.__dict__, "weights_dir": str(tmp_path / "empty")})
    with pytest.raises(FileNotFoundError, match="inception_v3"):
        study.AugmentationStudy(no_weights, tmp_path / "study").run()
    assert not (tmp_path / "study").exists()
    assert cli.run(augment_study.main, ["--quick", "--gan-preset", "projected", "--weights-dir",
                                        str(tmp_path / "empty"), "--out", str(tmp_path / "study")]) == 2
    assert "--weights-dir" in capsys.readouterr().err and not (tmp_path / "study").exists()

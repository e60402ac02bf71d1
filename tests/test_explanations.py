"""A prediction a reader can check: Grad-CAM (sanity checks after Adebayo et al. 2018), the
operating rule (temperature and threshold from validation) in the saved classifier and its export,
the `explain` signature in a fresh process, `predict --explain` and `evaluate_classifier`'s report.

Models are tiny: a few convolutions as the "backbone" and the study's head, assembled the way
`assemble_classifier` assembles a real one.
"""

import json
import subprocess
import sys
import textwrap
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from covid_keras import classifier, export, serving
from covid_keras.classifier import GradCam, OperatingRule, split_classifier
from covid_keras.commands import evaluate_classifier, predict
from covid_keras.evaluation.calibration import apply_temperature

SIZE = 32
PATCH = 8


def tiny_extractor(image_size: int = SIZE) -> keras.Model:
    """Preprocessed image -> an 8 x 8 x 16 "cut layer" (stands in for a backbone)."""
    image = keras.Input((image_size, image_size, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(image, x, name="tiny_backbone_cut")


def tiny_classifier(mirror: bool = False, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    extractor = tiny_extractor()
    head = classifier.build_head(extractor.output.shape[1:])
    stand_in = types.SimpleNamespace(image_size=SIZE, model=extractor, backbone="vgg16")
    return classifier.assemble_classifier(stand_in, head, mirror=mirror)


def patch_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise; COVID (label 1) images also carry one bright 8 x 8 patch at a random place.
    -> (images [N, S, S, 3] as the model takes them, labels, patch corners [N, 2])."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(-40, 40, (count, SIZE, SIZE, 1)).astype(np.float32)
    labels = (np.arange(count) % 2).astype(np.float32)
    corners = rng.integers(0, SIZE - PATCH + 1, (count, 2))
    for i in np.flatnonzero(labels):
        y, x = corners[i]
        images[i, y : y + PATCH, x : x + PATCH] += 120.0
    return np.repeat(images, 3, axis=-1), labels, corners


@pytest.fixture(scope="module")
def patch_model() -> keras.Model:
    model = tiny_classifier()
    images, labels, _ = patch_images(600, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=6, batch_size=32, verbose=0)
    return model


def test_split_classifier_finds_backbone_head_and_mirror():
    parts = split_classifier(tiny_classifier(mirror=True))
    assert parts.head.name == "head" and parts.extractor.name == "tiny_backbone_cut" and parts.mirror
    assert not split_classifier(tiny_classifier()).mirror
    with pytest.raises(ValueError, match="not a classifier assembled"):
        split_classifier(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]))


@pytest.mark.parametrize("mirror", [False, True])
def test_gradcam_probability_is_the_models_and_maps_are_normalised(mirror):
    model = tiny_classifier(mirror=mirror)
    images, _, _ = patch_images(6, seed=1)
    probability, heatmaps = GradCam.of(model)(images)
    np.testing.assert_allclose(probability, model.predict(images, verbose=0)[:, 0], atol=1e-5)
    assert heatmaps.shape == (6, 8, 8)
    assert float(tf.reduce_min(heatmaps)) >= 0.0 and float(tf.reduce_max(heatmaps)) <= 1.0 + 1e-6
    calibrated, _ = GradCam.of(model)(images, temperature=2.0)
    np.testing.assert_allclose(calibrated, apply_temperature(np.asarray(probability, np.float64), 2.0), atol=1e-5)


def test_gradcam_peaks_on_the_patch_that_carries_the_class(patch_model):
    images, labels, corners = patch_images(200, seed=7)
    probability, heatmaps = GradCam.of(patch_model)(images)
    accuracy = np.mean((np.asarray(probability) > 0.5) == (labels == 1))
    assert accuracy > 0.9, f"the stand-in did not learn the patch (accuracy {accuracy:.2f}): the check would prove little"
    hits = []
    for i in np.flatnonzero((labels == 1) & (np.asarray(probability) > 0.5)):
        row, column = np.unravel_index(np.argmax(heatmaps[i]), heatmaps[i].shape)  # a cell is 4 x 4 px
        y, x = corners[i]
        # the peak cell overlaps the patch (one cell of slack for the receptive field)
        hits.append(y - 4 <= row * 4 < y + PATCH + 4 and x - 4 <= column * 4 < x + PATCH + 4)
    assert np.mean(hits) >= 0.8, f"map peaked on the patch for only {np.mean(hits):.0%} of COVID images"


def test_gradcam_of_a_model_with_re_randomised_top_differs(patch_model):
    images, labels, _ = patch_images(40, seed=3)
    _, trained_maps = GradCam.of(patch_model)(images)
    randomised = keras.models.clone_model(patch_model)
    randomised.set_weights(patch_model.get_weights())
    head = split_classifier(randomised).head
    keras.utils.set_random_seed(99)
    for layer in head.layers:
        if layer.weights:
            layer.set_weights([np.random.default_rng(5).normal(0, 0.05, w.shape).astype("float32")
                               for w in layer.get_weights()])
    _, random_maps = GradCam.of(randomised)(images)
    a, b = np.asarray(trained_maps).reshape(40, -1), np.asarray(random_maps).reshape(40, -1)
    correlations = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b) if x.std() > 0 and y.std() > 0]
    assert np.mean(np.abs(a - b)) > 0.1 and np.mean(correlations) < 0.8


def test_operating_rule_is_fitted_on_validation_and_labels_as_its_raw_threshold():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 400)
    labels = (rng.uniform(size=400) < 1 / (1 + np.exp(-logits))).astype(int)
    raw = 1 / (1 + np.exp(-3 * logits))  # over-confident by a factor 3
    rule = OperatingRule.fit(labels, raw, target_sensitivity=0.9)
    assert rule.temperature > 1.5
    calibrated = rule.probabilities(raw)
    assert np.mean(calibrated[labels == 1] > rule.threshold) >= 0.9
    np.testing.assert_array_equal(rule.labels(raw), (raw > rule.raw_threshold).astype(int))
    assert OperatingRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    assert OperatingRule.of_metadata({}).threshold == 0.5 and OperatingRule.of_metadata({}).temperature == 1.0
    with pytest.raises(ValueError, match="never on the test split"):
        OperatingRule.fit(labels, raw, split="test")


def synthetic_examples(count: int, seed: int) -> tf.data.Dataset:
    """TFDS-style grey examples: COVID images brighter, so a head learns something in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = np.clip(np.where(labels[:, None, None, None] == 1, 150, 70) + rng.integers(0, 80, (count, 40, 40, 1)),
                     0, 255).astype(np.uint8)
    names = [f"{'COVID' if label else 'Normal'}/s{seed}_{i}.png" for i, label in enumerate(labels)]
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels.astype(np.int64),
                                               "file_name": tf.constant(names)})


@pytest.fixture(scope="module")
def saved_vgg(tmp_path_factory):
    """A VGG16 (random weights, 64 px: a 2 x 2 cut) classifier trained and saved with its operating rule."""
    config = classifier.ClassifierConfig("vgg16", weights=None, image_size=64, epochs=3, batch_size=8,
                                         learning_rate=1e-4, mirror=True, target_sensitivity=0.9)
    splits = {"train": synthetic_examples(32, 0), "validation": synthetic_examples(24, 1),
              "test": synthetic_examples(16, 2)}
    trained = classifier.train_classifier(config, splits, verbose=0)
    return classifier.save_classifier(trained, tmp_path_factory.mktemp("clf") / "vgg16"), trained


def test_saved_classifier_records_the_rule_chosen_on_validation(saved_vgg):
    folder, trained = saved_vgg
    metadata = json.loads((folder / classifier.METADATA_FILE).read_text())
    rule = metadata["operating_rule"]
    assert rule["calibration"]["fitted_on"] == "validation" and rule["operating_point"]["chosen_on"] == "validation"
    assert rule["operating_point"]["target_sensitivity"] == 0.9
    validation = metadata["metrics_with_operating_rule"]["validation"]["at_threshold"]
    assert validation["sensitivity"] >= 0.9
    assert set(metadata["metrics_with_operating_rule"]) == {"train", "validation", "test"}
    assert OperatingRule.of_metadata(metadata) == trained.operating_rule


EXPLAIN_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    saved_model_dir, files = sys.argv[1], sys.argv[2:]
    loaded = tf.saved_model.load(saved_model_dir)
    data = tf.constant([open(f, "rb").read() for f in files])
    explained = loaded.signatures["explain"](image_bytes=data)
    served = loaded.signatures["serving_default"](image_bytes=data)
    assert not any(name.startswith("covid_keras") for name in sys.modules), "needs covid_keras"
    print("RESULT " + json.dumps({
        "heatmap": explained["heatmap"].numpy().tolist(),
        "explained": explained["covid_probability"].numpy().tolist(),
        "served": served["covid_probability"].numpy().tolist(),
        "labels": [l.decode() for l in explained["label"].numpy()],
        "served_labels": [l.decode() for l in served["label"].numpy()],
    }))
    """
)


@pytest.fixture(scope="module")
def xray_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xrays")
    rng = np.random.default_rng(4)
    paths = []
    for i, brightness in enumerate((60, 90, 160, 200)):
        path = folder / f"x{i}.png"
        Image.fromarray(np.clip(brightness + rng.integers(0, 60, (70, 90)), 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def exported_vgg(saved_vgg, tmp_path_factory):
    folder, _ = saved_vgg
    return export.export_classifier_dir(folder, base_dir=tmp_path_factory.mktemp("saved_models"), name="vgg")


def test_explain_signature_round_trips_in_a_fresh_process(saved_vgg, exported_vgg, xray_files, tmp_path):
    script = tmp_path / "explain.py"
    script.write_text(EXPLAIN_IN_FRESH_PROCESS)
    result = subprocess.run([sys.executable, str(script), str(exported_vgg.path), *map(str, xray_files)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    heatmaps = np.array(outputs["heatmap"])
    assert heatmaps.shape == (4, 64, 64) and heatmaps.min() >= 0 and heatmaps.max() <= 1 + 1e-6
    np.testing.assert_allclose(outputs["explained"], outputs["served"], atol=1e-5)
    assert outputs["labels"] == outputs["served_labels"]
    # the export applies the saved rule: temperature-scaled probability, label at the chosen threshold
    _, trained = saved_vgg
    rule = trained.operating_rule
    assert outputs["labels"] == ["COVID" if p > rule.threshold else "Normal" for p in outputs["served"]]
    card = json.loads(exported_vgg.card_path.read_text())
    assert card["temperature"] == rule.temperature and card["threshold"] == rule.threshold
    assert "explain" in card["signatures"]


def test_export_applies_temperature_and_threshold(xray_files, tmp_path):
    model = tiny_classifier(seed=3)
    plain = export.export_classifier(model, backbone="vgg16", image_size=SIZE, name="plain", base_dir=tmp_path)
    scaled = export.export_classifier(model, backbone="vgg16", image_size=SIZE, name="scaled", base_dir=tmp_path,
                                      temperature=2.5, threshold=0.3)
    files = tf.constant([path.read_bytes() for path in xray_files])
    p_plain = tf.saved_model.load(str(plain.path)).signatures["serving_default"](image_bytes=files)
    out = tf.saved_model.load(str(scaled.path)).signatures["serving_default"](image_bytes=files)
    expected = apply_temperature(p_plain["covid_probability"].numpy().astype(np.float64), 2.5)
    np.testing.assert_allclose(out["covid_probability"].numpy(), expected, atol=1e-5)
    assert [label.decode() for label in out["label"].numpy()] == ["COVID" if p > 0.3 else "Normal" for p in expected]
    assert export.EXPLAIN_FILES == serving.EXPLAIN_SIGNATURE


def test_predict_explain_writes_a_map_per_file_and_keeps_a_non_empty_folder(exported_vgg, xray_files, tmp_path,
                                                                              capsys):
    out = tmp_path / "maps"
    assert predict.run(["--saved-model", str(exported_vgg.path), "--explain", str(out), *map(str, xray_files)]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [line[0] for line in lines] == [str(path) for path in xray_files]
    for (_, _, _, map_path), source in zip(lines, xray_files):
        with Image.open(map_path) as written:
            assert written.size == Image.open(source).size and written.mode == "RGB"
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert predict.run(["--saved-model", str(exported_vgg.path), "--explain", str(out), str(xray_files[0])]) == 2
    assert f"error: {out} is not empty" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_same_stem_maps_do_not_replace_each_other():
    assert predict.heatmap_file_names(["a/x.png", "b/x.jpg", "y.png"]) == ["x.gradcam.png", "x-2.gradcam.png",
                                                                           "y.gradcam.png"]


def write_folder(root, classes, count=6, seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(count):
            brightness = 170 if name == "COVID" else 70
            pixels = np.clip(brightness + rng.integers(0, 60, (48, 48)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}-{i}.png")
    return root


def test_evaluate_classifier_reports_intervals_rule_shortcuts_and_sources(saved_vgg, tmp_path, capsys):
    folder, _ = saved_vgg
    root = write_folder(tmp_path / "data", ["Normal", "COVID"])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,site\n" + "".join(f"{c}/images/{c}-{i}.png,{'A' if i < 3 else 'B'}\n"
                                                 for c in ("Normal", "COVID") for i in range(6)))
    report = tmp_path / "report"
    result = evaluate_classifier.main(["--model", str(folder), "--data", "folder", str(root), "--data-dir",
                                       str(tmp_path / "tfds"), "--report", str(report), "--manifest", str(manifest),
                                       "--source-column", "site"])
    assert result["n"] == 12 and len(result["accuracy_interval"]) == 2
    low, high = result["accuracy_interval"]
    assert low <= result["accuracy"] <= high
    assert result["with_operating_rule"]["at_threshold"]["threshold"] == result["operating_rule"]["threshold"]
    assert set(result["by_source"]) == {"A", "B"} and result["by_source"]["A"]["n"] == 6
    assert set(result["shortcuts"]) == {"Normal", "COVID"}
    assert {p.name for p in report.iterdir()} >= {"shortcuts.json", "evaluation.json", "gradcam_Normal.png",
                                                 "gradcam_COVID.png", "reliability.png"}
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["n"] == 12


def test_evaluate_classifier_on_a_one_class_folder_reports_recall_not_accuracy(saved_vgg, tmp_path):
    folder, _ = saved_vgg
    root = write_folder(tmp_path / "covid_only", ["COVID"])
    result = evaluate_classifier.main(["--model", str(folder), "--data", "folder", "--data-path", str(root),
                                       "--data-dir", str(tmp_path / "tfds")])
    assert result["one_class"] == "COVID" and result["n"] == 6 and "accuracy" not in result
    assert 0 <= result["recall"] <= 1 and set(result["p_covid_calibrated"]) >= {"q05", "q50", "q95"}


@pytest.mark.parametrize("backbone, size", [("vgg16", 64), ("resnet50", 64), ("inception_v3", 75)])
def test_gradcam_works_at_every_backbones_cut_layer(backbone, size):
    extractor = classifier.FeatureExtractor(backbone, size, weights=None)
    keras.utils.set_random_seed(0)
    model = classifier.assemble_classifier(extractor, classifier.build_head(extractor.feature_shape))
    images = np.random.default_rng(0).uniform(-100, 100, (2, size, size, 3)).astype(np.float32)
    probability, heatmaps = GradCam.of(model)(images)
    np.testing.assert_allclose(probability, model.predict(images, verbose=0)[:, 0], atol=1e-5)
    assert heatmaps.shape == (2, *extractor.feature_shape[:2])

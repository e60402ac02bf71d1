"""GAN evaluation: KID, class fidelity, TSTR/TRTR, diversity, checkpoints and the report.

Tiny 32 px images and the seeded weight-free `random_conv` extractor keep this fast; a
stand-in generator replaces a trained GAN.
"""

import dataclasses
import importlib.util
import json
import pathlib

import keras
import numpy as np
import pytest
from PIL import Image

from covid_keras import data
from covid_keras.evaluation import comparison
from covid_keras.augment import RandomBlur
from covid_keras.evaluation import checkpoints as eval_checkpoints
from covid_keras.evaluation import diagnostics as eval_diagnostics
from covid_keras.evaluation import embeddings as eval_embeddings
from covid_keras.evaluation import gan_report
from covid_keras.evaluation import images as eval_images
from covid_keras.evaluation import judge as eval_judge
from covid_keras.evaluation import kid as eval_kid
from covid_keras.evaluation import tstr as eval_tstr
from covid_keras.gan import run_dir as gan_run_dir
from covid_keras.gan.presets import from_preset
from tests.tiny import SIZE, TINY_RECIPE, blob_dataset, blob_images, stand_in_generator  # noqa: F401


@pytest.fixture(scope="module")
def extractor():
    return eval_embeddings.build_extractor("random_conv", random_input_size=SIZE)


@pytest.fixture(scope="module")
def real_xrays(radiography_dir):
    """240 real COVID X-rays at 32 px, read directly (no dataset pipeline needed)."""
    files = sorted((radiography_dir / "COVID" / "images").glob("*.png"))[:240]
    assert len(files) == 240, f"expected real X-rays under {radiography_dir}"
    images = [np.asarray(Image.open(f).convert("L").resize((SIZE, SIZE), Image.BILINEAR)) for f in files]
    return np.asarray(images, np.uint8)[..., None]


# --- KID ---------------------------------------------------------------------------------------


def test_mmd2_unbiased_matches_its_definition():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 3)), rng.normal(1, 1, size=(5, 3))
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(4) for j in range(4) if i != j) / (4 * 3)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(4) for j in range(5)) / (4 * 5)
    assert eval_kid.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy)


def test_kid_of_real_xrays_against_themselves_is_near_zero_and_against_noise_is_large(extractor, real_xrays):
    features = extractor.features(real_xrays[:120])
    other_half = extractor.features(real_xrays[120:])
    noise = np.random.default_rng(1).integers(0, 256, (120, SIZE, SIZE, 1), dtype=np.uint8)
    noise_features = extractor.features(noise)

    kid = lambda a, b: eval_kid.kernel_inception_distance(a, b, num_subsets=50, subset_size=50)  # noqa: E731
    itself, other, against_noise = kid(features, features), kid(features, other_half), kid(features, noise_features)

    # Against itself the subsets share images, which pulls the estimate slightly below 0.
    assert abs(itself["mean"]) < 2 * itself["std"]
    assert abs(other["mean"]) < other["std"]  # other X-rays of the same class
    assert against_noise["mean"] > 10 * against_noise["std"]
    assert against_noise["mean"] > 50 * max(abs(itself["mean"]), abs(other["mean"]))
    assert itself["subset_size"] == 50 and against_noise["n_generated"] == 120


def test_unbiased_kid_of_two_samples_of_one_distribution_is_near_zero():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    kid = eval_kid.kernel_inception_distance(x, y, num_subsets=50, subset_size=100)
    assert abs(kid["mean"]) < kid["std"] / 2
    # The biased estimate (diagonals kept) is positive by about the diagonal's weight: the bias KID removes.
    k = eval_kid.polynomial_kernel
    biased = k(x[:100], x[:100]).mean() + k(y[:100], y[:100]).mean() - 2 * k(x[:100], y[:100]).mean()
    assert biased > 5 * abs(kid["mean"])


def test_kid_per_class_skips_missing_classes(extractor):
    real = blob_dataset(20, seed=0)
    features = extractor.features(real.images)
    kid = eval_kid.kid_per_class(features, real.labels, features[:20], real.labels[:20], ("left", "right"), num_subsets=5)
    assert list(kid["per_class"]) == ["left"]
    assert kid["mean_over_classes"] == kid["per_class"]["left"]["mean"]


# --- extractors --------------------------------------------------------------------------------


def test_random_conv_extractor_is_deterministic_and_recorded():
    images = blob_images(6, 0, seed=3)
    first = eval_embeddings.build_extractor("random_conv", random_input_size=SIZE, seed=7)
    second = eval_embeddings.build_extractor("random_conv", random_input_size=SIZE, seed=7)
    np.testing.assert_allclose(first.features(images), second.features(images), rtol=1e-6)
    assert first.describe()["name"] == "random_conv"
    assert first.describe()["weights"] == "seeded-random(seed=7)"
    assert first.describe()["exact_weights"] is False


def test_extractor_lookup_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown extractor 'nope'"):
        eval_embeddings.build_extractor("nope")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        eval_embeddings.build_extractor("resnet50", weights=str(tmp_path / "missing.h5"))
    with pytest.raises(FileNotFoundError, match="resnet50_notop.weights.h5"):
        eval_embeddings.build_extractor("resnet50", weights_dir=tmp_path)


def test_auto_extractor_falls_back_to_random_conv_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.warns(UserWarning, match="random_conv"):
        extractor = eval_embeddings.build_extractor("auto", weights_dir=tmp_path, random_input_size=SIZE)
    assert extractor.name == "random_conv"
    assert "no ImageNet weights" in extractor.describe()["note"]


def test_float_images_must_be_generator_range():
    assert eval_images.to_uint8_images(np.array([[[[-1.0]], [[1.0]]]], np.float32)).ravel().tolist() == [0, 255]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        eval_images.to_uint8_images(np.full((1, 2, 2, 1), 200.0))


# --- diversity ---------------------------------------------------------------------------------


def test_diversity_of_identical_copies_is_zero_and_of_random_images_positive(extractor):
    copies = np.repeat(blob_images(1, 0, seed=0), 12, axis=0)
    random_images = np.random.default_rng(0).integers(0, 256, (12, SIZE, SIZE, 1), dtype=np.uint8)

    assert eval_kid.mean_pairwise_distance(extractor.features(copies)) == 0.0
    assert eval_kid.mean_pairwise_ssim_distance(copies) == pytest.approx(0.0, abs=1e-5)
    assert eval_kid.mean_pairwise_distance(extractor.features(random_images)) > 0.01
    assert eval_kid.mean_pairwise_ssim_distance(random_images) > 0.5


# --- classifiers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs():
    return {split: blob_dataset(n, seed) for split, n, seed in (("train", 60, 0), ("validation", 20, 10), ("test", 30, 20))}


@pytest.fixture(scope="module")
def judge(blobs):
    train, val = blobs["train"], blobs["validation"]
    model, fit = eval_judge.train_small_cnn(train.images, train.labels, val.images, val.labels, 2, TINY_RECIPE)
    assert 1 <= fit["best_epoch"] <= fit["epochs_run"] <= TINY_RECIPE.epochs
    return model


def test_class_fidelity_of_real_images_is_the_judges_accuracy(judge, blobs):
    test = blobs["test"]
    fidelity = eval_judge.class_fidelity(judge, test.images, test.labels, ("left", "right"))
    _, accuracy = judge.evaluate(test.images.astype(np.float32), test.labels, verbose=0)
    predicted = np.argmax(judge.predict(test.images.astype(np.float32), verbose=0), axis=-1)

    assert fidelity["overall"] == pytest.approx(accuracy)
    assert fidelity["per_class"]["right"] == pytest.approx(np.mean(predicted[test.labels == 1] == 1))
    assert fidelity["overall"] > 0.8  # the blobs are easy: a judge that learned nothing fails here


def brightness_dataset(per_class: int, seed: int) -> eval_images.LabelledImages:
    """Classes told apart by brightness alone: textured images around grey 100 (label 0) or 140 (label 1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], per_class)
    images = np.where(labels == 0, 100, 140)[:, None, None, None] + rng.uniform(-40, 40, (2 * per_class, SIZE, SIZE, 1))
    return eval_images.LabelledImages(np.clip(images, 0, 255).astype(np.uint8), labels)


def test_colour_jitter_hides_a_brightness_class_and_translation_keeps_it():
    train, validation, test = (brightness_dataset(n, seed) for n, seed in ((60, 0), (20, 1), (50, 2)))
    judge, _ = eval_judge.train_small_cnn(train.images, train.labels, validation.images, validation.labels, 2, TINY_RECIPE)
    accuracy = eval_diagnostics.class_signal_under_augmentation(judge, test.images, test.labels, ("dark", "bright"))

    assert set(accuracy) == {"none", "color", "translation", "cutout", "all"}
    assert accuracy["none"] > 0.9
    assert accuracy["translation"] > 0.85
    assert accuracy["color"] < accuracy["none"] - 0.15


def test_sharpness_falls_with_blur_and_the_blur_check_finds_the_blur_of_softened_samples(judge, blobs):
    test = blobs["test"]
    curve = [eval_diagnostics.sharpness(eval_diagnostics.gaussian_blur(test.images, sigma)) for sigma in eval_diagnostics.BLUR_SIGMAS]
    assert all(a > b for a, b in zip(curve, curve[1:]))
    np.testing.assert_array_equal(eval_diagnostics.gaussian_blur(test.images, 0.0), test.images)

    softened = eval_images.LabelledImages(eval_diagnostics.gaussian_blur(test.images, 1.5), test.labels)  # "samples" = real, blurred
    check = eval_diagnostics.blur_check(judge, test, softened, ("left", "right"))
    for name in ("left", "right"):
        entry = check["per_class"][name]
        assert entry["blur_equivalent_sigma"] == pytest.approx(1.5, abs=0.3)
        assert entry["real_sharpness"] > entry["generated_sharpness"]
        assert len(entry["judge_recall_by_sigma"]) == len(eval_diagnostics.BLUR_SIGMAS)
        assert 0.0 <= entry["judge_recall_at_equivalent_blur"] <= 1.0


def test_random_blur_softens_some_training_images_each_its_own_way_and_leaves_inference_alone(tmp_path):
    """Training: each image is left as it is or blurred at one of the levels, drawn per image;
    inference: the identity. The blur of a level equals the evaluation's own Gaussian blur."""
    images = checkerboard_images(2, n=32, size=32, amplitude=0.5).astype(np.float32)
    layer = RandomBlur(1.5, levels=4, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(images)), images)
    blurred = np.asarray(layer(images, training=True))
    untouched = [np.array_equal(out, image) for out, image in zip(blurred, images)]
    assert 0 < sum(untouched) < len(images)  # some images kept, some blurred: drawn per image
    pixel_detail = lambda image: np.abs(np.diff(image[4:-4, 4:-4, 0], axis=1)).mean()  # noqa: E731
    assert all(pixel_detail(out) < 0.5 * pixel_detail(image) for out, image, kept in zip(blurred, images, untouched)
               if not kept)
    assert not np.array_equal(blurred, np.asarray(layer(images, training=True)))  # a new draw per call
    # Away from the zero-padded border, level 1.5 is the evaluation's blur of sigma 1.5 px.
    as_uint8 = eval_images.to_uint8_images(images)
    reference = eval_diagnostics.gaussian_blur(as_uint8, 1.5)[:, 8:-8, 8:-8]
    strongest = np.asarray(RandomBlur(1.5, levels=2, seed=0)(np.repeat(as_uint8[:1], 16, 0).astype(np.float32), training=True))
    matches = [np.abs(out[8:-8, 8:-8] - reference[0]).max() <= 1.0 for out in strongest]
    assert any(matches)
    with pytest.raises(ValueError, match="max_sigma"):
        RandomBlur(0.0)
    # Part of a saved classifier: it loads back, and predicts as before.
    model = eval_judge.build_small_cnn(SIZE, 2, base_filters=4, augment=False, blur_sigma=1.0)
    model.save(tmp_path / "blurred.keras")
    loaded = keras.models.load_model(tmp_path / "blurred.keras")
    x = eval_images.to_uint8_images(images).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert any(isinstance(layer, RandomBlur) for layer in loaded.layers)


def checkerboard_images(period: int, n: int = 3, size: int = 64, amplitude: float = 0.5) -> np.ndarray:
    """Float [-1, 1] images: a smooth random field plus a checkerboard of cells period/2 px wide."""
    rng = np.random.default_rng(period)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(n, size, size)), axis=1), axis=2)
    smooth = 0.4 * smooth / np.abs(smooth).max()
    rows, cols = np.indices((size, size)) // (period // 2)
    return np.clip(smooth + amplitude * np.where((rows + cols) % 2 == 0, 1.0, -1.0), -1, 1)[..., None]


def test_checkerboard_share_finds_each_period_and_only_it():
    for period, other in ((2, 4), (4, 2)):
        images = checkerboard_images(period)
        assert eval_diagnostics.periodic_power_share(images, period) > 0.5
        assert eval_diagnostics.periodic_power_share(images, other) < 0.01
    smooth = checkerboard_images(4, amplitude=0.0)
    assert eval_diagnostics.periodic_power_share(smooth, 2) < 0.01 and eval_diagnostics.periodic_power_share(smooth, 4) < 0.01
    # Rounded bins where the size is no multiple of the period (150 px at period 4: bins 38 and 112).
    assert eval_diagnostics.periodic_power_share(checkerboard_images(4, size=150), 4) > 0.2
    with pytest.raises(ValueError, match="period"):
        eval_diagnostics.periodic_power_share(smooth, 1)

    # Per class: a grid on one class only shows on that class.
    images = np.concatenate([checkerboard_images(4, amplitude=0.0), checkerboard_images(4)])
    shares = eval_diagnostics.checkerboard_per_class(images, np.repeat([0, 1], 3), ("clean", "grid", "absent"))
    assert set(shares) == {"clean", "grid"} and set(shares["grid"]) == {"2", "4"}
    assert shares["grid"]["4"] > 50 * shares["clean"]["4"]


def test_tstr_catches_label_swapped_synthetic_images(judge, blobs):
    """Synthetic images that look right but carry the wrong class: TRTR high, TSTR low."""
    pair = lambda s: (s.images, s.labels)  # noqa: E731
    swapped_train = (blobs["train"].images, 1 - blobs["train"].labels)
    swapped_val = (blobs["validation"].images, 1 - blobs["validation"].labels)
    result, trtr_model = eval_tstr.tstr_trtr(
        [(swapped_train, swapped_val)], pair(blobs["train"]), pair(blobs["validation"]), pair(blobs["test"]),
        ("left", "right"), TINY_RECIPE, trtr_model=judge,
    )
    assert trtr_model is judge
    assert result["trtr_accuracy"] > 0.8
    assert result["tstr_accuracy"] < 0.3
    assert result["trtr_auc"] > 0.9 and result["tstr_auc"] < 0.3  # swapped labels rank real images backwards
    assert set(result["tstr_recall_per_class"]) == {"left", "right"}
    assert result["n_tstr_classifiers"] == 1 and result["tstr_accuracy_sd"] is None
    # Also scored on real validation images, to choose settings by: as wrong there as on test.
    assert result["tstr_real_validation_accuracy"] < 0.3 and result["tstr_real_validation_auc"] < 0.3
    assert result["tstr_classifiers"][0]["real_validation"]["accuracy"] == result["tstr_real_validation_accuracy"]
    assert result["recipe"] == dataclasses.asdict(TINY_RECIPE)


def test_tstr_over_several_classifiers_reports_each_and_their_mean(judge, blobs):
    """One classifier on label-swapped images, one on right ones: the mean and spread cover both,
    and classifier 0 is the one a single-classifier TSTR trains."""
    pair = lambda s: (s.images, s.labels)  # noqa: E731
    swapped = ((blobs["train"].images, 1 - blobs["train"].labels),
               (blobs["validation"].images, 1 - blobs["validation"].labels))
    right = (pair(blobs["train"]), pair(blobs["validation"]))
    real = (pair(blobs["train"]), pair(blobs["validation"]), pair(blobs["test"]), ("left", "right"), TINY_RECIPE)
    single, _ = eval_tstr.tstr_trtr([swapped], *real, trtr_model=judge)
    result, _ = eval_tstr.tstr_trtr([swapped, right], *real, trtr_model=judge)

    first, second = result["tstr_classifiers"]
    assert [first["seed"], second["seed"]] == [TINY_RECIPE.seed, TINY_RECIPE.seed + eval_tstr.TSTR_SEED_STRIDE]
    assert first["accuracy"] == single["tstr_accuracy"] and first["auc"] == single["tstr_auc"]
    assert first["accuracy"] < 0.3 and second["accuracy"] > 0.8
    assert result["n_tstr_classifiers"] == 2
    assert result["tstr_accuracy"] == pytest.approx((first["accuracy"] + second["accuracy"]) / 2)
    assert result["tstr_accuracy_sd"] == pytest.approx(abs(first["accuracy"] - second["accuracy"]) / np.sqrt(2))
    assert result["tstr_auc"] == pytest.approx((first["auc"] + second["auc"]) / 2) and result["tstr_auc_sd"] > 0.4
    assert result["tstr_recall_per_class"]["left"] == pytest.approx(
        (first["recall_per_class"]["left"] + second["recall_per_class"]["left"]) / 2)
    with pytest.raises(ValueError, match="at least one"):
        eval_tstr.tstr_trtr([], *real, trtr_model=judge)
    with pytest.raises(ValueError, match="tstr_classifiers"):
        gan_report.EvaluationSettings(tstr_classifiers=0)


def test_auc_sees_a_right_ranking_behind_a_wrong_threshold():
    labels = np.array([0, 0, 0, 1, 1, 1])
    p_label_1 = np.array([0.6, 0.65, 0.7, 0.8, 0.9, 0.95])  # every image called label 1: accuracy 0.5
    probabilities = np.stack([1 - p_label_1, p_label_1], axis=-1)
    assert eval_judge.one_vs_rest_auc(labels, probabilities) == 1.0
    assert eval_judge.one_vs_rest_auc(labels, probabilities[:, ::-1]) == 0.0
    # Three classes: the mean of the one-vs-rest AUCs; a class absent from the labels is skipped.
    three = np.eye(3)[[0, 1, 2, 2]] * 0.8 + 0.1
    assert eval_judge.one_vs_rest_auc(np.array([0, 1, 2, 2]), three) == 1.0
    assert eval_judge.one_vs_rest_auc(np.array([0, 0, 2, 2]), three[[0, 0, 2, 2]]) == 1.0


# --- checkpoints, the whole evaluation and its report -------------------------------------------


def test_list_checkpoints_reads_gan_training_snapshots(tmp_path):
    for name in ("weights/generator-epoch00020.weights.h5", "weights/discriminator-epoch00020.weights.h5",
                 "weights/generator-epoch00010.weights.h5", "checkpoints/train_state-epoch00023.weights.h5",
                 "samples/epoch_00010.png", "generator.weights.h5"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()

    checkpoints = eval_checkpoints.list_checkpoints(tmp_path)

    assert [(c.epoch, c.path.name) for c in checkpoints] == [
        (10, "generator-epoch00010.weights.h5"), (20, "generator-epoch00020.weights.h5")]


def test_list_checkpoints_tolerates_other_layouts(tmp_path):
    (tmp_path / "checkpoints" / "epoch_0010").mkdir(parents=True)
    for name in ("generator_epoch_5.keras", "discriminator_epoch_5.keras", "generator_ema_epoch_5.keras",
                 "ckpt-20.index", "ckpt-20.data-00000-of-00001", "samples_epoch_5.png", "train_state-epoch7.h5"):
        (tmp_path / "checkpoints" / name).touch()
    (tmp_path / "losses.csv").touch()

    checkpoints = eval_checkpoints.list_checkpoints(tmp_path)

    assert [c.epoch for c in checkpoints] == [5, 10, 20]
    assert [c.path.name for c in checkpoints] == ["generator_ema_epoch_5.keras", "epoch_0010", "ckpt-20.index"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        eval_checkpoints.list_checkpoints(tmp_path / "nowhere")


def test_evaluate_gan_writes_a_complete_report(tmp_path, blobs, extractor):
    # The judge only needs to run here; TSTR (two more trainings) is tested on its own above.
    quick_recipe = dataclasses.replace(TINY_RECIPE, epochs=2)
    settings = gan_report.EvaluationSettings(per_class=24, num_subsets=10, subset_size=1000, recipe=quick_recipe,
                                     tstr=False, grid_columns=4)
    result = gan_report.evaluate_gan(stand_in_generator(), blobs, class_names=("left", "right"), extractor=extractor,
                             settings=settings, out_dir=tmp_path, verbose=0)

    assert result["extractor"]["name"] == "random_conv"
    assert result["image_size"] == SIZE
    assert set(result["kid"]["per_class"]) == {"left", "right"}
    assert result["kid"]["per_class"]["left"]["subset_size"] == 24  # min(1000, 60 real, 24 generated)
    judge = result["class_fidelity"]["judge"]
    assert judge["source"] == "trained" and judge["fit"]["epochs_run"] <= 2
    assert 0.0 <= result["class_fidelity"]["per_class"]["right"] <= 1.0
    assert judge["real_test_recall_per_class"].keys() == {"left", "right"}
    assert (tmp_path / "judge.keras").is_file()
    assert result["diversity"]["real"]["left"]["feature_distance"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["class_fidelity"]["per_class"] == result["class_fidelity"]["per_class"]
    summary = (tmp_path / "summary.md").read_text()
    assert "random_conv" in summary and "| left |" in summary and "## Sharpness and the judge" in summary
    assert set(result["blur"]["per_class"]) == {"left", "right"}
    assert result["checkerboard"]["periods"] == list(eval_diagnostics.CHECKERBOARD_PERIODS)
    assert set(result["checkerboard"]["generated"]) == set(result["checkerboard"]["real"]) == {"left", "right"}
    assert "## Checkerboard" in summary
    assert set(judge["real_test_accuracy_after_diff_augment"]) == {"none", "color", "translation", "cutout", "all"}
    assert (tmp_path / "grid_left.png").stat().st_size > 0 and (tmp_path / "grid_right.png").is_file()


def test_evaluate_gan_draws_fresh_samples_for_each_tstr_classifier(tmp_path, blobs, extractor, monkeypatch):
    seeds = []
    real_generate_images = eval_images.generate_images

    def recording_generate_images(generator, labels, seed=0, *args, **kwargs):
        seeds.append(seed)
        return real_generate_images(generator, labels, seed, *args, **kwargs)

    monkeypatch.setattr(gan_report, "generate_images", recording_generate_images)
    quick_recipe = dataclasses.replace(TINY_RECIPE, epochs=2)
    settings = gan_report.EvaluationSettings(per_class=12, num_subsets=4, recipe=quick_recipe, curves=False,
                                     tstr_classifiers=2, seed=3, grid_columns=4)
    result = gan_report.evaluate_gan(stand_in_generator(), blobs, class_names=("left", "right"), extractor=extractor,
                             settings=settings, out_dir=tmp_path, verbose=0)

    # Classifier 0 keeps the seeds a single TSTR always used (seed + 1, + 2); classifier 1 its own.
    assert seeds == [4, 5, (3, 1, 1), (3, 1, 2)]
    tstr = result["tstr_trtr"]
    assert tstr["n_tstr_classifiers"] == 2 and len(tstr["tstr_classifiers"]) == 2
    assert [c["seed"] for c in tstr["tstr_classifiers"]] == [0, eval_tstr.TSTR_SEED_STRIDE]  # the recipe's seed, 0
    assert tstr["tstr_accuracy_sd"] is not None
    assert tstr["trtr_fit"] == "reused the judge (same recipe, real train)"
    assert "over 2 classifiers" in (tmp_path / "summary.md").read_text()
    # The comparison reads what was written: the mean and spread over these classifiers.
    (row,) = comparison.compare_paths([tmp_path])["reports"]
    assert row["tstr"] == pytest.approx(tstr["tstr_accuracy"]) and row["tstr_sd"] == pytest.approx(tstr["tstr_accuracy_sd"])


def test_tstr_with_blur_trains_its_own_trtr_and_leaves_the_judge_as_it_is(tmp_path, blobs, extractor):
    quick_recipe = dataclasses.replace(TINY_RECIPE, epochs=2)
    settings = gan_report.EvaluationSettings(per_class=12, num_subsets=4, recipe=quick_recipe, curves=False,
                                     tstr_blur_sigma=1.5, grid_columns=4)
    result = gan_report.evaluate_gan(stand_in_generator(), blobs, class_names=("left", "right"), extractor=extractor,
                             settings=settings, out_dir=tmp_path, verbose=0)
    tstr = result["tstr_trtr"]
    assert tstr["recipe"]["blur_sigma"] == 1.5 and result["settings"]["tstr_blur_sigma"] == 1.5
    assert isinstance(tstr["trtr_fit"], dict)  # not the judge: TRTR must be the TSTR classifier's recipe
    judge = keras.models.load_model(tmp_path / "judge.keras")
    assert not any(isinstance(layer, RandomBlur) for layer in judge.layers)
    assert "random Gaussian blur of sigma up to 1.5 px" in (tmp_path / "summary.md").read_text()
    assert comparison.compare_paths([tmp_path])["reports"][0]["configuration"].endswith("TSTR blur ≤1.5 px")
    with pytest.raises(ValueError, match="tstr_blur_sigma"):
        gan_report.EvaluationSettings(tstr_blur_sigma=-1.0)


def test_curve_plots_are_written(tmp_path):
    curves = [{"epoch": e, "per_class": {"a": {"mean": 1.0 / e, "std": 0.1}}, "mean_over_classes": 1.0 / e,
               "class_fidelity": {"overall": 0.5 + 0.1 * e, "per_class": {"a": 0.5 + 0.1 * e}}}
              for e in (1, 2, 4)]
    path = gan_report.save_kid_curve(curves, ["a"], tmp_path / "kid.png", "random_conv")
    assert pathlib.Path(path).stat().st_size > 1000
    path = gan_report.save_fidelity_curve(curves, ["a"], tmp_path / "fidelity.png", judge_accuracy=0.9)
    assert pathlib.Path(path).stat().st_size > 1000


def test_script_evaluates_a_run_against_a_data_spec_with_curves(tmp_path, project_root, monkeypatch, judge):
    """scripts/evaluate_gan.py end to end on phantom_small; the run's generators are stand-ins."""
    run_dir = tmp_path / "run"
    (run_dir / "weights").mkdir(parents=True)
    # What makes a folder a run; the stand-ins below read nothing, the report its precision.
    (run_dir / "config.json").write_text('{"precision": "mixed_bfloat16", "precision_reason": "auto: CPU has avx512_bf16"}')
    for epoch in (10, 20):
        (run_dir / "weights" / f"generator-epoch{epoch:05d}.weights.h5").touch()
    loaded, generators = [], {}

    def load_stand_in(run_dir, which="latest"):
        loaded.append(which if isinstance(which, str) else which.epoch)
        generators[loaded[-1]] = stand_in_generator(seed=0 if which == "latest" else which.epoch)
        return generators[loaded[-1]], run_config, ["Normal", "COVID"]

    run_config = from_preset("stable", seed=7)  # unguided: no class guide to load

    monkeypatch.setattr(gan_report, "load_run_generator", load_stand_in)
    script_path = project_root / "scripts" / "evaluate_gan.py"
    module_spec = importlib.util.spec_from_file_location("evaluate_gan_script", script_path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    out = tmp_path / "report"
    judge.save(tmp_path / "judge.keras")  # a saved judge: the same one can judge several runs
    script.main([
        "--run-dir", str(run_dir), "--real", "phantom_small", "--data-dir", str(tmp_path / "tfds"),
        "--extractor", "random_conv", "--per-class", "16", "--num-subsets", "5", "--judge", str(tmp_path / "judge.keras"),
        "--no-tstr", "--curve-per-class", "12", "--out", str(out),
    ])

    result = json.loads((out / "metrics.json").read_text())
    assert loaded == ["latest", 10, 20]
    assert result["class_names"] == ["Normal", "COVID"]
    assert result["real"]["counts"]["test"] == {"Normal": 20, "COVID": 20}
    assert [point["epoch"] for point in result["curves"]] == [10, 20]
    assert result["curves"][0]["per_class"]["COVID"]["subset_size"] == 12
    # The judge labels each checkpoint's samples: the curve's fidelity is that of those images.
    stand_in_images = eval_images.generate_images(generators[20], eval_images.balanced_labels(2, 12), seed=0)
    expected = eval_judge.class_fidelity(judge, stand_in_images, eval_images.balanced_labels(2, 12), ["Normal", "COVID"])
    assert result["curves"][1]["class_fidelity"] == expected
    assert result["curves"][1]["class_fidelity"]["n"] == 24
    assert result["curves"][1]["checkerboard"] == eval_diagnostics.checkerboard_per_class(
        stand_in_images, eval_images.balanced_labels(2, 12), ["Normal", "COVID"])
    assert (out / "kid_over_training.png").is_file() and (out / "grid_COVID.png").is_file()
    assert (out / "fidelity_over_training.png").is_file()
    assert "| 20 |" in (out / "summary.md").read_text()
    assert result["class_fidelity"]["judge"]["source"] == str(tmp_path / "judge.keras")
    # The run's config travels in the report, so the comparison can tell runs apart by training seed.
    assert result["run_config"] == run_config.to_dict()
    # The precision the run trained in and why, and what "auto" picks on this machine.
    assert result["run_precision"] == {"precision": "mixed_bfloat16", "reason": "auto: CPU has avx512_bf16"}
    assert result["provenance"]["precision_auto"]["head"]["precision"] == "float32"
    (row,) = comparison.compare_paths([out])["reports"]
    assert row["training_seed"] == 7
    assert comparison.RUN_CONFIG_FILE == gan_run_dir.CONFIG_FILE
    assert "tstr_trtr" not in result

    with pytest.raises(ValueError, match="differ from the real data"):
        gan_report.evaluate_gan(stand_in_generator(), data.DataSpec("phantom_small", data_dir=str(tmp_path / "tfds")),
                        class_names=("a", "b"), extractor="random_conv", verbose=0)

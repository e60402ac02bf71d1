"""covid_keras.film and the shortcut audit (classifier.audit): the regions, the film standardisation
applied identically in features, the saved model and its export, and an audit that catches a corner
marker and passes a lung lesion."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from covid_keras import evaluation, export, film
from covid_keras.backbones import get_backbone_spec
from covid_keras.classifier import FeatureExtractor, audit
from covid_keras.classifier.operating_rule import OperatingRule
from covid_keras.phantom import render_phantom

SIZE = 64


def phantoms(n: int, seed: int = 0) -> np.ndarray:
    """float32 [n, 64, 64, 1] Normal phantoms (no disease: the classes below differ only as a test sets)."""
    return np.stack([render_phantom(0, seed + i, size=SIZE) for i in range(n)]).astype(np.float32)[..., None]


def test_equalise_spreads_levels_by_rank_and_keeps_their_order():
    grey = np.zeros((1, 4, 4, 1), np.float32)
    grey[0, :2] = 10.0
    grey[0, 2:, :2] = 20.0
    grey[0, 2:, 2:] = 200.0
    out = film.equalise(grey).numpy()[0, ..., 0]
    # 8 pixels at 10 (cdf 8), 4 at 20 (cdf 12), 4 at 200 (cdf 16): (cdf - 8) / (16 - 8) * 255.
    assert np.allclose(out[:2], 0.0)
    assert np.allclose(out[2:, :2], 127.5)
    assert np.allclose(out[2:, 2:], 255.0)


def test_lung_fields_cover_the_lungs_and_spare_the_corners():
    images = phantoms(6)
    lungs = film.lung_fields(images).numpy()[..., 0]
    assert 0.2 < lungs.mean() < 0.6
    assert not lungs[:, :6, :6].any() and not lungs[:, :6, -6:].any()  # where markers sit
    # The phantoms' lungs are at mid height, either side of the midline.
    assert lungs[:, SIZE // 2, SIZE // 4].all() and lungs[:, SIZE // 2, 3 * SIZE // 4].all()
    assert not lungs[:, SIZE // 2, SIZE // 2].any()


def test_text_mask_finds_a_burnt_in_marker():
    images = phantoms(2)
    letter = np.zeros((SIZE, SIZE), bool)  # a bright "L" of 2 px strokes in the top-right corner
    letter[4:12, 50:52] = letter[10:12, 50:58] = True
    images[0, letter] = 255.0
    text = film.text_mask(images).numpy()[..., 0]
    assert text[0][letter].mean() > 0.9
    assert text[0].mean() < 0.1


def test_hide_fills_with_the_mean_of_what_stays_shown_and_leaves_the_rest():
    grey = np.stack([np.full((8, 8, 1), 10.0), np.full((8, 8, 1), 100.0)]).astype(np.float32)
    grey[1, 0, 0] = 255.0  # hidden: must not raise the fill
    grey[1, 7, 7] = 36.0
    mask = np.zeros_like(grey)
    mask[:, 0, 0] = 1.0
    hidden = film.hide(grey, mask).numpy()
    assert hidden[0, 0, 0, 0] == pytest.approx(10.0)
    assert hidden[1, 0, 0, 0] == pytest.approx((62 * 100.0 + 36.0) / 63)
    assert np.array_equal(hidden[:, 1:], grey[:, 1:])
    assert np.allclose(film.hide(grey, np.ones_like(grey)).numpy()[1], grey[1].mean())


@pytest.mark.parametrize("backbone", ["vgg16", "inception_v3"])
@pytest.mark.parametrize("mode", ["equalised", "lungs"])
def test_the_layer_sees_what_standardise_makes_of_the_grey_film(backbone, mode):
    spec = get_backbone_spec(backbone)
    grey = phantoms(3)
    preprocessed = spec.preprocess(tf.image.grayscale_to_rgb(tf.constant(grey)))
    layer_out = film.FilmStandardisation(mode, backbone)(preprocessed).numpy()
    expected = spec.preprocess(tf.image.grayscale_to_rgb(film.standardise(grey, mode))).numpy()
    assert np.allclose(layer_out, expected, atol=1e-3)
    restored = film.FilmStandardisation.from_config(film.FilmStandardisation(mode, backbone).get_config())
    assert (restored.mode, restored.backbone) == (mode, backbone)


def test_features_the_saved_model_and_its_export_apply_the_same_film(tmp_path):
    """Training reads features of the extractor; evaluation and serving run the assembled model: all
    three see film.standardise(grey), and hiding everything outside the lungs changes nothing more."""
    extractor = FeatureExtractor("vgg16", SIZE, weights=None, film="lungs")
    spec = extractor.spec
    grey = phantoms(4, seed=10)
    preprocessed = spec.preprocess(tf.image.grayscale_to_rgb(tf.constant(grey)))
    bare = FeatureExtractor("vgg16", SIZE, weights=None)
    bare.model.set_weights(extractor.model.get_weights())
    by_hand = bare.model.predict(spec.preprocess(tf.image.grayscale_to_rgb(film.standardise(grey, "lungs"))), verbose=0)
    assert np.allclose(extractor.model.predict(preprocessed, verbose=0), by_hand, atol=1e-4)
    assert extractor.cache_key(tf.data.Dataset.from_tensors({"image": grey[0].astype(np.uint8), "label": 0})) != \
        bare.cache_key(tf.data.Dataset.from_tensors({"image": grey[0].astype(np.uint8), "label": 0}))

    keras.utils.set_random_seed(0)
    features = keras.Input(extractor.feature_shape)
    head = keras.Model(features, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Flatten()(keras.layers.Rescaling(1e-2)(features))))
    image = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(image, head(extractor.model(image)))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    expected = model.predict(preprocessed, verbose=0)[:, 0]
    assert np.allclose(reloaded.predict(preprocessed, verbose=0)[:, 0], expected, atol=1e-5)

    exported = export.export_classifier(model, backbone="vgg16", image_size=SIZE, name="film", base_dir=tmp_path / "sm",
                                        metadata={"data": "phantoms", "weights": {"name": "none"}})
    loaded = tf.saved_model.load(str(exported.path))
    served = loaded.signatures[export.CLASSIFY_IMAGES](images=tf.constant(grey))
    assert np.allclose(served["covid_probability"].numpy(), expected, atol=1e-4)


def _reading_model(rows: slice, cols: slice, backbone: str = "vgg16") -> keras.Model:
    """A classifier by the model contract whose P(COVID) is how bright one region of the film is."""
    offset = film._affine_of(get_backbone_spec(backbone).preprocess)[1]
    weights = np.zeros((SIZE, SIZE, 1), np.float32)
    weights[rows, cols] = 1.0 / weights[rows, cols].size
    image = keras.Input((SIZE, SIZE, 3))
    grey = keras.layers.Lambda(lambda x: keras.ops.mean(x - offset, axis=-1, keepdims=True))(image)
    brightness = keras.layers.Lambda(lambda g: keras.ops.sum(g * weights, axis=(1, 2)))(grey)
    return keras.Model(image, keras.layers.Lambda(lambda b: keras.ops.sigmoid((b - 150.0) / 10.0))(brightness))


def _audit(model, images, labels, out_dir=None):
    examples = tf.data.Dataset.from_tensor_slices(
        {"image": images.astype(np.uint8), "label": labels.astype(np.int64)})
    metadata = {"backbone": "vgg16", "image_size": SIZE}
    scores = audit.score_views(model, metadata, examples, verbose=0)
    table = audit.audit_table(scores, OperatingRule(), resamples=200)
    if out_dir is not None:
        audit.write_audit(model, metadata, scores, table, out_dir, per_class=2)
    return table


def test_the_audit_catches_a_label_written_in_the_corner(tmp_path):
    images, labels = phantoms(24, seed=100), np.repeat([0, 1], 12)
    images[labels == 1, 2:8, 2:8] = 255.0  # COVID films carry a bright marker, top left
    table = _audit(_reading_model(slice(2, 8), slice(2, 8)), images, labels, out_dir=tmp_path)
    rows = table["regions"]
    assert rows["none"]["auc"] == pytest.approx(1.0)
    assert rows["top_corners"]["auc"] == pytest.approx(0.5, abs=0.1)
    assert rows["top_corners"]["auc_difference_interval"][1] < 0.0
    assert rows["lungs"]["auc"] == pytest.approx(1.0)
    assert table["verdict"].startswith("the model reads the source")
    # Shifts are scored on the same images, each against the unchanged ones.
    assert set(table["shifts"]) == set(film.SHIFTS)
    assert all("auc_difference_interval" in row for row in table["shifts"].values())
    report = (tmp_path / "audit.md").read_text()
    assert "The model reads the source" in report and "| top corners hidden |" in report and "| collimated |" in report
    for name in ("Normal", "COVID"):
        with Image.open(tmp_path / f"occlusion_{name}.png") as picture:
            assert picture.size[0] > 100


def test_occlusion_finds_where_the_model_looks():
    images, labels = phantoms(2, seed=300), np.array([1, 1])
    images[:, 2:8, 2:8] = 255.0
    maps = audit.occlusion_maps(_reading_model(slice(2, 8), slice(2, 8)), "vgg16", images, labels, grid=8)
    assert maps.shape == (2, 8, 8)
    assert np.unravel_index(np.argmax(maps[0]), (8, 8)) == (0, 0)
    assert np.abs(maps[:, 4:, 4:]).max() < 1e-6


def test_shortcuts_needs_a_report_folder(tmp_path):
    from covid_keras.commands import evaluate_classifier

    with pytest.raises(SystemExit) as exit_info:
        evaluate_classifier.parse_args(["--model", str(tmp_path), "--data", "phantom_small", "--shortcuts"])
    assert exit_info.value.code == 2


def test_the_audit_passes_a_label_in_the_lungs():
    images, labels = phantoms(40, seed=200), np.repeat([0, 1], 20)
    lesion = (slice(28, 36), slice(14, 22))  # inside the left lung field of every phantom
    images[labels == 1, lesion[0], lesion[1]] = 255.0
    table = _audit(_reading_model(*lesion), images, labels)
    rows = table["regions"]
    assert rows["none"]["auc"] == pytest.approx(1.0)
    assert rows["top_corners"]["auc"] == pytest.approx(1.0) and rows["border"]["auc"] == pytest.approx(1.0)
    assert rows["outside_lungs"]["auc"] == pytest.approx(1.0)
    # Hidden, the lesion leaves only chance: the fill is the mean of what the film still shows.
    low, high = rows["lungs"]["auc_interval"]
    assert low < 0.5 < high and rows["lungs"]["auc_difference"] < -0.25
    assert table["verdict"].startswith("the model reads the lungs")


def test_paired_differences_of_the_same_scores_are_zero_and_of_a_flip_are_exact():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9])
    same = evaluation.paired_differences(labels, scores, scores, resamples=50)
    assert same["auc_difference"] == 0.0 and same["auc_difference_interval"] == (0.0, 0.0)
    flipped = evaluation.paired_differences(labels, scores, 1.0 - scores, resamples=50)
    # AUC 8/9 -> 1/9; accuracy at 0.5: 4/6 right -> 2/6.
    assert flipped["auc_difference"] == pytest.approx(1 / 9 - 8 / 9)
    assert flipped["accuracy_difference"] == pytest.approx(-2 / 6)
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    scores = np.clip(0.5 + 0.25 * (labels - 0.5) + rng.normal(0, 0.2, 80), 0, 1)
    worse = evaluation.paired_differences(labels, scores, 1.0 - scores, resamples=200)
    assert worse["auc_difference_interval"][1] < 0.0 < evaluation.roc_auc(labels, scores) - 0.5


def test_the_study_trains_its_classifiers_on_the_film_it_names():
    from covid_keras import augmentation_study

    config = augmentation_study.quick_config()
    assert config.classifier_config(0).film == "raw" and "film" not in config.to_dict()  # old study folders resume
    lungs = augmentation_study.StudyConfig(**{**config.__dict__, "film": "lungs"})
    assert lungs.classifier_config(0).film == "lungs" and lungs.to_dict()["film"] == "lungs"
    with pytest.raises(ValueError, match="film"):
        augmentation_study.StudyConfig(**{**config.__dict__, "film": "lung"})


def test_the_verdict_names_a_model_that_reads_outside_the_lungs_too():
    def row(auc, low, high, difference=None):
        return {"auc": auc, "auc_interval": (low, high),
                **({"auc_difference": difference} if difference is not None else {})}

    rows = {"none": row(0.975, 0.96, 0.99), "top_corners": row(0.938, 0.91, 0.96, -0.037),
            "border": row(0.871, 0.83, 0.91, -0.103), "text": row(0.959, 0.94, 0.98, -0.016),
            "outside_lungs": row(0.868, 0.83, 0.91, -0.107), "lungs": row(0.828, 0.78, 0.87, -0.146)}
    assert audit.verdict(rows).startswith("the model reads the lungs and what lies outside them")
    rows["lungs"] = row(0.55, 0.45, 0.65, -0.425)
    assert audit.verdict(rows).startswith("the model reads the lungs more than the source")
    rows["border"] = row(0.5, 0.4, 0.6, -0.475)
    assert audit.verdict(rows).startswith("the model reads the source")

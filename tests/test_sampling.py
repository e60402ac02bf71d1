"""Drawing images from a conditional generator, and keeping them only where a classifier agrees."""

import keras
import numpy as np
import pytest
from PIL import Image

from covid_keras import generate
from covid_keras.evaluation import embeddings as eval_embeddings
from covid_keras.evaluation import gan_report
from covid_keras.evaluation import images as eval_images
from covid_keras.gan import sampling

SIZE = 16  # SSIM, in the diversity figures, needs 11 px
NOISE_DIM = 3


def brightness_generator() -> keras.Model:
    """Flat grey images whose brightness is 0.9 * tanh(first noise value), whatever the label."""
    noise = keras.Input((NOISE_DIM,), name="noise")
    label = keras.Input((), dtype="int32", name="label")
    first = keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant([[1.0], [0.0], [0.0]]))(noise)
    ignored = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")(
        keras.ops.expand_dims(keras.ops.cast(label, "float32"), -1))
    value = keras.layers.Activation("tanh")(keras.layers.Add()([first, ignored]))
    image = keras.layers.Reshape((SIZE, SIZE, 1))(keras.layers.Dense(SIZE * SIZE, use_bias=False, kernel_initializer=keras.initializers.Constant(0.9))(value))
    return keras.Model([noise, label], image)


def brightness_classifier(steepness: float = 10.0, from_uint8: bool = False) -> keras.Model:
    """Class 1 for bright images, class 0 for dark: logits -/+ steepness * mean on [-1, 1]
    (or on [0, 255] mapped to [-1, 1], then softmax: the judge's contract)."""
    image = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(image) if from_uint8 else image
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2)
    logits = dense(x)
    dense.set_weights([np.array([[-steepness, steepness]], "float32"), np.zeros(2, "float32")])
    return keras.Model(image, keras.layers.Softmax()(logits) if from_uint8 else logits)


def label_probability(classifier, images, labels) -> np.ndarray:
    probabilities = np.asarray(keras.ops.softmax(classifier(images), axis=-1))
    return probabilities[np.arange(len(labels)), labels]


def test_unfiltered_draw_is_one_image_per_label_from_the_noise_in_order():
    generator = brightness_generator()
    labels = np.array([0, 1, 1, 0, 1])
    images, drawn = sampling.draw(generator, labels, np.random.default_rng(3), batch_size=2)
    noise = np.random.default_rng(3).standard_normal((5, NOISE_DIM)).astype(np.float32)
    np.testing.assert_allclose(images, np.asarray(generator([noise, labels])), atol=1e-6)
    assert drawn.tolist() == [2, 3]


def test_the_filter_keeps_the_first_images_the_classifier_agrees_with_and_counts_the_draws():
    generator, classifier = brightness_generator(), brightness_classifier()
    image_filter = sampling.ConfidenceFilter(classifier, min_confidence=0.8)
    labels = np.array([1, 0] * 15)
    images, drawn = sampling.draw(generator, labels, np.random.default_rng(7), batch_size=8, image_filter=image_filter)

    assert images.shape == (30, SIZE, SIZE, 1)
    assert (label_probability(classifier, images, labels) >= 0.8).all()
    assert (images[labels == 1] > 0).all() and (images[labels == 0] < 0).all()  # in the order of `labels`
    # What a hand-written rejection loop over the same noise keeps: classes in ascending order,
    # each from batches of 8, and the draws counted up to the image that completes the class.
    rng = np.random.default_rng(7)
    for label in (0, 1):
        kept, count = [], 0
        while len(kept) < 15:
            noise = rng.standard_normal((8, NOISE_DIM)).astype(np.float32)
            batch = np.asarray(generator([noise, np.full(8, label)]))
            for image, accepted in zip(batch, label_probability(classifier, batch, np.full(8, label)) >= 0.8):
                if len(kept) == 15:
                    break
                count += 1
                if accepted:
                    kept.append(image)
        np.testing.assert_allclose(images[labels == label], np.stack(kept), atol=1e-6)
        assert drawn[label] == count > 15  # about 0.47 of these flat images pass 0.8
    again, _ = sampling.draw(generator, labels, np.random.default_rng(7), batch_size=8, image_filter=image_filter)
    np.testing.assert_array_equal(images, again)


def test_a_class_the_filter_rarely_accepts_is_a_clear_error():
    # Softmax of +-1 * brightness never reaches 0.99: nothing is ever kept.
    image_filter = sampling.ConfidenceFilter(brightness_classifier(1.0), 0.99, max_draws_per_image=3, name="the guide")
    with pytest.raises(ValueError, match=r"class 0: the guide gave only 0 of 12 generated images .*\(acceptance 0\.0000"):
        sampling.draw(brightness_generator(), np.zeros(4, np.int32), np.random.default_rng(0), batch_size=4,
                      image_filter=image_filter)


@pytest.mark.parametrize("options", [{"min_confidence": 0.0}, {"min_confidence": 1.0},
                                     {"min_confidence": 0.5, "max_draws_per_image": 0}])
def test_filter_settings_are_checked(options):
    with pytest.raises(ValueError, match="min_confidence|max_draws_per_image"):
        sampling.ConfidenceFilter(brightness_classifier(), **options)


def test_written_pngs_pass_the_filter_and_keep_their_names(tmp_path):
    classifier = brightness_classifier()
    counts = generate.write_generated(
        brightness_generator(), ("dark", "bright"), 5, tmp_path, seed=1, batch_size=4, verbose=0,
        image_filter=sampling.ConfidenceFilter(classifier, 0.9),
    )
    assert counts == {"dark": 5, "bright": 5}
    for label, name in enumerate(("dark", "bright")):
        files = sorted((tmp_path / name).glob("*.png"))
        assert [f.name for f in files] == [generate.generated_file_name(1, i) for i in range(5)]
        images = np.stack([np.asarray(Image.open(f)) for f in files])[..., None].astype(np.float32) / 127.5 - 1.0
        # 8-bit rounding moves the brightness by at most 1/255: a hair under the threshold.
        assert (label_probability(classifier, images, np.full(5, label)) >= 0.9 - 0.01).all()


def test_a_filtered_evaluation_judges_only_the_kept_images_and_reports_their_share(tmp_path):
    rng = np.random.default_rng(0)
    real = {split: eval_images.LabelledImages(rng.integers(0, 256, (2 * n, SIZE, SIZE, 1), dtype=np.uint8), np.repeat([0, 1], n))
            for split, n in (("train", 12), ("validation", 6), ("test", 6))}
    judge = brightness_classifier(from_uint8=True)  # the filter's rule: whatever passes, it labels right
    settings = gan_report.EvaluationSettings(per_class=20, num_subsets=4, tstr=False, curves=False, grid_columns=4)
    extractor = eval_embeddings.build_extractor("random_conv", random_input_size=SIZE)
    options = dict(class_names=("dark", "bright"), extractor=extractor, judge=judge, settings=settings, verbose=0)

    plain = gan_report.evaluate_gan(brightness_generator(), real, **options)
    image_filter = sampling.ConfidenceFilter(brightness_classifier(), 0.8, name="the brightness rule")
    kept = gan_report.evaluate_gan(brightness_generator(), real, image_filter=image_filter, out_dir=tmp_path, **options)

    assert plain["sample_filter"] is None and 0.3 < plain["class_fidelity"]["overall"] < 0.7
    assert kept["class_fidelity"]["overall"] == 1.0
    acceptance = kept["sample_filter"]["acceptance_per_class"]
    assert set(acceptance) == {"dark", "bright"} and all(0.25 < share < 0.65 for share in acceptance.values())
    assert kept["sample_filter"]["classifier"] == "the brightness rule"
    assert "**filtered samples**" in (tmp_path / "summary.md").read_text()

"""A class-separate GAN run (covid_keras.gan.class_separate): one run per class on that class's
images, loaded back as one generator that picks each row's image by its label."""

import json

import numpy as np
import pytest

from covid_keras import data
from covid_keras.gan import class_separate
from covid_keras.gan import presets as gan_presets
from covid_keras.gan import run_dir as gan_run_dir
from covid_keras.gan import training as gan_training
from tests import tiny

TINY = dict(
    image_size=32, generator_filters=(8, 8, 8), discriminator_filters=(8,) * 5, base_channels=8, noise_dim=16,
    embedding_dim=4, batch_size=8, samples_per_class=2, sample_every=1, checkpoint_every=1, diff_augment=(),
)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    spec = data.DataSpec("phantom_small", data_dir=str(tmp_path_factory.mktemp("tfds")))
    data.prepare(spec)
    return spec


@pytest.fixture(scope="module")
def trained(spec, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "per_class"
    config = gan_presets.from_preset("per_class", epochs=1, **TINY)
    return gan_training.train_gan(config, spec, run_dir, verbose=0, precision="float32")


def test_each_class_trains_on_its_own_images_alone(trained, spec):
    parent = json.loads((trained.run_dir / gan_run_dir.CONFIG_FILE).read_text())
    assert parent["gan"]["class_separate"] is True
    pairs = data.file_names_and_labels(data.load_split(spec, "train", balanced=True))
    for label, name in enumerate(trained.class_names):
        sub_dir = gan_run_dir.class_run_dir(trained.run_dir, name)
        record = json.loads((sub_dir / gan_run_dir.CONFIG_FILE).read_text())
        assert record["gan"]["class_separate"] is False
        assert record["data"]["train_files"] == sorted(f for f, y in pairs if y == label)
        assert (sub_dir / gan_run_dir.GENERATOR_WEIGHTS).exists()
    assert trained.epochs_done == 1


def test_the_loaded_generator_draws_each_label_from_its_class_run(trained):
    generator, config, class_names = gan_training.load_generator(trained.run_dir)
    assert config.class_separate and generator.output_shape == (None, 32, 32, 1)
    noise = np.random.default_rng(0).standard_normal((4, 16)).astype("float32")
    labels = np.array([0, 1, 1, 0], np.int32)
    combined = np.asarray(generator([noise, labels]))
    for label, name in enumerate(class_names):
        own, _, _ = gan_training.load_generator(gan_run_dir.class_run_dir(trained.run_dir, name))
        expected = np.asarray(own([noise, np.full(4, label, np.int32)]))
        np.testing.assert_allclose(combined[labels == label], expected[labels == label], atol=1e-6)
    assert not np.allclose(combined[0], combined[3]) or not np.allclose(combined[1], combined[2])


def test_the_same_command_resumes_instead_of_retraining(trained, spec):
    again = gan_training.train_gan(trained.config, spec, trained.run_dir, verbose=0, precision="float32")
    assert again.initial_epoch == 1 and again.epochs_done == 1


def test_combined_generators_pick_by_label():
    templates = np.stack([np.full((32, 32, 1), v, np.uint8) for v in (30, 220)])
    # Generator 0 always paints template 0, generator 1 template 1, whatever label they are given.
    first = tiny.template_generator(templates[[0, 0]], wobble=0.0)
    second = tiny.template_generator(templates[[1, 1]], wobble=0.0)
    first.name, second.name = "g0", "g1"
    combined = class_separate.combine_generators([first, second])
    images = np.asarray(combined([np.zeros((3, 8), "float32"), np.array([1, 0, 1], np.int32)]))
    means = images.reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(means, [220 / 127.5 - 1, 30 / 127.5 - 1, 220 / 127.5 - 1], atol=1e-5)
    with pytest.raises(ValueError, match="one generator per class"):
        class_separate.combine_generators([first])


def test_a_guide_or_class_head_with_class_separate_is_refused():
    with pytest.raises(ValueError, match="class_guide_weight .* must be 0"):
        gan_presets.from_preset("per_class", class_guide_weight=10.0)
    with pytest.raises(ValueError, match="aux_class_weight"):
        gan_presets.from_preset("per_class", aux_class_weight=1.0)

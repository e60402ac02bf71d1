"""The projected discriminator (covid_keras.gan.projected): trained heads on a frozen pretrained
network's features, loaded from a local weights file, inside an ordinary GAN run."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from covid_keras import backbones, data
from covid_keras.gan import presets as gan_presets
from covid_keras.gan import projected
from covid_keras.gan import training as gan_training
from covid_keras.gan.config import GanConfig

SIZE = 32  # the images; the backbone sees them at its smallest side
TINY = dict(
    image_size=SIZE, generator_filters=(8, 8, 8), base_channels=8, noise_dim=16, embedding_dim=4, batch_size=8,
    samples_per_class=2, sample_every=1, checkpoint_every=1, diff_augment=(), discriminator_backbone_size=75,
)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A stand-in for the real weights: a seeded random InceptionV3 saved where the real file would be."""
    folder = tmp_path_factory.mktemp("weights")
    keras.utils.set_random_seed(7)
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3))
    base.save_weights(str(folder / backbones.get_backbone_spec("inception_v3").weights_file))
    return folder


def _discriminator(weights_dir, **kwargs):
    path = str(backbones.local_weights_file("inception_v3", weights_dir))
    return projected.build_projected_discriminator(SIZE, 2, "inception_v3", 75, path, head_filters=16, **kwargs)


def test_the_backbone_is_the_weights_file_and_stays_frozen(weights_dir):
    discriminator = _discriminator(weights_dir)
    features = discriminator.get_layer("inception_v3_features")
    reference = keras.applications.InceptionV3(include_top=False, weights=str(
        backbones.local_weights_file("inception_v3", weights_dir)), input_shape=(75, 75, 3))
    first_conv = next(layer for layer in features.layers if isinstance(layer, keras.layers.Conv2D))
    reference_conv = next(layer for layer in reference.layers if isinstance(layer, keras.layers.Conv2D))
    np.testing.assert_array_equal(first_conv.kernel.numpy(), reference_conv.kernel.numpy())

    trainable = {id(v) for v in discriminator.trainable_variables}
    assert trainable and not trainable & {id(v) for v in features.variables}
    images = np.random.default_rng(0).uniform(-1, 1, (4, SIZE, SIZE, 1)).astype("float32")
    labels = np.array([0, 1, 0, 1], np.int32)
    before = [v.numpy().copy() for v in features.variables]
    heads_before = [v.numpy().copy() for v in discriminator.trainable_variables]
    optimizer = keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(discriminator([images, labels], training=True))
    optimizer.apply_gradients(zip(tape.gradient(loss, discriminator.trainable_variables), discriminator.trainable_variables))
    for old, variable in zip(before, features.variables):
        np.testing.assert_array_equal(old, variable.numpy())  # BatchNorm statistics included
    assert any(not np.array_equal(old, v.numpy()) for old, v in zip(heads_before, discriminator.trainable_variables))


def test_the_logit_depends_on_the_label_and_the_aux_head_has_a_class_per_output(weights_dir):
    discriminator = _discriminator(weights_dir, auxiliary_classifier=True)
    images = np.random.default_rng(1).uniform(-1, 1, (3, SIZE, SIZE, 1)).astype("float32")
    logit_0, classes = discriminator([images, np.zeros(3, np.int32)])
    logit_1, _ = discriminator([images, np.ones(3, np.int32)])
    assert logit_0.shape == (3, 1) and classes.shape == (3, 2)
    assert not np.allclose(np.asarray(logit_0), np.asarray(logit_1))


def test_an_unknown_backbone_or_a_too_small_input_is_refused():
    with pytest.raises(ValueError, match="unknown discriminator backbone 'vgg16'"):
        projected.backbone_features("vgg16", 128)
    with pytest.raises(ValueError, match=">= 75"):
        projected.backbone_features("inception_v3", 64)
    with pytest.raises(ValueError, match="discriminator_conditioning must be 'projection'"):
        GanConfig(discriminator_backbone="inception_v3", discriminator_conditioning="concat", discriminator_norm="spectral")
    with pytest.raises(ValueError, match="discriminator_backbone must be one of"):
        GanConfig(discriminator_backbone="vgg16")


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    spec = data.DataSpec("phantom_small", data_dir=str(tmp_path_factory.mktemp("tfds")))
    data.prepare(spec)
    return spec


def test_a_projected_run_trains_resumes_and_loads_its_generator(spec, weights_dir, tmp_path):
    config = gan_presets.from_preset("projected", epochs=1, **TINY)
    run_dir = tmp_path / "projected"
    result = gan_training.train_gan(config, spec, run_dir, verbose=0, precision="float32", weights_dir=weights_dir)
    assert result.epochs_done == 1 and np.isfinite(result.history["d_loss"][-1])
    generator, loaded, _ = gan_training.load_generator(run_dir)
    assert loaded.discriminator_backbone == "inception_v3" and generator.output_shape == (None, SIZE, SIZE, 1)
    again = gan_training.train_gan(config, spec, run_dir, verbose=0, precision="float32", weights_dir=weights_dir)
    assert again.initial_epoch == 1 and again.epochs_done == 1
    for restored, trained in zip(again.gan.discriminator.weights, result.gan.discriminator.weights):
        np.testing.assert_array_equal(restored.numpy(), trained.numpy())


def test_missing_backbone_weights_are_refused_before_the_run_folder_exists(spec, tmp_path):
    config = gan_presets.from_preset("projected", epochs=1, **TINY)
    with pytest.raises(FileNotFoundError, match="inception_v3_notop_APPROX.weights.h5"):
        gan_training.train_gan(config, spec, tmp_path / "run", verbose=0, precision="float32", weights_dir=tmp_path / "none")
    assert not (tmp_path / "run").exists()


def test_the_preset_builds_at_64_px_and_trains_at_128():
    config = gan_presets.from_preset("projected")
    assert gan_training.generator_for(config).output_shape == (None, 64, 64, 1)
    # At 128 px, the preset's own networks (random backbone weights) take a whole training step.
    config = gan_presets.from_preset("projected", image_size=128, batch_size=4)
    gan = gan_training.build_gan(config)
    assert gan.generator.output_shape == (None, 128, 128, 1)
    logit, classes = gan.discriminator.output_shape
    assert logit == (None, 1) and classes == (None, 2)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 128, 128, 1)).astype("float32")
    before = [w.copy() for w in gan.generator.get_weights()]
    logs = gan.train_step((tf.constant(images), tf.constant([0, 1, 0, 1])))
    assert np.isfinite(float(logs["g_loss"])) and np.isfinite(float(logs["d_loss"]))
    assert any(not np.array_equal(a, b) for a, b in zip(before, gan.generator.get_weights()))

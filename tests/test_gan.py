"""The conditional GAN's models, train step and config (covid_keras.gan: networks, model, config, presets)."""

import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from covid_keras.evaluation import diagnostics as eval_diagnostics
from covid_keras.gan import config as gan_config
from covid_keras.gan import model as gan_model
from covid_keras.gan import networks as gan_networks
from covid_keras.gan import presets as gan_presets

TINY = dict(noise_dim=16, num_classes=2, embedding_dim=4)


def tiny_gan(size=32, d_every=3, dropout=0.0, seed=1, ema_decay=0.0):
    keras.utils.set_random_seed(seed)
    generator = gan_networks.build_generator(size, filters=(8, 8, 8), base_channels=8, **TINY)
    discriminator = gan_networks.build_discriminator(size, 2, 4, (8,) * 5, dropout=dropout)
    model = gan_model.ConditionalGAN(generator, discriminator, noise_dim=16, num_classes=2, d_every=d_every,
                                     ema_decay=ema_decay)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.SGD(0.05, momentum=0.9))
    return model


def tiny_batches(size=32, batch=4, batches=1):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch * batches, size, size, 1)).astype("float32")
    labels = np.arange(batch * batches, dtype="int32") % 2
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


@pytest.mark.parametrize("size", [32, 64])
def test_generator_and_discriminator_shapes(size):
    generator = gan_networks.build_generator(size, filters=(8, 8, 8), base_channels=8, **TINY)
    discriminator = gan_networks.build_discriminator(size, 2, 4, (8,) * 5)
    noise = np.random.default_rng(0).standard_normal((2, 16)).astype("float32")
    images = np.asarray(generator([noise, np.array([0, 1], "int32")]))
    assert images.shape == (2, size, size, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert np.asarray(discriminator([images, np.array([0, 1], "int32")])).shape == (2, 1)


@pytest.mark.parametrize("run", ["1", "2", "3"])
def test_preset_sizes_build_exactly(run):
    config = gan_presets.from_preset(run)
    generator = gan_networks.build_generator(
        config.image_size, config.noise_dim, config.num_classes, config.embedding_dim,
        config.generator_filters, config.base_channels,
    )
    discriminator = gan_networks.build_discriminator(config.image_size, config.num_classes, config.embedding_dim,
                                            config.discriminator_filters, padding=config.discriminator_padding)
    assert generator.output_shape == (None, config.image_size, config.image_size, 1)
    assert discriminator.output_shape == (None, 1)
    # The study's code: an 8x8 base map, and 13x13x64 before Flatten at 150 px ("valid" convs).
    assert generator.get_layer("noise_map").output.shape[1:3] == (8, 8)
    if config.image_size == 150:
        assert discriminator.get_layer("flatten").input.shape[1:] == (13, 13, 64)


@pytest.mark.parametrize("size", [32, 33, 64, 97, 128, 150, 224, 299, 300])
def test_upsampling_plan_reaches_every_size(size):
    base, crops = gan_networks.upsampling_plan(size, 4)
    for crop in crops:  # replay the plan: k4 s2 "valid" makes 2n + 2, minus the crop
        base = 2 * base + 2 - crop
    assert base + 1 == size


@pytest.mark.parametrize("size", [32, 33, 64, 150])
def test_resize_upsampling_builds_every_size_without_transposed_strides(size):
    generator = gan_networks.build_generator(size, filters=(8, 8, 8), base_channels=8, upsampling="resize", **TINY)
    assert generator.output_shape == (None, size, size, 1)
    strided = [layer.name for layer in generator.layers if getattr(layer, "strides", (1, 1)) != (1, 1)]
    assert strided == []  # only the final stride-1 transposed conv is left


def grid_power_share(upsampling: str) -> float:
    """Share of the generator's output power at the period-2 and period-4 frequencies, at init."""
    keras.utils.set_random_seed(0)
    generator = gan_networks.build_generator(64, filters=(32, 16, 8), base_channels=8, upsampling=upsampling, **TINY)
    noise = np.random.default_rng(0).standard_normal((32, 16)).astype("float32")
    images = np.asarray(generator([noise, np.zeros(32, "int32")]))
    return sum(eval_diagnostics.periodic_power_share(images, period) for period in eval_diagnostics.CHECKERBOARD_PERIODS)


def test_resize_upsampling_paints_no_checkerboard():
    # Random weights already show the transposed blocks' checkerboard (Odena et al. 2016).
    assert grid_power_share("transpose") > 0.2
    assert grid_power_share("resize") < 0.05


def test_impossible_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="too small for 4 upsampling blocks"):
        gan_networks.build_generator(8, filters=(8, 8, 8, 8))
    with pytest.raises(ValueError, match="base map"):
        gan_networks.build_generator(1000, filters=(8, 8, 8))
    with pytest.raises(ValueError, match="generator upsampling.*'bilinear'"):
        gan_networks.build_generator(32, filters=(8, 8, 8), upsampling="bilinear")
    with pytest.raises(ValueError, match="too small"):
        gan_networks.build_discriminator(32, 2, 4, (8,) * 5, padding="valid")
    assert gan_networks.resolve_discriminator_padding(32, 5) == "same"
    assert gan_networks.resolve_discriminator_padding(64, 5) == "valid"


def test_discriminator_steps_once_every_k_and_its_loss_is_not_diluted():
    model = tiny_gan(d_every=3)
    batch_logs = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batch_logs.append(dict(logs)))
    steps = 7
    model.fit(tiny_batches(batches=steps), epochs=1, verbose=0, callbacks=[record])
    assert int(model.step_counter.numpy()) == steps
    assert int(model.g_optimizer.iterations.numpy()) == steps
    assert int(model.d_optimizer.iterations.numpy()) == math.ceil(steps / 3)  # steps 0, 3, 6
    d_loss = [float(logs["d_loss"]) for logs in batch_logs]
    g_loss = [float(logs["g_loss"]) for logs in batch_logs]
    # Skipped steps leave D's running loss alone; G's moves every step.
    assert d_loss[0] > 0 and d_loss[1] == d_loss[2] == d_loss[0] and d_loss[3] != d_loss[0]
    assert g_loss[1] != g_loss[0]


def test_get_config_round_trip():
    model = tiny_gan(d_every=7)
    clone = gan_model.ConditionalGAN.from_config(model.get_config())
    assert clone.d_every == 7 and clone.noise_dim == 16 and clone.num_classes == 2
    assert clone.generator.count_params() == model.generator.count_params()
    assert clone.discriminator.count_params() == model.discriminator.count_params()
    assert clone.get_config()["generator"] == model.get_config()["generator"]


def test_compile_rejects_an_unknown_loss():
    model = tiny_gan()
    with pytest.raises(ValueError, match="GAN loss.*'wasserstein'"):
        model.compile(keras.optimizers.Adam(), keras.optimizers.Adam(), loss="wasserstein")


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_gan import tiny_gan, tiny_batches

    def run(strategy):
        with strategy.scope():
            model = tiny_gan(d_every=2, ema_decay=0.9)
        history = model.fit(tiny_batches(batch=4, batches=2), epochs=1, verbose=0).history
        weights = [np.asarray(v).tolist() for v in
                   model.generator.weights + model.discriminator.weights + model.ema_generator.weights]
        return {"history": history, "weights": weights, "d_updates": int(model.d_optimizer.iterations.numpy())}

    single = run(tf.distribute.get_strategy())
    mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print("RESULT" + json.dumps({"single": single, "mirrored": mirrored}))
    """
)


def test_mirrored_strategy_matches_single_device():
    """Two replicas of a global batch of 4 give the single-device losses AND updates (loss / GLOBAL batch),
    the generator's moving average included."""
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, os.path.dirname(__file__)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT", 1)[1])
    single, mirrored = result["single"], result["mirrored"]
    for key in ("g_loss", "d_loss", "d_real_accuracy", "d_fake_accuracy"):
        assert mirrored["history"][key][0] == pytest.approx(single["history"][key][0], rel=1e-4, abs=1e-5), key
    assert single["d_updates"] == mirrored["d_updates"] == 1  # step 0 of 2: D steps, step 1: undone
    for a, b in zip(single["weights"], mirrored["weights"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- config


def test_presets_follow_the_report_text():
    run1, run2, run3 = (gan_presets.from_preset(r) for r in ("1", "2", "3"))
    assert (run1.optimizer, run1.learning_rate, run1.momentum, run1.image_size, run1.batch_size) == ("sgd", 0.01, 0.9, 300, 4)
    assert set(run1.generator_filters) == {64}
    assert (run2.optimizer, run2.learning_rate, run2.image_size, run2.batch_size) == ("sgd", 0.001, 150, 8)
    assert run2.generator_filters == (256, 128, 64, 32)
    assert (run3.optimizer, run3.learning_rate, run3.beta_1, run3.image_size, run3.batch_size) == ("adam", 2e-4, 0.9, 150, 8)
    assert (run3.lr_schedule, run3.restart_epochs) == ("cosine_restarts", 10)
    assert run1.d_every == run2.d_every == run3.d_every == 10


def test_config_overrides_json_and_errors(tmp_path):
    config = gan_presets.from_preset("3", image_size=64, epochs=2, generator_filters=[8, 8])
    assert (config.image_size, config.epochs, config.generator_filters) == (64, 2, (8, 8))
    config.save(tmp_path / "c.json")
    assert gan_config.GanConfig.load(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match=r"unknown GAN run '4'.*\['1', '2', '3', 'guided', 'guided_resnet50', 'per_class', 'projected', 'stable'\]"):
        gan_presets.from_preset("4")
    with pytest.raises(ValueError, match="GanConfig.optimizer"):
        gan_presets.from_preset("3", optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown GanConfig field"):
        gan_presets.from_preset("3", colour=True)

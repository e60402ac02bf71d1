"""The stable preset's parts: DiffAugment, hinge loss, conditioning, spectral norm, EMA, AC head, precision,
the class guide."""

import dataclasses
import importlib.util
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from covid_keras import runtime
from covid_keras.evaluation import gan_report
from covid_keras.gan import callbacks as gan_callbacks
from covid_keras.gan import config as gan_config
from covid_keras.gan import diffaugment
from covid_keras.gan import guide as gan_guide
from covid_keras.gan import model as gan_model
from covid_keras.gan import networks as gan_networks
from covid_keras.gan import presets as gan_presets
from covid_keras.gan import run_dir as gan_run_dir
from covid_keras.gan import training as gan_training

SIZE = 32


def tiny_stable_config(**overrides):
    values = dict(
        image_size=SIZE, noise_dim=16, embedding_dim=4, base_channels=8, generator_filters=(8, 8, 8),
        discriminator_filters=(8, 8, 8, 8, 8), batch_size=4, epochs=1,
    )
    return gan_presets.from_preset("stable", **{**values, **overrides})


def randomize_class_affines(generator):
    """Give every class-conditional BN per-class weights (they start as the identity for all classes)."""
    for layer in generator.layers:
        if isinstance(layer, gan_networks.ClassConditionalAffine):
            layer.set_weights([np.random.default_rng(1).normal(size=w.shape) for w in layer.get_weights()])


def reals(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (batch, SIZE, SIZE, 1)).astype("float32")
    labels = (np.arange(batch) % 2).astype("int32")
    return images, labels


# --------------------------------------------------------------------------- DiffAugment


def test_each_policy_changes_images_deterministically_and_passes_gradients():
    images = tf.constant(reals()[0])
    seed = tf.constant([3, 4], tf.int64)
    assert diffaugment.diff_augment(images, (), seed) is images
    for policy in diffaugment.POLICIES:
        out = diffaugment.diff_augment(images, (policy,), seed)
        assert out.shape == images.shape
        assert not np.allclose(out, images), policy
        np.testing.assert_array_equal(out, diffaugment.diff_augment(images, (policy,), seed))  # stateless
        assert not np.allclose(out, diffaugment.diff_augment(images, (policy,), tf.constant([3, 5], tf.int64))), policy
        with tf.GradientTape() as tape:
            tape.watch(images)
            total = tf.reduce_sum(diffaugment.diff_augment(images, (policy,), seed) ** 2)
        gradient = tape.gradient(total, images)
        assert gradient is not None and float(tf.reduce_sum(tf.abs(gradient))) > 0, policy


def test_translation_moves_pixels_and_cutout_blanks_a_square():
    image = np.zeros((1, 16, 16, 1), "float32")
    image[0, 8, 8, 0] = 1.0
    seed = tf.constant([0, 1], tf.int64)
    moved = diffaugment.diff_augment(tf.constant(image), ("translation",), seed).numpy()
    assert moved.sum() in (0.0, 1.0) and moved.max() <= 1.0  # shifted (or off the edge), never duplicated
    ones = np.ones((8, 16, 16, 1), "float32")
    cut = diffaugment.diff_augment(tf.constant(ones), ("cutout",), seed).numpy()
    blanked = (cut == 0).reshape(8, -1).sum(axis=1)
    assert np.all(blanked > 0) and np.all(blanked <= 8 * 8)


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown DiffAugment policy.*'flip'"):
        diffaugment.check_policies(("color", "flip"))
    with pytest.raises(ValueError, match="diff_augment"):
        tiny_stable_config(diff_augment=("flip",))


def test_augmentation_reaches_every_discriminator_input_and_never_the_generator_output():
    config = tiny_stable_config(diff_augment=("translation", "cutout"), ema_decay=0.0)
    keras.utils.set_random_seed(0)
    model = gan_training.build_gan(config)
    images, labels = reals()
    noise, fake_labels = model._noise_and_labels(tf.constant(4), tf.constant(0, tf.int64))
    fakes_before_step = model.generator([noise, fake_labels], training=True).numpy()

    augmented, discriminated = [], []
    real_augment, real_discriminate = model.augment, model._discriminate

    def spy_augment(x, seed):
        out = real_augment(x, seed)
        augmented.append((np.asarray(x), np.asarray(out)))
        return out

    model.augment = spy_augment
    model._discriminate = lambda x, y: discriminated.append(np.asarray(x)) or real_discriminate(x, y)
    model.train_step((tf.constant(images), tf.constant(labels)))

    # G's step (its fakes), D's step (reals, then the same fakes): three inputs, each augmented.
    assert len(discriminated) == len(augmented) == 3
    for (before, after), seen in zip(augmented, discriminated):
        np.testing.assert_array_equal(seen, after)
        assert not np.allclose(before, after)
    np.testing.assert_array_equal(augmented[1][0], images)
    # What reached the augmentation from the generator is its plain output, in both steps.
    np.testing.assert_allclose(augmented[0][0], fakes_before_step, atol=1e-6)
    np.testing.assert_allclose(augmented[2][0], fakes_before_step, atol=1e-6)
    # And sampling is not augmented: the same inputs give the same image twice.
    first, second = (model([noise, fake_labels]).numpy() for _ in range(2))
    np.testing.assert_array_equal(first, second)


# --------------------------------------------------------------------------- losses and layers


def test_hinge_and_bce_losses():
    real, fake = tf.constant([[2.0], [0.5]]), tf.constant([[-0.5], [1.0]])
    hinge = gan_model.GanLoss("hinge")
    real_loss, fake_loss = hinge.discriminator(real, fake)
    np.testing.assert_allclose(real_loss, [0.0, 0.5])
    np.testing.assert_allclose(fake_loss, [0.5, 2.0])
    np.testing.assert_allclose(hinge.generator(fake), [0.5, -1.0])
    bce = gan_model.GanLoss("bce")
    real_loss, fake_loss = bce.discriminator(real, fake)
    np.testing.assert_allclose(real_loss, -np.log(1 / (1 + np.exp(-np.array([2.0, 0.5])))), rtol=1e-6)
    np.testing.assert_allclose(fake_loss, -np.log(1 - 1 / (1 + np.exp(-np.array([-0.5, 1.0])))), rtol=1e-6)


def test_class_conditioning_separates_labels():
    config = tiny_stable_config()
    keras.utils.set_random_seed(0)
    generator, discriminator = gan_training.generator_for(config), gan_training.discriminator_for(config)
    randomize_class_affines(generator)
    noise = np.random.default_rng(0).normal(size=(2, 16)).astype("float32")
    same_noise = np.repeat(noise[:1], 2, axis=0)
    out = generator([same_noise, np.array([0, 1], "int32")], training=False).numpy()
    assert not np.allclose(out[0], out[1])
    image = np.repeat(reals(1)[0], 2, axis=0)
    logit, class_logits = discriminator([image, np.array([0, 1], "int32")], training=False)
    assert logit.shape == (2, 1) and class_logits.shape == (2, 2)
    assert not np.isclose(float(logit[0, 0]), float(logit[1, 0]))  # the projection term
    np.testing.assert_allclose(class_logits[0], class_logits[1], rtol=1e-5)  # the class head sees the image only
    assert any(isinstance(layer, keras.layers.SpectralNormalization) for layer in discriminator.layers)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in discriminator.layers)


def test_aux_weight_needs_an_auxiliary_head():
    generator = gan_networks.build_generator(SIZE, 16, 2, 4, (8, 8, 8), base_channels=8)
    discriminator = gan_networks.build_discriminator(SIZE, 2, 4, (8,) * 5)
    with pytest.raises(ValueError, match="auxiliary_classifier"):
        gan_model.ConditionalGAN(generator, discriminator, 16, 2, aux_class_weight=1.0)


def test_ema_generator_averages_the_weights():
    config = tiny_stable_config(ema_decay=0.05, diff_augment=())  # below the warm-up's 1/10 at step 0
    keras.utils.set_random_seed(0)
    model = gan_training.build_gan(config)
    assert model.sampling_generator is model.ema_generator
    before = [w.numpy().copy() for w in model.generator.trainable_weights]
    np.testing.assert_array_equal(model.ema_generator.trainable_weights[0].numpy(), before[0])
    images, labels = reals()
    model.train_step((tf.constant(images), tf.constant(labels)))
    after = [w.numpy() for w in model.generator.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(after, before))
    for ema, a, b in zip(model.ema_generator.trainable_weights, after, before):
        np.testing.assert_allclose(ema.numpy(), 0.95 * a + 0.05 * b, rtol=1e-5, atol=1e-6)


def test_stable_run_saves_the_ema_generator_and_logs_class_accuracy(tmp_path):
    from covid_keras import data

    config = tiny_stable_config(epochs=1, batch_size=8)
    result = gan_training.train_gan(config, data.DataSpec.parse("phantom_small"), tmp_path / "run", verbose=0)
    assert {"d_class_accuracy", "g_class_accuracy"} <= set(result.history)
    assert "g_guide_accuracy" not in result.history
    loaded, loaded_config, _ = gan_training.load_generator(tmp_path / "run")
    assert gan_report.run_class_guide(tmp_path / "run", loaded_config) is None  # an evaluation reports no guide
    assert gan_report.run_class_guide(tmp_path / "run", None) is None  # another layout: no GanConfig
    with pytest.raises(ValueError, match="without a class guide"):
        gan_training.class_guide_filter(tmp_path / "run", 0.9)
    assert loaded_config.ema_decay == config.ema_decay
    noise = np.random.default_rng(0).normal(size=(2, config.noise_dim)).astype("float32")
    labels = np.array([0, 1], "int32")
    np.testing.assert_allclose(
        loaded([noise, labels]).numpy(), result.gan.ema_generator([noise, labels]).numpy(), atol=1e-6
    )


def test_stable_preset_runs_unchanged_at_150px():
    config = gan_presets.from_preset("stable", image_size=150, batch_size=2)
    keras.utils.set_random_seed(0)
    model = gan_training.build_gan(config)
    assert model.generator.output_shape == (None, 150, 150, 1)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 150, 150, 1)).astype("float32")
    logs = model.train_step((tf.constant(images), tf.constant([0, 1], tf.int32)))
    assert all(np.isfinite(float(v)) for v in logs.values())


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_images_and_logits_float32(precision):
    config = tiny_stable_config()
    model = gan_training.build_gan(config, precision=precision)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")
    assert model.generator.layers[-2].compute_dtype == precision.split("_")[1]  # the last deconv computes in low precision
    images, labels = reals()
    logs = model.train_step((tf.constant(images), tf.constant(labels)))
    assert all(np.isfinite(float(v)) for v in logs.values())
    noise = np.zeros((1, config.noise_dim), "float32")
    assert model([noise, np.array([0], "int32")]).dtype == "float32"
    logit, class_logits = model.discriminator([images, labels])
    assert logit.dtype == "float32" and class_logits.dtype == "float32"


def test_runtime_defaults_and_errors():
    assert runtime.resolve("auto", "auto") == (
        runtime.choose_precision("gan").precision, runtime.DEFAULTS[runtime.hardware()[0]]["jit_compile"]
    )
    assert runtime.resolve("mixed_bfloat16", True) == ("mixed_bfloat16", True)
    with pytest.raises(ValueError, match="precision"):
        runtime.resolve("float8")
    with pytest.raises(ValueError, match="jit_compile"):
        runtime.resolve("float32", "yes")


def test_stable_generator_exports_for_serving(tmp_path):
    from covid_keras import export

    config = tiny_stable_config()
    keras.utils.set_random_seed(0)
    generator = gan_training.generator_for(config)
    randomize_class_affines(generator)
    result = export.export_generator(generator, class_names=["Normal", "COVID"], name="stable", base_dir=tmp_path)
    serving = tf.saved_model.load(str(result.path)).signatures[export.GENERATE_BY_INDEX]
    images = serving(label=tf.constant([0, 1], tf.int32), seed=tf.constant([7, 7], tf.int64))["image"].numpy()
    assert images.shape == (2, SIZE, SIZE, 1) and images.dtype == np.uint8
    assert not np.array_equal(images[0], images[1])  # same noise, different class: class-conditional BN is exported
    noise = tf.random.stateless_normal([config.noise_dim], seed=[7, 0])[tf.newaxis]
    expected = generator([tf.repeat(noise, 2, axis=0), tf.constant([0, 1], tf.int32)], training=False).numpy()
    expected = np.round(np.clip((expected + 1.0) * 127.5, 0, 255)).astype(np.uint8)
    assert np.abs(images.astype(int) - expected.astype(int)).max() <= 1


def test_minibatch_stddev_exposes_a_collapsed_batch():
    layer = gan_networks.MinibatchStddev()
    same = np.repeat(np.random.default_rng(0).normal(size=(1, 4, 4, 3)).astype("float32"), 4, axis=0)
    varied = np.random.default_rng(1).normal(size=(4, 4, 4, 3)).astype("float32")
    collapsed, spread = layer(same).numpy(), layer(varied).numpy()
    assert collapsed.shape == (4, 4, 4, 4)
    np.testing.assert_allclose(collapsed[..., :3], same)
    assert collapsed[..., 3].max() < 1e-3 < 0.5 < spread[..., 3].min()
    discriminator = gan_training.discriminator_for(tiny_stable_config(minibatch_std=True))
    assert any(isinstance(layer, gan_networks.MinibatchStddev) for layer in discriminator.layers)


def test_discriminator_learning_rate_multiplier():
    model = gan_training.build_gan(tiny_stable_config(learning_rate=1e-4, d_lr_multiplier=4.0))
    assert float(model.g_optimizer.learning_rate) == pytest.approx(1e-4)
    assert float(model.d_optimizer.learning_rate) == pytest.approx(4e-4)
    with pytest.raises(ValueError, match="d_lr_multiplier"):
        tiny_stable_config(d_lr_multiplier=0.0)


def test_a_run_stopped_at_an_epoch_keeps_a_grid_and_resumes_to_its_end(tmp_path):
    from covid_keras import data

    config = tiny_stable_config(epochs=3, batch_size=8, sample_every=10)
    spec, run = data.DataSpec.parse("phantom_small"), tmp_path / "run"
    first = gan_training.train_gan(config, spec, run, verbose=0, until_epoch=2)
    assert first.epochs_done == 2 and gan_run_dir.completed_epochs(run) == 2
    assert [p.name for p in (run / gan_run_dir.SAMPLES_DIR).glob("*.png")] == ["epoch_00002.png"]  # the stop's grid
    steps_after_two = int(first.gan.step_counter.numpy())
    rest = gan_training.train_gan(config, spec, run, verbose=0)  # the same command without the stop
    assert (rest.initial_epoch, rest.epochs_done) == (2, 3)
    assert int(rest.gan.step_counter.numpy()) == steps_after_two * 3 // 2
    with pytest.raises(ValueError, match="until_epoch"):
        gan_training.train_gan(config, spec, run, verbose=0, until_epoch=0)


def test_time_budget_stops_at_the_end_of_the_epoch_that_crosses_it():
    class Model:  # what the callback touches
        stop_training = False

    budget = gan_callbacks.TimeBudget(0.0)
    budget.set_model(Model())
    budget.on_train_begin()
    budget.on_epoch_end(4)
    assert budget.model.stop_training and budget.stopped_at == 5
    generous = gan_callbacks.TimeBudget(3600.0)
    generous.set_model(Model())
    generous.on_train_begin()
    generous.on_epoch_end(0)
    assert not generous.model.stop_training and generous.stopped_at is None


def test_under_several_workers_the_chiefs_clock_stops_them_all(monkeypatch):
    """A worker whose own budget is spent keeps going while the chief's is not (and stops when the chief's is)."""
    class Model:
        stop_training = False

    chiefs_answer = {"over": 0}
    monkeypatch.setattr(gan_callbacks.distribute, "chief_value", lambda strategy, value: chiefs_answer["over"])
    budget = gan_callbacks.TimeBudget(0.0, strategy=object())
    budget.set_model(Model())
    budget.on_train_begin()
    budget.on_epoch_end(0)
    assert not budget.model.stop_training
    chiefs_answer["over"] = 1
    budget.on_epoch_end(1)
    assert budget.model.stop_training and budget.stopped_at == 2


# --------------------------------------------------------------------------- class guide


def constant_guide(logits=(2.0, 0.0)):
    """A class guide whose logits are `logits` whatever the image (its last layer: zero kernel, that bias)."""
    guide = gan_guide.build_class_guide(SIZE, 2, filters=(4, 4))
    last = guide.get_layer("guide_logits")
    last.set_weights([np.zeros_like(last.get_weights()[0]), np.asarray(logits, "float32")])
    return guide


def guided_pair(guide, weight, **guide_options):
    """Two GANs with the same generator and discriminator weights, one of them guided by `guide`
    (`guide_options`: the rest of ClassGuideTerm's arguments)."""
    config = tiny_stable_config(ema_decay=0.0)
    keras.utils.set_random_seed(0)
    plain = gan_training.build_gan(config)
    guided = gan_model.ConditionalGAN(
        keras.models.clone_model(plain.generator), keras.models.clone_model(plain.discriminator),
        config.noise_dim, 2, config.d_every, config.seed, diff_augment=config.diff_augment,
        aux_class_weight=config.aux_class_weight, guide_term=gan_guide.ClassGuideTerm(guide, weight, **guide_options),
    )
    guided.generator.set_weights(plain.generator.get_weights())
    guided.discriminator.set_weights(plain.discriminator.get_weights())
    guided.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3), loss=config.loss)
    plain.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3), loss=config.loss)
    return plain, guided


def test_class_guide_adds_its_weighted_cross_entropy_on_the_fakes_to_the_generator_loss():
    weight = 2.5
    plain, guided = guided_pair(constant_guide((2.0, 0.0)), weight)
    images, labels = reals()
    plain_logs = plain.train_step((tf.constant(images), tf.constant(labels)))
    guided_logs = guided.train_step((tf.constant(images), tf.constant(labels)))
    _, fake_labels = guided._noise_and_labels(tf.constant(4), tf.constant(0, tf.int64))
    fake_labels = fake_labels.numpy()
    # Constant logits (2, 0): cross-entropy log(1 + e^-2) for label 0, log(1 + e^2) for label 1.
    cross_entropy = np.where(fake_labels == 0, np.log1p(np.exp(-2.0)), np.log1p(np.exp(2.0))).mean()
    assert float(guided_logs["g_loss"]) - float(plain_logs["g_loss"]) == pytest.approx(weight * cross_entropy, rel=1e-4)
    assert float(guided_logs["g_guide_accuracy"]) == pytest.approx(np.mean(fake_labels == 0))
    assert "g_guide_accuracy" not in plain_logs


def test_class_guide_steers_the_generator_and_is_never_trained_by_the_gan():
    keras.utils.set_random_seed(3)
    guide = gan_guide.build_class_guide(SIZE, 2, filters=(4, 4))
    guide_before = [w.copy() for w in guide.get_weights()]
    plain, guided = guided_pair(guide, 1.0)
    assert guided.class_guide.trainable is False
    images, labels = reals()
    plain.train_step((tf.constant(images), tf.constant(labels)))
    guided.train_step((tf.constant(images), tf.constant(labels)))
    for before, after in zip(guide_before, guide.get_weights()):
        np.testing.assert_array_equal(before, after)
    differs = [not np.allclose(a, b) for a, b in zip(plain.generator.get_weights(), guided.generator.get_weights())]
    assert any(differs)  # the guide's gradient reached the generator
    restored = gan_model.ConditionalGAN.from_config(guided.get_config())
    assert restored.guide_term.weight == 1.0 and restored.class_guide is restored.guide_term.network


def test_a_class_guide_term_needs_a_positive_weight():
    with pytest.raises(ValueError, match="class_guide_weight"):
        gan_guide.ClassGuideTerm(constant_guide(), 0.0)
    with pytest.raises(ValueError, match="class_guide_weight"):
        tiny_stable_config(class_guide_weight=-1.0)
    assert gan_training.build_gan(tiny_stable_config()).guide_term is None


def test_guide_feature_matching_compares_each_classes_mean_and_spread():
    _, guided = guided_pair(constant_guide(), 1.0)
    match = lambda fake, fake_labels, real, real_labels: float(guided.guide_term.feature_matching(  # noqa: E731
        tf.constant(fake, tf.float32), tf.constant(fake_labels), tf.constant(real, tf.float32), tf.constant(real_labels)))
    rng = np.random.default_rng(0)
    real = rng.normal(size=(8, 5))
    labels = np.array([0, 1] * 4, "int32")
    assert match(real, labels, real, labels) == pytest.approx(0.0, abs=1e-6)
    # Class 0's features shifted by 0.5: (0.5^2 for class 0 + 0 for class 1) / 2 classes.
    shifted = real + np.where(labels[:, None] == 0, 0.5, 0.0)
    assert match(shifted, labels, real, labels) == pytest.approx(0.125, rel=1e-4)
    # Class 1's spread doubled about its mean: (sd_fake - sd_real)^2 = sd_real^2, averaged.
    class_1 = real[labels == 1]
    spread = real.copy()
    spread[labels == 1] = class_1.mean(0) + 2 * (class_1 - class_1.mean(0))
    expected = np.mean(class_1.std(0) ** 2) / 2
    assert match(spread, labels, real, labels) == pytest.approx(expected, rel=1e-3)
    # A class that only one batch holds is left out, not compared with zeros.
    only_0 = np.zeros(8, "int32")
    assert match(real[labels == 0].repeat(2, 0), only_0, real, labels) == pytest.approx(
        match(real[labels == 0], labels[labels == 0], real, labels), rel=1e-5)


def test_a_feature_matching_guide_steers_the_generator_and_is_never_trained():
    keras.utils.set_random_seed(3)
    guide = gan_guide.build_class_guide(SIZE, 2, filters=(4, 4))
    guide_before = [w.copy() for w in guide.get_weights()]
    plain, guided = guided_pair(guide, 1.0, loss="feature_matching")
    images, labels = reals()
    plain_logs = plain.train_step((tf.constant(images), tf.constant(labels)))
    guided_logs = guided.train_step((tf.constant(images), tf.constant(labels)))
    assert float(guided_logs["g_loss"]) > float(plain_logs["g_loss"])  # random fakes are not real statistics
    assert 0.0 <= float(guided_logs["g_guide_accuracy"]) <= 1.0
    for before, after in zip(guide_before, guide.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.allclose(a, b) for a, b in zip(plain.generator.get_weights(), guided.generator.get_weights()))
    assert gan_model.ConditionalGAN.from_config(guided.get_config()).guide_term.loss == "feature_matching"
    config = tiny_stable_config(class_guide_weight=1.0, class_guide_loss="feature_matching")
    assert gan_training.build_gan(config).guide_term.loss == "feature_matching"
    with pytest.raises(ValueError, match="class_guide_loss"):
        tiny_stable_config(class_guide_loss="kl_divergence")
    with pytest.raises(ValueError, match="class_guide_loss"):
        gan_guide.ClassGuideTerm(guide, 1.0, loss="kl_divergence")


def load_script(path):
    module_spec = importlib.util.spec_from_file_location(path.stem + "_script", path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    return script


def test_a_guided_run_trains_its_guide_once_and_resumes_with_it(tmp_path, project_root):
    from covid_keras import data

    config = tiny_stable_config(epochs=1, batch_size=8, class_guide_weight=1.0)
    spec = data.DataSpec.parse("phantom_small")
    result = gan_training.train_gan(config, spec, tmp_path / "run", verbose=0)
    report = json.loads((tmp_path / "run" / gan_run_dir.GUIDE_REPORT).read_text())
    # Phantom classes differ in plain sight: a guide that learnt nothing would sit at 0.5.
    assert report["val_accuracy"] >= 0.75 and 1 <= report["best_epoch"] <= report["epochs_run"]
    assert "g_guide_accuracy" in result.history
    assert gan_report.run_class_guide(tmp_path / "run", result.config) == {"weight": 1.0, "loss": "cross_entropy", **report}
    trained = result.gan.class_guide.get_weights()

    keras.utils.set_random_seed(0)
    fresh = gan_training.build_gan(dataclasses.replace(config, num_classes=result.config.num_classes))
    assert not all(np.allclose(a, b) for a, b in zip(fresh.class_guide.get_weights(), trained))
    assert gan_training.restore_train_state(fresh, tmp_path / "run") == 1
    for a, b in zip(fresh.class_guide.get_weights(), trained):
        np.testing.assert_array_equal(a, b)  # the guide travels in the resume point
    written = (tmp_path / "run" / gan_run_dir.GUIDE_REPORT).stat().st_mtime_ns
    gan_training.train_gan(config, spec, tmp_path / "run", verbose=0)  # finished: nothing is retrained
    assert (tmp_path / "run" / gan_run_dir.GUIDE_REPORT).stat().st_mtime_ns == written

    # The guide alone, for filtering samples: from its own file, or from the resume point of older runs.
    for_filtering = gan_training.load_class_guide(tmp_path / "run")
    generator, _, class_names = gan_training.load_generator(tmp_path / "run")
    labels = np.repeat([0, 1], 32).astype("int32")
    unfiltered = generator([np.random.default_rng(0).standard_normal((64, config.noise_dim)).astype("float32"), labels])
    label_probability = lambda images, labels: np.asarray(keras.ops.softmax(for_filtering(images)))[np.arange(len(labels)), labels]  # noqa: E731
    # A threshold half of each class's samples pass, whatever this one epoch taught the generator.
    threshold = float(min(np.median(label_probability(unfiltered, labels)[labels == label]) for label in (0, 1)))
    out = tmp_path / "kept"
    assert load_script(project_root / "scripts" / "generate.py").main([
        "--run-dir", str(tmp_path / "run"), "--per-class", "4", "--out", str(out), "--min-guide-confidence", str(threshold),
    ]) == 0
    for label, name in enumerate(class_names):
        written = [np.asarray(keras.utils.load_img(f, color_mode="grayscale")) for f in sorted((out / name).glob("*.png"))]
        assert len(written) == 4
        images = np.stack(written)[..., None].astype("float32") / 127.5 - 1.0
        assert (label_probability(images, np.full(4, label)) >= threshold - 0.02).all()  # 8-bit rounding aside
    (tmp_path / "run" / gan_run_dir.GUIDE_WEIGHTS).unlink()
    from_train_state = gan_training.load_class_guide(tmp_path / "run")
    for a, b, c in zip(for_filtering.get_weights(), from_train_state.get_weights(), trained):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
    (tmp_path / "run" / gan_run_dir.CHECKPOINT_DIR / gan_run_dir.STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="no class guide"):
        gan_training.load_class_guide(tmp_path / "run")


def test_class_guide_weight_starts_late_and_ramps_up():
    late = gan_guide.ClassGuideTerm(constant_guide(), 2.0, start_step=3, ramp_steps=2)
    weights = [float(late.weight_at(tf.constant(step, tf.int64))) for step in range(7)]
    np.testing.assert_allclose(weights, [0, 0, 0, 2 / 3, 4 / 3, 2, 2], rtol=1e-6)
    with pytest.raises(ValueError, match="class_guide_start_step"):
        gan_guide.ClassGuideTerm(constant_guide(), 1.0, start_step=-1)
    config = tiny_stable_config(class_guide_weight=1.0, class_guide_from_epoch=2, class_guide_ramp_epochs=3)
    built = gan_training.build_gan(config, steps_per_epoch=10)
    assert (built.guide_term.start_step, built.guide_term.ramp_steps) == (20, 30)
    with pytest.raises(ValueError, match="class_guide_ramp_epochs"):
        tiny_stable_config(class_guide_ramp_epochs=-1)


def test_a_run_can_start_from_another_runs_weights(tmp_path):
    from covid_keras import data

    spec = data.DataSpec.parse("phantom_small")
    source = gan_training.train_gan(tiny_stable_config(batch_size=8), spec, tmp_path / "source", verbose=0)
    config = dataclasses.replace(source.config, class_guide_weight=1.0)
    fresh = gan_training.build_gan(config)
    assert gan_training.initialise_from_run(fresh, tmp_path / "source") == 1
    for mine, theirs in [(fresh.generator, source.gan.generator), (fresh.discriminator, source.gan.discriminator),
                         (fresh.ema_generator, source.gan.ema_generator)]:
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert int(fresh.step_counter.numpy()) == 0 and int(fresh.g_optimizer.iterations.numpy()) == 0

    other = gan_training.build_gan(dataclasses.replace(source.config, generator_filters=(8, 8, 16)))
    with pytest.raises(ValueError, match="source.*does not fit"):
        gan_training.initialise_from_run(other, tmp_path / "source")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        gan_training.initialise_from_run(fresh, tmp_path / "empty")

    result = gan_training.train_gan(tiny_stable_config(batch_size=8), spec, tmp_path / "run", verbose=0,
                                    init_from=tmp_path / "source")
    assert result.epochs_done == 1
    assert json.loads((tmp_path / "run" / gan_run_dir.INIT_REPORT).read_text()) == {
        "run_dir": str(tmp_path / "source"), "epoch": 1}
    record = json.loads((tmp_path / "run" / gan_run_dir.CONFIG_FILE).read_text())
    assert record["init_from"] == str(tmp_path / "source")


def test_guide_accuracy_names_the_split_it_was_measured_on():
    assert gan_guide.guide_accuracy({"val_accuracy": 0.9, "train_accuracy": 0.8}) == (0.9, "validation")
    assert gan_guide.guide_accuracy({"val_accuracy": None, "train_accuracy": 0.8}) == (0.8, "train")


# --------------------------------------------------------------------------- mode seeking


def seeking_gan(weight):
    config = tiny_stable_config(ema_decay=0.0, mode_seeking_weight=weight)
    keras.utils.set_random_seed(0)
    model = gan_training.build_gan(config)
    randomize_class_affines(model.generator)
    return model


def test_mode_seeking_pairs_the_fakes_labels_only_when_it_is_on():
    step = tf.constant(5, tf.int64)
    noise, labels = seeking_gan(1.0)._noise_and_labels(tf.constant(7), step)
    plain_noise, plain_labels = seeking_gan(0.0)._noise_and_labels(tf.constant(7), step)
    np.testing.assert_array_equal(noise, plain_noise)  # the same draw, so runs without it are unchanged
    labels, plain_labels = labels.numpy(), plain_labels.numpy()
    np.testing.assert_array_equal(labels[:3], plain_labels[:3])
    np.testing.assert_array_equal(labels[3:6], labels[:3])  # fake i and fake i + 3 share a label
    assert labels[6] == plain_labels[6]  # an odd batch's last fake has no partner


def test_mode_seeking_ratio_is_image_distance_over_noise_distance():
    model = seeking_gan(1.0)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(5, 16)).astype("float32")
    fakes = rng.uniform(-1, 1, (5, SIZE, SIZE, 1)).astype("float32")
    expected = np.abs(fakes[:2] - fakes[2:4]).mean() / np.abs(noise[:2] - noise[2:4]).mean()
    ratio = float(model._mode_seeking_ratio(tf.constant(noise), tf.constant(fakes)))
    assert ratio == pytest.approx(expected, rel=1e-5)
    collapsed = np.concatenate([fakes[:2], fakes[:2], fakes[4:]])
    assert float(model._mode_seeking_ratio(tf.constant(noise), tf.constant(collapsed))) == 0.0
    assert float(model._mode_seeking_loss(tf.constant(0.5))) == pytest.approx(1 / (0.5 + 1e-5))


def test_mode_seeking_adds_its_weighted_term_to_the_generator_loss_and_steers_it():
    images, labels = reals()
    weak, strong = seeking_gan(1.0), seeking_gan(10.0)
    noise, fake_labels = weak._noise_and_labels(tf.constant(4), tf.constant(0, tf.int64))
    fakes = weak.generator([noise, fake_labels], training=True).numpy()
    expected_ratio = np.abs(fakes[:2] - fakes[2:]).mean() / np.abs(noise.numpy()[:2] - noise.numpy()[2:]).mean()
    weak_logs = weak.train_step((tf.constant(images), tf.constant(labels)))
    strong_logs = strong.train_step((tf.constant(images), tf.constant(labels)))
    ratio = float(weak_logs["g_mode_seeking_ratio"])
    assert ratio == pytest.approx(expected_ratio, rel=1e-4)  # measured on the fakes before the update
    assert float(strong_logs["g_mode_seeking_ratio"]) == pytest.approx(ratio, rel=1e-5)
    # Same weights, noise and labels: the losses differ by 9 times the term alone.
    gap = float(strong_logs["g_loss"]) - float(weak_logs["g_loss"])
    assert gap == pytest.approx(9.0 / (ratio + 1e-5), rel=1e-3)
    assert any(not np.allclose(a, b) for a, b in zip(weak.generator.get_weights(), strong.generator.get_weights()))
    assert "g_mode_seeking_ratio" not in seeking_gan(0.0).train_step((tf.constant(images), tf.constant(labels)))


def test_mode_seeking_weight_is_configured_checked_and_saved():
    model = seeking_gan(2.0)
    assert model.mode_seeking_weight == 2.0
    assert gan_model.ConditionalGAN.from_config(model.get_config()).mode_seeking_weight == 2.0
    config = tiny_stable_config(mode_seeking_weight=2.0)
    assert gan_config.GanConfig.from_json(config.to_json()).mode_seeking_weight == 2.0
    with pytest.raises(ValueError, match="mode_seeking_weight"):
        tiny_stable_config(mode_seeking_weight=-1.0)
    with pytest.raises(ValueError, match="pairs of fakes: batch_size"):
        tiny_stable_config(mode_seeking_weight=1.0, batch_size=1)  # one fake has no partner: the ratio is 0 / 0
    with pytest.raises(ValueError, match="mode_seeking_weight"):
        gan_model.ConditionalGAN(model.generator, model.discriminator, 16, 2, mode_seeking_weight=-0.5)


def test_mode_seeking_needs_a_pair_of_fakes_on_every_replica():
    config = tiny_stable_config(mode_seeking_weight=1.0, batch_size=6)
    gan_training._check_mode_seeking_pairs(config, replicas=3)  # two fakes per replica: one pair each
    with pytest.raises(ValueError, match=r"each of the 4 replicas: batch_size \(6\).*>= 8"):
        gan_training._check_mode_seeking_pairs(config, replicas=4)
    gan_training._check_mode_seeking_pairs(dataclasses.replace(config, mode_seeking_weight=0.0), replicas=4)


def test_generator_upsampling_is_configured_checked_and_saved():
    config = tiny_stable_config(generator_upsampling="resize")
    assert gan_config.GanConfig.from_json(config.to_json()).generator_upsampling == "resize"
    generator = gan_training.generator_for(config)
    assert any(layer.name.endswith("_upsample") for layer in generator.layers)
    with pytest.raises(ValueError, match="generator_upsampling"):
        tiny_stable_config(generator_upsampling="bilinear")


def test_guided_preset_is_stable_plus_the_guide_mode_seeking_and_resize():
    stable, guided = gan_presets.from_preset("stable"), gan_presets.from_preset("guided")
    differences = {f.name for f in dataclasses.fields(stable) if getattr(stable, f.name) != getattr(guided, f.name)}
    assert differences == {"class_guide_weight", "class_guide_loss", "class_guide_from_epoch",
                           "class_guide_ramp_epochs", "mode_seeking_weight", "generator_upsampling"}
    assert (guided.class_guide_loss, guided.generator_upsampling) == ("feature_matching", "resize")
    assert guided.class_guide_weight > 0 and guided.mode_seeking_weight > 0

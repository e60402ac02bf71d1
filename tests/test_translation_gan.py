"""The image-editing GAN: shapes, D stepping every K calls, and the sampler picking other-class sources."""

import numpy as np
import pytest
import tensorflow as tf

from covid_keras.gan import translation as tg

SIZE = 16


def tiny_config(**overrides):
    values = dict(image_size=SIZE, filters=(4, 8), residual_blocks=1, discriminator_filters=(8, 8, 8), batch_size=4)
    return tg.TranslationConfig(**{**values, **overrides})


def batch():
    rng = np.random.default_rng(0)
    return (tf.constant(rng.uniform(-1, 1, (4, SIZE, SIZE, 1)).astype(np.float32)), tf.constant([0, 1, 0, 1], tf.int32))


def test_discriminator_steps_once_every_k_calls():
    model = tg.build_translation_gan(tiny_config(d_every=3))
    images, labels = batch()
    changed = []
    for _ in range(4):
        before = int(model.d_optimizer.iterations.numpy())
        logs = model.train_step((images, labels))
        changed.append(int(model.d_optimizer.iterations.numpy()) > before)
    assert changed == [True, False, False, True]  # steps 0 and 3
    assert np.isfinite(float(logs["g_loss"])) and float(logs["identity_l1"]) >= 0


def test_edits_keep_shape_and_range_and_the_sampler_edits_other_class_bank_images():
    translator = tg.build_translator(SIZE, 2, (4, 8), 1)
    bank = np.stack([np.full((SIZE, SIZE, 1), v, np.float32) for v in (-0.5, -0.5, 0.5)])  # two of class 0, one of 1
    picker = tg.SourcePicker(bank, np.array([0, 0, 1]), 2)
    noise = np.random.default_rng(1).standard_normal((64, 2)).astype(np.float32)
    to_class_1 = picker([noise, np.ones(64, np.int32)]).numpy()
    to_class_0 = picker([noise, np.zeros(64, np.int32)]).numpy()
    assert np.all(to_class_1 == -0.5) and np.all(to_class_0 == 0.5)  # the source is always of another class
    sampler = tg.source_sampler(translator, bank, np.array([0, 0, 1]), 2)
    out = sampler([noise, np.ones(64, np.int32)]).numpy()
    assert out.shape == (64, SIZE, SIZE, 1) and out.min() >= -1 and out.max() <= 1


def test_config_refuses_sizes_the_levels_cannot_halve():
    with pytest.raises(ValueError, match="divide"):
        tg.TranslationConfig(image_size=30, filters=(8, 16, 32))

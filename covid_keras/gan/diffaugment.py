"""DiffAugment (Zhao et al. 2020): differentiable augmentation of every discriminator input. Grey images.

A discriminator that sees a few thousand real images memorises them and its gradients stop
helping the generator. Augmenting EVERY input of the discriminator (real and generated, in its
own step and in the generator's) with transforms that gradients flow through keeps it from
memorising without teaching the generator to produce augmented images: the generator's output is
never augmented, only what the discriminator sees of it.

Policies, each drawn independently per image, on images in [-1, 1]:
    "color"        brightness + U(-0.5, 0.5), then contrast x U(0.5, 1.5) about the image mean
    "translation"  shift by up to 1/8 of the size in x and y; uncovered pixels become 0
    "cutout"       a square of half the size at a random place is set to 0

Randomness is stateless: `seed` is a [2] int tensor, so a resumed or distributed run draws
exactly what the original draws.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from covid_keras.gan.config import DIFF_AUGMENT_POLICIES as POLICIES

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def check_policies(policies: Sequence[str]) -> tuple[str, ...]:
    """The policies as a tuple; ValueError naming an unknown one."""
    policies = tuple(policies)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown}; choose from {POLICIES}")
    return policies


def diff_augment(images: tf.Tensor, policies: Sequence[str], seed: tf.Tensor) -> tf.Tensor:
    """`images` [B, H, W, C] with each policy applied in order; the identity for no policies."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), len(POLICIES))
    for policy in check_policies(policies):
        images = _APPLY[policy](images, seeds[POLICIES.index(policy)])
    return images


def _color(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    brightness_seed, contrast_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    batch = tf.shape(images)[0]
    shape = [batch, 1, 1, 1]
    images = images + tf.random.stateless_uniform(shape, brightness_seed, -0.5, 0.5, dtype=images.dtype)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    contrast = tf.random.stateless_uniform(shape, contrast_seed, 0.5, 1.5, dtype=images.dtype)
    return (images - mean) * contrast + mean


def _shifted_indices(size: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """[B, size] indices into an axis padded by one zero on each side: i - shift, or a pad where it falls off."""
    index = tf.range(size)[tf.newaxis, :] - shift[:, tf.newaxis]
    return tf.clip_by_value(index, -1, size) + 1


def _translation(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    max_shift = tf.cast(tf.round(tf.cast(height, tf.float32) * TRANSLATION_RATIO), tf.int32)
    shifts = tf.random.stateless_uniform([2, batch], seed, -max_shift, max_shift + 1, dtype=tf.int32)
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    rows = tf.gather(padded, _shifted_indices(height, shifts[0]), axis=1, batch_dims=1)
    return tf.gather(rows, _shifted_indices(width, shifts[1]), axis=2, batch_dims=1)


def _cutout(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    half = tf.cast(tf.round(tf.cast(height, tf.float32) * CUTOUT_RATIO / 2), tf.int32)
    where = tf.random.stateless_uniform([2, batch], seed)
    centre_y = tf.cast(where[0] * tf.cast(height, tf.float32), tf.int32)
    centre_x = tf.cast(where[1] * tf.cast(width, tf.float32), tf.int32)
    rows = tf.abs(tf.range(height)[tf.newaxis, :] - centre_y[:, tf.newaxis]) >= half  # [B, H]: outside the square
    cols = tf.abs(tf.range(width)[tf.newaxis, :] - centre_x[:, tf.newaxis]) >= half
    keep = tf.logical_or(rows[:, :, tf.newaxis], cols[:, tf.newaxis, :])
    return images * tf.cast(keep, images.dtype)[..., tf.newaxis]


_APPLY = {"color": _color, "translation": _translation, "cutout": _cutout}

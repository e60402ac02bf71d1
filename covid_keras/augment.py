"""Augmentation on the classifier's side (the GAN's DiffAugment is covid_keras.gan.diffaugment):

- `RandomBlur`: a classifier layer that blurs training images at random, so a classifier trained
  on generated images cannot lean on pixel-scale texture real images do not have;
- `ClassicAugmenter`: seeded offline copies of real images (flip, rotation, shift, zoom,
  brightness, contrast), the augmentation practitioners already use, against which the
  augmentation study measures the GAN.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="covid_keras")
class RandomBlur(keras.layers.Layer):
    """In training, each image is blurred by a Gaussian whose sigma is drawn per image from
    `levels` evenly spaced values in [0, max_sigma] (0: left as it is); at inference, the identity.

    A classifier trained on generated images can separate them by fine texture that no real image
    has (the samples' speckle, a faint grid); random blur makes that texture unreliable, so it has
    to learn the coarser shapes, which real images share. Images [B, H, W, C], any value range;
    borders are zero-padded, so a blurred image darkens towards 0 within 3 sigma of its edge.
    """

    def __init__(self, max_sigma: float, levels: int = 4, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if max_sigma <= 0 or levels < 2:
            raise ValueError(f"RandomBlur needs max_sigma > 0 and levels >= 2, got {max_sigma}, {levels}")
        self.max_sigma, self.levels, self.seed = float(max_sigma), int(levels), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._kernels = [gaussian_kernel_1d(sigma) for sigma in np.linspace(0.0, max_sigma, levels)[1:]]

    def call(self, images, training=None):
        if not training:
            return images
        versions = [images]
        for kernel in self._kernels:  # separable: rows, then columns; each channel on its own
            blurred = keras.ops.depthwise_conv(images, self._tiled(kernel.reshape(-1, 1), images), padding="same")
            versions.append(keras.ops.depthwise_conv(blurred, self._tiled(kernel.reshape(1, -1), images), padding="same"))
        level = keras.random.randint((keras.ops.shape(images)[0],), 0, self.levels, seed=self.seed_generator)
        choice = keras.ops.transpose(keras.ops.one_hot(level, self.levels, dtype=images.dtype))  # [levels, B]
        return keras.ops.sum(keras.ops.stack(versions) * choice[:, :, None, None, None], axis=0)

    @staticmethod
    def _tiled(kernel: np.ndarray, images):
        channels = images.shape[-1]
        return keras.ops.convert_to_tensor(np.tile(kernel[:, :, None, None], (1, 1, channels, 1)), dtype=images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_sigma": self.max_sigma, "levels": self.levels, "seed": self.seed}


def gaussian_kernel_1d(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian, float32, out to 3 sigma."""
    radius = max(int(np.ceil(3 * sigma)), 1)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-x**2 / (2 * sigma**2))
    return (kernel / kernel.sum()).astype(np.float32)


class ClassicAugmenter:
    """Offline copies of real images, the augmentation every practitioner already uses: a left-right
    flip (half the copies), a small rotation, a shift, a zoom, brightness and contrast, from Keras
    preprocessing layers with fixed seeds.

    `copies(images, k)` returns k augmented copies of every image (uint8 grey [N, H, W, 1] in,
    uint8 [k, N, H, W, 1] out); the same images, k and seed give the same copies, and copy j of
    an image does not depend on how many copies are asked for. The copies are ordinary images, so
    a frozen backbone's features of them can be computed once and cached.
    """

    def __init__(self, rotation_degrees: float = 5.0, shift: float = 0.05, zoom: float = 0.1,
                 brightness: float = 0.1, contrast: float = 0.1, seed: int = 0):
        self.settings = {"rotation_degrees": float(rotation_degrees), "shift": float(shift), "zoom": float(zoom),
                         "brightness": float(brightness), "contrast": float(contrast), "seed": int(seed)}

    def _layers(self, copy_index: int) -> keras.Sequential:
        s = self.settings
        seed = s["seed"] * 10_007 + copy_index * 101
        return keras.Sequential([
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(s["rotation_degrees"] / 360.0, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomTranslation(s["shift"], s["shift"], fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomZoom(s["zoom"], s["zoom"], fill_mode="nearest", seed=seed + 3),
            keras.layers.RandomBrightness(s["brightness"], value_range=(0, 255), seed=seed + 4),
            keras.layers.RandomContrast(s["contrast"], seed=seed + 5),
        ], name=f"classic_augmentation_{copy_index}")

    def copies(self, images: np.ndarray, count: int, batch_size: int = 64) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images [N, H, W, C], got {images.dtype} {images.shape}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        out = np.zeros((count,) + images.shape, np.uint8)
        for copy_index in range(count):
            layers = self._layers(copy_index)
            for start in range(0, len(images), batch_size):
                batch = tf.constant(images[start : start + batch_size], tf.float32)
                augmented = layers(batch, training=True)
                out[copy_index, start : start + batch_size] = np.clip(np.round(np.asarray(augmented)), 0, 255)
        return out

    def describe(self) -> dict:
        return {"kind": "keras preprocessing layers: RandomFlip(horizontal), RandomRotation, RandomTranslation, "
                        "RandomZoom, RandomBrightness, RandomContrast", **self.settings}

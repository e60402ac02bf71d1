"""Grey images as numpy arrays for the GAN evaluation: uint8 conversion and resizing, labelled sets, the real splits, and drawing a generator's samples."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras.gan import sampling

SPLITS = ("train", "validation", "test")




def to_uint8_images(images: np.ndarray) -> np.ndarray:
    """Grey images as uint8 [N, H, W, 1].

    uint8 input passes through; float input must be generator output in [-1, 1] and is mapped
    the way generated PNGs are written, so metrics see what a folder of samples would hold.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"expected grey images [N, H, W, 1], got shape {images.shape}")
    if images.dtype == np.uint8:
        return images
    if images.size and (images.min() < -1.001 or images.max() > 1.001):
        raise ValueError(
            "float images must be generator output in [-1, 1]; got range "
            f"[{images.min():.3g}, {images.max():.3g}] (pass uint8 for [0, 255] images)"
        )
    return sampling.to_uint8(images)


def resize_grey(images: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """uint8 [N, H, W, 1] -> uint8 [N, size, size, 1] (area-averaged when shrinking)."""
    images = to_uint8_images(images)
    if images.shape[1:3] == (size, size):
        return images
    out = []
    for start in range(0, len(images), batch_size):
        batch = tf.image.resize(
            tf.cast(images[start : start + batch_size], tf.float32),
            (size, size),
            method="bilinear",
            antialias=True,
        )
        out.append(np.clip(np.round(batch.numpy()), 0, 255).astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0, size, size, 1), np.uint8)


def generate_images(
    generator: keras.Model, labels: np.ndarray, seed: int | Sequence[int] = 0, batch_size: int = 100,
    image_filter: sampling.ConfidenceFilter | None = None,
) -> np.ndarray:
    """uint8 [N, S, S, 1] from a generator with inputs [noise [B, noise_dim], label [B]], kept
    by `image_filter` when given (`sampling.draw`).

    Noise is standard normal, seeded (an int or a sequence of ints, as numpy's `default_rng`
    takes), so the same call gives the same images.
    """
    images, _ = sampling.draw(generator, labels, np.random.default_rng(seed), batch_size, image_filter)
    return to_uint8_images(images)


def balanced_labels(num_classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(num_classes, dtype=np.int32), per_class)


@dataclasses.dataclass
class LabelledImages:
    images: np.ndarray  # uint8 [N, S, S, 1]
    labels: np.ndarray  # int64 [N]

    def __post_init__(self):
        self.images = to_uint8_images(self.images)
        self.labels = np.asarray(self.labels, np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def per_class_counts(self, class_names: Sequence[str]) -> dict:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(class_names)}

    def resized(self, size: int) -> "LabelledImages":
        return LabelledImages(resize_grey(self.images, size), self.labels)


def load_real_splits(spec, image_size: int, splits: Sequence[str] = SPLITS) -> dict[str, LabelledImages]:
    """Real images of a `data.DataSpec` per split, through the GAN's own input pipeline
    (`data.gan_dataset`, unshuffled), so real and generated images are resized and scaled alike."""
    from covid_keras import data  # imported here: tests of the core need no dataset

    out = {}
    for split in splits:
        batches = data.gan_dataset(
            data.load_split(spec, split), image_size, batch_size=256, shuffle_seed=None, cache=False,
            drop_remainder=False,
        )
        images, labels = [], []
        for batch_images, batch_labels in batches.as_numpy_iterator():
            images.append(to_uint8_images(batch_images))
            labels.append(batch_labels)
        if not images:
            raise ValueError(f"real split {split!r} of {spec} is empty")
        out[split] = LabelledImages(np.concatenate(images), np.concatenate(labels))
    return out

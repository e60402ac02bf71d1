"""Drawing labelled images from a conditional generator, optionally kept only where a classifier agrees.

A `ConfidenceFilter` is rejection sampling: a generated image is kept only when a classifier
trained on real images (a guided run's class guide) gives its conditioning label at least
`min_confidence`. It trades generator calls for samples whose class a real-data classifier
recognises. It selects; it does not make the generator better, so whatever judges the kept
images must be another network than the filter.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output, floats in [-1, 1] (tanh), as the uint8 [0, 255] a written PNG holds."""
    return np.clip(np.round((np.asarray(images, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class ConfidenceFilter:
    classifier: keras.Model  # images [B, S, S, 1] in [-1, 1] (the generator's range) -> class logits
    min_confidence: float
    # Below an acceptance of 1 / max_draws_per_image a class is given up with an error instead of
    # drawing for ever: a generator that rarely makes the class is not one to filter.
    max_draws_per_image: int = 50
    name: str = "classifier"  # what the reports call it

    def __post_init__(self):
        if not 0.0 < self.min_confidence < 1.0:
            raise ValueError(f"min_confidence must lie in (0, 1), got {self.min_confidence}")
        if self.max_draws_per_image < 1:
            raise ValueError(f"max_draws_per_image must be >= 1, got {self.max_draws_per_image}")

    def keep(self, images, labels: np.ndarray) -> np.ndarray:
        """Boolean mask: the classifier's softmax probability of each image's label >= min_confidence."""
        probabilities = np.asarray(keras.ops.softmax(self.classifier(images, training=False), axis=-1))
        return probabilities[np.arange(len(labels)), labels] >= self.min_confidence

    def describe(self) -> dict:
        return {"classifier": self.name, "min_confidence": self.min_confidence,
                "max_draws_per_image": self.max_draws_per_image}


def draw(
    generator: keras.Model,
    labels: np.ndarray,
    rng: np.random.Generator,
    batch_size: int = 100,
    image_filter: ConfidenceFilter | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, S, S, 1] in [-1, 1] in the order of `labels`, images drawn per class [C]).

    Noise is standard normal from `rng`. Unfiltered, it is drawn in the order of `labels`, one
    image per label. Filtered, each class in turn (ascending) draws batches of `batch_size` until
    it has as many kept images as `labels` asks for; a ValueError names the class whose acceptance
    falls below 1 / max_draws_per_image.
    """
    labels = np.asarray(labels, np.int32)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    noise_dim = int(generator.inputs[0].shape[-1])
    drawn = np.bincount(labels, minlength=int(labels.max(initial=-1)) + 1)
    if image_filter is None:
        batches = []
        for start in range(0, len(labels), batch_size):
            batch_labels = labels[start : start + batch_size]
            noise = rng.standard_normal((len(batch_labels), noise_dim)).astype(np.float32)
            batches.append(np.asarray(generator([noise, batch_labels], training=False)))
        return _concatenate(batches, generator), drawn

    out = np.zeros((len(labels),) + tuple(generator.output_shape[1:]), np.float32)
    for label in np.flatnonzero(drawn):
        wanted = int(drawn[label])
        kept, drawn[label] = _draw_kept(generator, int(label), wanted, rng, batch_size, image_filter, noise_dim)
        out[labels == label] = kept
    return out, drawn


def _draw_kept(generator, label, wanted, rng, batch_size, image_filter, noise_dim) -> tuple[np.ndarray, int]:
    kept, total, drawn = [], 0, 0
    batch_labels = np.full((batch_size,), label, np.int32)
    while total < wanted:
        if drawn >= image_filter.max_draws_per_image * wanted:
            raise ValueError(
                f"class {label}: {image_filter.name} gave only {total} of {drawn} generated images a "
                f"probability >= {image_filter.min_confidence} of their class (acceptance {total / drawn:.4f}, below "
                f"1/{image_filter.max_draws_per_image}); lower min_confidence or train the generator further"
            )
        noise = rng.standard_normal((batch_size, noise_dim)).astype(np.float32)
        images = np.asarray(generator([noise, batch_labels], training=False))
        accepted = np.flatnonzero(image_filter.keep(images, batch_labels))[: wanted - total]
        kept.append(images[accepted])
        total += len(accepted)
        # Counted up to the image that completed the class, so kept / drawn is the acceptance.
        drawn += int(accepted[-1]) + 1 if total == wanted else batch_size
    return np.concatenate(kept), drawn


def _concatenate(batches: list[np.ndarray], generator: keras.Model) -> np.ndarray:
    if batches:
        return np.concatenate(batches).astype(np.float32, copy=False)
    return np.zeros((0,) + tuple(generator.output_shape[1:]), np.float32)

"""Feature extractors for KID and the judges: ImageNet InceptionV3 / ResNet50 / VGG16 (exact local weights, or Keras's) or a seeded random conv net, each recording which weights it used."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from covid_keras.backbones import default_weights_dir, get_backbone_spec
from covid_keras.choices import KID_EXTRACTORS
from covid_keras.evaluation.images import to_uint8_images


@dataclasses.dataclass
class EmbeddingExtractor:
    """A frozen image -> vector map; `describe()` is what the report records."""

    name: str
    model: keras.Model
    input_size: int
    preprocess: Callable[[np.ndarray], np.ndarray]  # float RGB in [0, 255] -> model input
    weights: str  # a file path, "imagenet", or "seeded-random(seed=...)"
    exact_weights: bool  # False for random or approximate weights
    note: str = ""

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights": self.weights,
            "exact_weights": self.exact_weights,
            "input_size": self.input_size,
            "feature_dim": int(self.model.output_shape[-1]),
            "note": self.note,
        }

    def features(self, images: np.ndarray, batch_size: int = 32, verbose: bool = False) -> np.ndarray:
        """Grey images (uint8, or float in [-1, 1]) -> float64 features [N, D]."""
        images = to_uint8_images(images)
        progress = keras.utils.Progbar(len(images), unit_name="image") if verbose else None
        out = []
        for start in range(0, len(images), batch_size):
            batch = tf.image.resize(
                tf.cast(images[start : start + batch_size], tf.float32),
                (self.input_size, self.input_size),
                method="bilinear",
                antialias=True,
            )
            rgb = tf.image.grayscale_to_rgb(batch)
            x = self.preprocess(rgb.numpy())
            out.append(np.asarray(self.model(x, training=False), dtype=np.float64))
            if progress is not None:
                progress.add(len(x))
        dim = int(self.model.output_shape[-1])
        return np.concatenate(out) if out else np.zeros((0, dim))


def build_random_conv_model(input_size: int = 64, seed: int = 0) -> keras.Model:
    """Four strided convolutions with fixed seeded random weights, average-pooled to 256 features.

    Weight-free and deterministic: for tests and as the last fallback. Random conv features
    still separate textures and shapes, but values are not comparable with ImageNet KIDs.
    """
    inputs = keras.Input((input_size, input_size, 3))
    x = inputs
    for i, filters in enumerate((32, 64, 128, 256)):
        x = keras.layers.Conv2D(
            filters,
            3,
            strides=2,
            padding="same",
            activation="relu",
            kernel_initializer=keras.initializers.HeNormal(seed=seed + i),
            bias_initializer="zeros",
            name=f"random_conv{i + 1}",
        )(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, outputs, name="random_conv")


# ImageNet extractors: pooled features of the backbone's last conv block at its native size.
IMAGENET_INPUT_SIZES = {"inception_v3": 299, "resnet50": 224, "vgg16": 224}
EXTRACTORS = KID_EXTRACTORS
# Keras' own cache file for InceptionV3 ImageNet weights (present only where it was downloaded once).
KERAS_INCEPTION_CACHE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _keras_cached_inception() -> pathlib.Path | None:
    keras_home = os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras"))
    path = pathlib.Path(keras_home) / "models" / KERAS_INCEPTION_CACHE
    return path if path.is_file() else None


def _local_weights(path: pathlib.Path) -> tuple[str, bool, str]:
    """-> (path, exact?, note): files named *APPROX* are not ImageNet-exact (see backbones)."""
    if "APPROX" in path.name:
        return str(path), False, "APPROXIMATE weights: not ImageNet-exact, KIDs not comparable with published ones"
    return str(path), True, ""


def _resolve_imagenet_weights(name: str, weights: str | None, weights_dir: pathlib.Path):
    """-> (weights argument for keras, exact?, note). Raises when nothing usable exists."""
    if weights == "imagenet":
        return "imagenet", True, "keras.applications ImageNet weights"
    if weights is not None:
        if not pathlib.Path(weights).is_file():
            raise FileNotFoundError(f"extractor weights file not found: {weights}")
        return _local_weights(pathlib.Path(weights))
    if name == "inception_v3" and _keras_cached_inception() is not None:
        return str(_keras_cached_inception()), True, "keras-cached ImageNet InceptionV3"
    local = weights_dir / get_backbone_spec(name).weights_file
    if local.is_file():
        return _local_weights(local)
    raise FileNotFoundError(
        f"no weights for extractor {name!r}: none given, and {local} does not exist "
        "(pass --extractor-weights FILE or 'imagenet', or choose another extractor)"
    )


def build_extractor(
    name: str = "auto",
    weights: str | None = None,
    weights_dir: str | os.PathLike | None = None,
    random_input_size: int = 64,
    seed: int = 0,
    input_size: int | None = None,
) -> EmbeddingExtractor:
    """A feature extractor by name.

    name: "inception_v3" | "resnet50" | "vgg16" | "random_conv" | "auto". "auto" takes
    ImageNet InceptionV3 when Keras has its exact weights cached, else the exact local
    ResNet50, then VGG16 weights (in `weights_dir`), else the seeded random conv net; the local
    InceptionV3 file is approximate, so "auto" never picks it.
    weights: a weights file, or "imagenet" (Keras downloads it; needs internet).
    input_size: the side images are resized to for an ImageNet network (default: its native size).
    """
    weights_dir = pathlib.Path(weights_dir) if weights_dir else default_weights_dir()
    if name == "auto":
        return _build_auto_extractor(weights, weights_dir, random_input_size, seed)
    if name == "random_conv":
        if weights is not None:
            raise ValueError("the random_conv extractor takes no weights (it is seeded)")
        return EmbeddingExtractor(
            name="random_conv",
            model=build_random_conv_model(random_input_size, seed),
            input_size=random_input_size,
            preprocess=lambda x: x / 127.5 - 1.0,
            weights=f"seeded-random(seed={seed})",
            exact_weights=False,
            note="weight-free fallback; KIDs only comparable with the same extractor and seed",
        )
    if name not in IMAGENET_INPUT_SIZES:
        raise ValueError(f"unknown extractor {name!r}; choose one of auto, {', '.join(EXTRACTORS)}")
    keras_weights, exact, note = _resolve_imagenet_weights(name, weights, weights_dir)
    spec = get_backbone_spec(name)
    size = int(input_size or IMAGENET_INPUT_SIZES[name])
    if size < spec.min_size:
        raise ValueError(f"{name} needs inputs of at least {spec.min_size} px, got {size}")
    model = spec.constructor(
        include_top=False, weights=keras_weights, input_shape=(size, size, 3), pooling="avg"
    )
    model.trainable = False
    return EmbeddingExtractor(name, model, size, spec.preprocess, keras_weights, exact, note)


def _build_auto_extractor(weights, weights_dir, random_input_size, seed) -> EmbeddingExtractor:
    if weights is not None:
        raise ValueError("a weights file belongs to one network: name the extractor too (e.g. resnet50)")
    if _keras_cached_inception() is not None:
        return build_extractor("inception_v3", None, weights_dir)
    for name in ("resnet50", "vgg16"):
        local = weights_dir / get_backbone_spec(name).weights_file
        if local.is_file():
            extractor = build_extractor(name, str(local), weights_dir)
            extractor.note = "auto: ImageNet InceptionV3 weights not available; exact local weights used"
            return extractor
    warnings.warn(f"no ImageNet weights in {weights_dir}: KID uses the seeded random_conv extractor")
    extractor = build_extractor("random_conv", None, weights_dir, random_input_size, seed)
    extractor.note = f"auto: no ImageNet weights found in {weights_dir}; " + extractor.note
    return extractor

"""The frozen backbone's features: the cut model (optionally behind `DegradeResolution`), computed once per dataset and cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Iterable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from covid_keras import data, runtime
from covid_keras.film import FilmStandardisation
from covid_keras.film import definition as film_definition
from covid_keras.backbones import BackboneSpec, get_backbone_spec

# The study's training presets (reference-facts.md, "Classifiers").
from covid_keras.classifier.config import (
    FEATURE_BATCH_SIZE,
    STUDY_IMAGE_SIZE,
    WEIGHTS_TOOL,
    WeightsInfo,
    check_image_size,
    file_sha256,
    resolve_weights_file,
    weights_values_sha256,
)


def _build_cut_base(spec: BackboneSpec, image_size: int, weights) -> tuple[keras.Model, str, str | None]:
    """The full notop backbone with its weights loaded: (model, weights name, weights file)."""
    input_shape = (image_size, image_size, 3)
    if weights is None or weights == "none":
        return spec.constructor(include_top=False, weights=None, input_shape=input_shape), "none", None
    if weights == "imagenet":
        try:
            base = spec.constructor(include_top=False, weights="imagenet", input_shape=input_shape)
        except Exception as error:  # no network, blocked storage, broken download cache, ...
            raise RuntimeError(
                f"could not get the ImageNet weights of {spec.name} from Keras ({error}). "
                f"Without internet access, build local weight files with `{WEIGHTS_TOOL}` and pass "
                f"that directory (or DIR/{spec.weights_file}) as the weights"
            ) from error
        return base, "imagenet", None
    path = resolve_weights_file(weights, spec)
    base = spec.constructor(include_top=False, weights=None, input_shape=input_shape)
    # Convolution weights do not depend on the input size, so a file built at 224 or 299
    # loads into a backbone of any allowed size.
    try:
        base.load_weights(str(path))
    except Exception as error:
        raise ValueError(f"{path} does not hold {spec.name} notop weights: {error}") from error
    return base, "file", str(path.resolve())


@keras.saving.register_keras_serializable(package="covid_keras")
class DegradeResolution(keras.layers.Layer):
    """[B, S, S, C] -> the same images brought down to `size` px (antialiased) and back up to S (bilinear).

    Resizing is linear and the backbones' preprocessing subtracts a constant per channel, so
    degrading after the preprocessing is the same as before it. Inside a saved classifier it makes
    any full-size image look as a `size`-px one does, whatever produced it.
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, images):
        full = tf.shape(images)[1:3]
        small = tf.image.resize(images, (self.size, self.size), method="bilinear", antialias=True)
        return tf.cast(tf.image.resize(small, full, method="bilinear"), images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size}


class FeatureSet(NamedTuple):
    features: np.ndarray  # float32 [N, h, w, c]: the backbone's output at the cut layer
    labels: np.ndarray  # float32 [N]: 1.0 is COVID

    def concatenate(self, other: "FeatureSet") -> "FeatureSet":
        return FeatureSet(np.concatenate([self.features, other.features]), np.concatenate([self.labels, other.labels]))


class FeatureExtractor:
    """A frozen backbone cut at the study's layer, with the record of its weights."""

    def __init__(self, backbone: str, image_size: int = STUDY_IMAGE_SIZE, weights: str | None = "imagenet",
                 degrade_to: int | None = None, precision: str = "float32", film: str = "raw"):
        """precision: the Keras dtype policy the backbone computes in (`runtime.choose_precision("features")`
        picks it for the machine); the weights stay float32 and so do the features it returns."""
        if precision not in runtime.PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(runtime.PRECISIONS)}, got {precision!r}")
        self.spec = get_backbone_spec(backbone)
        check_image_size(self.spec, image_size)
        self.image_size = image_size
        self.degrade_to = degrade_to
        self.film = film
        self.precision = precision
        with runtime.precision_policy(precision):
            base, name, path = _build_cut_base(self.spec, image_size, weights)
            self.model = keras.Model(
                base.input, base.get_layer(self.spec.cut_layer).output, name=f"{backbone}_{self.spec.cut_layer}"
            )
            if degrade_to is not None:
                image = keras.Input((image_size, image_size, 3), name="preprocessed_image")
                degraded = DegradeResolution(degrade_to, name=f"degrade_to_{degrade_to}px")(image)
                self.model = keras.Model(image, self.model(degraded), name=f"{self.model.name}_from_{degrade_to}px")
            if film != "raw":
                image = keras.Input((image_size, image_size, 3), name="preprocessed_image")
                seen = FilmStandardisation(film, backbone, name=f"film_{film}")(image)
                self.model = keras.Model(image, self.model(seen), name=f"{self.model.name}_on_{film}_films")
        self.model.trainable = False
        self._partial_models: dict[str, keras.Model] = {}
        self.weights_info = WeightsInfo(
            name=name,
            path=path,
            sha256=file_sha256(path) if path else None,
            values_sha256=weights_values_sha256(self.model),
        )

    @property
    def backbone(self) -> str:
        return self.spec.name

    def in_float32(self) -> "FeatureExtractor":
        """This extractor computing in float32 with the same weights (itself when it already does).

        Saved classifiers are built on it: a model trained on a bfloat16 CPU then serves at float32
        speed on CPUs without bfloat16 instructions, where bfloat16 is emulated and far slower.
        """
        if self.precision == "float32":
            return self
        copy = FeatureExtractor(self.backbone, self.image_size, weights=None, degrade_to=self.degrade_to, film=self.film)
        copy.model.set_weights(self.model.get_weights())  # the variables are float32 under either policy
        copy.model.trainable = self.model.trainable
        for source, target in zip(self.model.layers, copy.model.layers):
            target.trainable = source.trainable  # unfrozen by fine-tuning, or not
        copy.weights_info = self.weights_info
        return copy

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.output.shape[1:])

    def up_to(self, layer: str | None = None) -> keras.Model:
        """Preprocessed image -> the output of `layer` (default: the cut layer), sharing this backbone's layers."""
        if layer is None or layer == self.spec.cut_layer:
            return self.model
        if layer not in self._partial_models:
            self._partial_models[layer] = keras.Model(self.model.input, self.model.get_layer(layer).output)
        return self._partial_models[layer]

    def extract(self, batches: Iterable, verbose: int = 1, layer: str | None = None) -> FeatureSet:
        """Features (the output of `layer`, default the cut layer) of (preprocessed images, labels) batches, in order."""
        model = self.up_to(layer)
        progress = keras.utils.Progbar(None, unit_name="batch", verbose=verbose)
        features, labels = [], []
        for images, batch_labels in batches:
            features.append(np.asarray(model.predict_on_batch(images), dtype=np.float32))
            labels.append(np.asarray(batch_labels, dtype=np.float32).reshape(-1))
            progress.add(1)
        if not features:
            raise ValueError("the dataset is empty: no features to extract")
        return FeatureSet(np.concatenate(features), np.concatenate(labels))

    def features(
        self,
        examples: tf.data.Dataset,
        cache: FeatureCache | None = None,
        batch_size: int = FEATURE_BATCH_SIZE,
        verbose: int = 1,
        layer: str | None = None,
    ) -> FeatureSet:
        """Features (at `layer`, default the cut layer) of TFDS-style examples ({"image", "label", ...}),
        through `cache` if given. Only the frozen backbone may be cached: fine-tuning reads the
        features below the layers it trains."""

        def compute() -> FeatureSet:
            batches = data.classifier_dataset(examples, self.backbone, self.image_size, batch_size, shuffle=False)
            return self.extract(batches, verbose=verbose, layer=layer)

        if cache is None:
            return compute()
        return cache.get_or_compute(self.cache_key(examples, layer), compute)

    def cache_key(self, examples: tf.data.Dataset, layer: str | None = None) -> str:
        identity = {
            "format": 1,
            "backbone": self.backbone,
            "cut_layer": layer or self.spec.cut_layer,
            "image_size": self.image_size,
            "weights_values_sha256": self.weights_info.values_sha256,
            "examples_sha256": examples_fingerprint(examples),
        }
        if self.degrade_to is not None:  # absent otherwise, so earlier caches keep their keys
            identity["degrade_to"] = self.degrade_to
        if self.film != "raw":  # likewise
            identity["film"] = {"mode": self.film, **film_definition()}
        if self.precision != "float32":  # likewise; and bfloat16 features never pass for float32 ones
            identity["precision"] = self.precision
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def examples_fingerprint(examples: tf.data.Dataset) -> str:
    """sha256 over every example's pixels, label and file name, in order.

    One pass over the raw images: cheap next to a backbone pass, and it makes a cache hit
    mean exactly the same data, whatever config, folder or generated images produced it.
    """
    digest = hashlib.sha256()
    for example in examples.as_numpy_iterator():
        image = np.ascontiguousarray(example["image"])
        digest.update(str(image.shape).encode())
        digest.update(image.tobytes())
        digest.update(str(int(example["label"])).encode())
        digest.update(bytes(example.get("file_name", b"")))
    return digest.hexdigest()


class FeatureCache:
    """Backbone features by cache key: in memory, and in DIR/<key>.npz when a directory is given.

    Keep one cache for a whole experiment: validation and test features are then computed
    once per backbone, not once per seed or per setting.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = pathlib.Path(directory) if directory is not None else None
        self._memory: dict[str, FeatureSet] = {}
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> pathlib.Path:
        return self.directory / f"{key}.npz"

    def get_or_compute(self, key: str, compute) -> FeatureSet:
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        found = self._load(key)
        if found is None:
            self.misses += 1
            found = compute()
            self._store(key, found)
        else:
            self.hits += 1
        self._memory[key] = found
        return found

    def _load(self, key: str) -> FeatureSet | None:
        if self.directory is None or not self._path(key).is_file():
            return None
        try:
            with np.load(self._path(key)) as stored:
                return FeatureSet(stored["features"], stored["labels"])
        except (OSError, ValueError, KeyError):
            return None  # a truncated or foreign file: recompute and overwrite it

    def _store(self, key: str, feature_set: FeatureSet) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f"{key}.partial-{os.getpid()}.npz"  # workers of one cluster may write at once
        np.savez(partial, features=feature_set.features, labels=feature_set.labels)
        os.replace(partial, self._path(key))  # readers never see a half-written file

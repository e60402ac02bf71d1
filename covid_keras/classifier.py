"""Frozen-backbone COVID classifiers: the study's cut backbones, a small head, the feature cache.

A classifier is a backbone cut where the study cut it (`backbones.BACKBONES`) followed by
the head Flatten -> Dense 1024 ReLU -> Dense 64 ReLU -> Dense 1 sigmoid. Its input is the
image already passed through the backbone's `preprocess_input`; its output is P(COVID).

With the backbone frozen its output never changes, so features are computed once per
dataset (`FeatureExtractor.features`, optionally cached in memory and on disk by a
`FeatureCache`) and only the head is trained on them. The assembled model
(`assemble_classifier`) shares its layers with the extractor and the head, so it predicts
exactly what head(features) predicts. Fine-tuning (`fine_tune_layers > 0`) then trains
the top of the backbone together with the head; where one tensor feeds that top, on cached
features of the layer below it, so the frozen layers still run once per split.

Typical use from Python::

    cache = FeatureCache("runs/features")
    trained = train_classifier(ClassifierConfig("vgg16", weights="/work/weights"),
                               {"train": train_ds, "validation": val_ds, "test": test_ds},
                               cache=cache)
    trained.metrics["test"]["accuracy"]
    save_classifier(trained, "runs/vgg16")
    model, metadata = load_classifier("runs/vgg16")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Iterable, Mapping, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from covid_keras import data, evaluation, plots
from covid_keras.backbones import BackboneSpec, get_backbone_spec
from covid_keras.labels import BINARY_CLASSES, POSITIVE_CLASS

# The study's training presets (reference-facts.md, "Classifiers").
STUDY_IMAGE_SIZE = 150
STUDY_EPOCHS = 3
STUDY_BATCH_SIZE = 8
STUDY_OPTIMIZER = "adam"

FEATURE_BATCH_SIZE = 32  # batch for backbone inference; no effect on the numbers
PREDICT_BATCH_SIZE = 256  # batch for the head alone on cached features
HEAD_UNITS = (1024, 64)
SPLITS = ("train", "validation", "test")

MODEL_FILE = "model.keras"
METADATA_FILE = "classifier.json"
ROC_FILE = "roc.png"
METADATA_FORMAT_VERSION = 1
WEIGHTS_TOOL = "python ../shared/tools/backbone_weights.py DIR"

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    try:
        optimizer_class = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}") from None
    return optimizer_class(learning_rate=learning_rate)


def check_image_size(spec: BackboneSpec, image_size: int) -> None:
    if image_size < spec.min_size:
        raise ValueError(f"image_size {image_size} is too small for {spec.name}: its minimum is {spec.min_size}")


KEEP_EPOCH = ("last", "best_validation")


@dataclasses.dataclass
class ClassifierConfig:
    """Everything that decides a classifier run; defaults are the study's presets.

    weights: "imagenet", a local weights file, a directory holding the backbone's
    `weights_file` (as written by the weights tool), or None for random init (tests).
    learning_rate None means the study's rate for the backbone; fine_tune_epochs None means
    `epochs`; fine_tune_learning_rate None means a tenth of the head's rate.
    """

    backbone: str = "vgg16"
    weights: str | None = "imagenet"
    image_size: int = STUDY_IMAGE_SIZE
    epochs: int = STUDY_EPOCHS
    batch_size: int = STUDY_BATCH_SIZE
    learning_rate: float | None = None
    optimizer: str = STUDY_OPTIMIZER
    fine_tune_layers: int = 0
    fine_tune_epochs: int | None = None
    fine_tune_learning_rate: float | None = None
    # "last" is the study's (the weights after the final epoch); "best_validation" keeps the weights
    # of the epoch with the lowest validation loss, so more epochs cannot overfit the reported model.
    # With fine-tuning it chooses among the head's epochs, then among the fine-tuning epochs.
    keep_epoch: str = "last"
    # Beyond the study: the head also trains on the mirror image of every training image, and
    # P(COVID) is the mean over an image and its mirror (test-time augmentation). Both come from
    # cached features, so it needs a frozen backbone.
    mirror: bool = False
    # Beyond the study: every image is brought down to this side and back up inside the model
    # (`DegradeResolution`), so real images are seen at a GAN's resolution; None keeps them sharp.
    degrade_to: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.degrade_to is not None and not 1 <= self.degrade_to <= self.image_size:
            raise ValueError(f"degrade_to must be between 1 and image_size ({self.image_size}), got {self.degrade_to}")
        if self.degrade_to is not None and self.fine_tune_layers:
            raise ValueError("degrade_to needs a frozen backbone; it cannot be combined with "
                             f"fine_tune_layers={self.fine_tune_layers}")
        if self.mirror and self.fine_tune_layers:
            raise ValueError("mirror needs a frozen backbone (cached features); it cannot be combined with "
                             f"fine_tune_layers={self.fine_tune_layers}")
        if self.keep_epoch not in KEEP_EPOCH:
            raise ValueError(f"keep_epoch: unknown {self.keep_epoch!r}; choose one of {', '.join(KEEP_EPOCH)}")
        check_image_size(self.spec, self.image_size)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        for field in ("epochs", "batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1, got {getattr(self, field)}")
        if self.fine_tune_layers < 0:
            raise ValueError(f"fine_tune_layers must be >= 0, got {self.fine_tune_layers}")
        if self.weights not in (None, "none", "imagenet"):
            resolve_weights_file(self.weights, self.spec)  # a missing file fails here, before any data is read

    @property
    def spec(self) -> BackboneSpec:
        return get_backbone_spec(self.backbone)

    @property
    def head_learning_rate(self) -> float:
        return self.learning_rate if self.learning_rate is not None else self.spec.study_learning_rate

    @property
    def fine_tune_rate(self) -> float:
        if self.fine_tune_learning_rate is not None:
            return self.fine_tune_learning_rate
        return self.head_learning_rate / 10.0

    def to_dict(self) -> dict:
        """The fields plus the values the None defaults resolved to."""
        values = dataclasses.asdict(self)
        values["resolved_learning_rate"] = self.head_learning_rate
        if self.fine_tune_layers:
            values["resolved_fine_tune_epochs"] = self.fine_tune_epochs or self.epochs
            values["resolved_fine_tune_learning_rate"] = self.fine_tune_rate
        return values


# --- weights -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    """Which backbone weights a model used.

    name: "imagenet" (Keras' download), "file" or "none" (random init).
    sha256: of the weights file (None unless name is "file").
    values_sha256: of the loaded numbers of the cut backbone, whatever their source; it
    keys the feature cache, so features of different weights can never be mixed up.
    """

    name: str
    path: str | None
    sha256: str | None
    values_sha256: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_values_sha256(model: keras.Model) -> str:
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()


def resolve_weights_file(weights: str | os.PathLike, spec: BackboneSpec) -> pathlib.Path:
    """A local weights file for `spec`: the path itself, or DIR/spec.weights_file."""
    path = pathlib.Path(weights)
    if path.is_dir():
        path = path / spec.weights_file
        if not path.is_file():
            raise FileNotFoundError(
                f"weights directory {weights} has no {spec.weights_file} for {spec.name}; "
                f"build it with `{WEIGHTS_TOOL}`"
            )
    elif not path.is_file():
        raise FileNotFoundError(
            f"weights {str(weights)!r} is neither 'imagenet', 'none', a weights file nor a directory "
            f"(build local files with `{WEIGHTS_TOOL}`)"
        )
    return path


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
                 degrade_to: int | None = None):
        self.spec = get_backbone_spec(backbone)
        check_image_size(self.spec, image_size)
        self.image_size = image_size
        self.degrade_to = degrade_to
        base, name, path = _build_cut_base(self.spec, image_size, weights)
        self.model = keras.Model(
            base.input, base.get_layer(self.spec.cut_layer).output, name=f"{backbone}_{self.spec.cut_layer}"
        )
        if degrade_to is not None:
            image = keras.Input((image_size, image_size, 3), name="preprocessed_image")
            degraded = DegradeResolution(degrade_to, name=f"degrade_to_{degrade_to}px")(image)
            self.model = keras.Model(image, self.model(degraded), name=f"{self.model.name}_from_{degrade_to}px")
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
        partial = self.directory / f"{key}.partial.npz"
        np.savez(partial, features=feature_set.features, labels=feature_set.labels)
        os.replace(partial, self._path(key))  # readers never see a half-written file


# --- models --------------------------------------------------------------------------------


def build_head(feature_shape: Iterable[int], name: str = "head") -> keras.Model:
    """Flatten -> Dense 1024 ReLU -> Dense 64 ReLU -> Dense 1 sigmoid (the study's head)."""
    features = keras.Input(tuple(feature_shape), name="features")
    x = keras.layers.Flatten(name="flatten")(features)
    for units in HEAD_UNITS:
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{units}")(x)
    p_covid = keras.layers.Dense(1, activation="sigmoid", name="p_covid")(x)
    return keras.Model(features, p_covid, name=name)


@keras.saving.register_keras_serializable(package="covid_keras")
class MirrorImage(keras.layers.Layer):
    """[B, H, W, C] -> the same images flipped left to right (deterministic, unlike RandomFlip)."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)


def assemble_classifier(extractor: FeatureExtractor, head: keras.Model, mirror: bool = False) -> keras.Model:
    """Preprocessed image -> P(COVID); shares its layers with `extractor.model` and `head`.

    mirror: P(COVID) is the mean over the image and its mirror (`ClassifierConfig.mirror`).
    The backbones' preprocessing works pixel by pixel, so mirroring after it is the same as before.
    """
    size = extractor.image_size
    image = keras.Input((size, size, 3), name="preprocessed_image")
    # training=False keeps BatchNormalization in inference mode even while fine-tuning.
    p_covid = head(extractor.model(image, training=False))
    if mirror:
        p_mirror = head(extractor.model(MirrorImage(name="mirror")(image), training=False))
        p_covid = keras.layers.Average(name="mean_over_mirror")([p_covid, p_mirror])
    return keras.Model(image, p_covid, name=f"{extractor.backbone}_covid_classifier")


def compile_for_training(model: keras.Model, optimizer: str, learning_rate: float) -> None:
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )


def unfreeze_top_layers(backbone: keras.Model, count: int) -> list[str]:
    """Make the last `count` layers of `backbone` trainable, except BatchNormalization.

    Frozen BatchNormalization layers run in inference mode in Keras 3, so their moving
    statistics, learnt on ImageNet, are not overwritten by a few small batches.
    """
    backbone.trainable = True
    first_trainable = len(backbone.layers) - count
    unfrozen = []
    for index, layer in enumerate(backbone.layers):
        trainable = index >= first_trainable and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        if trainable and layer.weights:
            unfrozen.append(layer.name)
    return unfrozen


# --- training ------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainedClassifier:
    """A trained classifier, its run record and its predictions on every split it was given."""

    config: ClassifierConfig
    extractor: FeatureExtractor
    head: keras.Model
    model: keras.Model
    history: dict[str, list[float]]
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (labels, P(COVID))
    metrics: dict[str, dict]
    unfrozen_layers: list[str] = dataclasses.field(default_factory=list)
    fine_tuned_on: str | None = None  # "images" or "cached <layer> features"

    def metadata(self, data_description: Mapping | None = None) -> dict:
        """The JSON record saved next to the model (`classifier.json`)."""
        return {
            "format_version": METADATA_FORMAT_VERSION,
            "backbone": self.config.backbone,
            "cut_layer": self.extractor.spec.cut_layer,
            "image_size": self.config.image_size,
            "input": f"RGB image, {self.config.image_size}x{self.config.image_size}, after the backbone's preprocess_input"
                     + (f"; brought down to {self.config.degrade_to} px and back inside the model"
                        if self.config.degrade_to is not None else ""),
            "output": f"P({POSITIVE_CLASS})",
            "class_names": list(BINARY_CLASSES),
            "weights": self.extractor.weights_info.to_dict(),
            "training": {
                **self.config.to_dict(),
                "fine_tuned_layers": self.unfrozen_layers,
                "fine_tuned_on": self.fine_tuned_on,
                "history": self.history,
            },
            "data": dict(data_description or {}),
            "metrics": self.metrics,
            "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
        }


def _history_dict(history: keras.callbacks.History, prefix: str = "") -> dict[str, list[float]]:
    return {f"{prefix}{name}": [float(v) for v in values] for name, values in history.history.items()}


def check_both_classes(labels: np.ndarray, split: str) -> None:
    """A binary classifier learns nothing from one class (and its test accuracy would mean nothing)."""
    present = {int(round(float(v))) for v in np.unique(labels)}
    missing = [BINARY_CLASSES[i] for i in (0, 1) if i not in present]
    if missing:
        raise ValueError(f"the {split} split has no {' and no '.join(missing)} images: a COVID-vs-Normal "
                         "classifier needs both classes in train and validation")


def train_head(
    head: keras.Model,
    config: ClassifierConfig,
    train: FeatureSet,
    validation: FeatureSet | None = None,
    verbose="auto",
) -> dict[str, list[float]]:
    """Fit the head on cached features with the config's optimizer, rate, epochs and batch.

    With `config.keep_epoch` "best_validation" the head ends with the weights of its epoch of
    lowest validation loss (and `validation` is required).
    """
    compile_for_training(head, config.optimizer, config.head_learning_rate)
    callbacks = _keep_epoch_callbacks(config, validation is not None)
    history = head.fit(
        train.features,
        train.labels,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=tuple(validation) if validation is not None else None,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    return _fit_record(history, callbacks)


class KeepBestValidation(keras.callbacks.Callback):
    """At the end of a fit, restore the weights of the epoch with the lowest validation loss.

    `start_loss`, the validation loss of the weights the fit starts from, makes those weights a
    candidate too: a fine-tuning that only overfits then leaves the model as it was.
    """

    def __init__(self, start_loss: float = float("inf")):
        super().__init__()
        self.start_loss = start_loss
        self.best_loss = start_loss
        self.best_epoch = 0  # 0: the starting weights; n: after epoch n
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.best_loss = self.start_loss
        self.best_epoch = 0
        self.best_weights = self.model.get_weights() if np.isfinite(self.start_loss) else None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if loss is None:
            raise ValueError("keep_epoch 'best_validation' needs a validation split")
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.best_weights = float(loss), epoch + 1, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def _keep_epoch_callbacks(
    config: ClassifierConfig, has_validation: bool, start_loss: float = float("inf")
) -> list[keras.callbacks.Callback]:
    """What `config.keep_epoch` asks of a fit."""
    if config.keep_epoch != "best_validation":
        return []
    if not has_validation:
        raise ValueError("keep_epoch 'best_validation' needs a validation split")
    return [KeepBestValidation(start_loss)]


def _fit_record(
    history: keras.callbacks.History, callbacks: list[keras.callbacks.Callback], prefix: str = ""
) -> dict[str, list]:
    """A fit's history, plus the epoch `KeepBestValidation` kept (0: the starting weights) when it ran."""
    record = _history_dict(history, prefix)
    kept = [c.best_epoch for c in callbacks if isinstance(c, KeepBestValidation)]
    if kept:
        record[f"{prefix}kept_epoch"] = kept
    return record


def predict_probabilities(
    model: keras.Model,
    examples: tf.data.Dataset,
    backbone: str,
    image_size: int,
    batch_size: int = FEATURE_BATCH_SIZE,
    verbose: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(COVID)) of a full classifier on TFDS-style examples."""
    batches = data.classifier_dataset(examples, backbone, image_size, batch_size, shuffle=False)
    progress = keras.utils.Progbar(None, unit_name="batch", verbose=verbose)
    labels, probabilities = [], []
    for images, batch_labels in batches:
        probabilities.append(np.asarray(model.predict_on_batch(images)).reshape(-1))
        labels.append(np.asarray(batch_labels).reshape(-1))
        progress.add(1)
    if not labels:
        raise ValueError("the dataset is empty: nothing to evaluate")
    return np.concatenate(labels).astype(np.int64), np.concatenate(probabilities)


def split_above(backbone: keras.Model, count: int) -> tuple[str, keras.Model] | None:
    """(name of the layer below the top `count` layers, those layers as a model fed by its output),
    or None when no single tensor feeds them (a cut inside a residual block, or the whole backbone)."""
    if count >= len(backbone.layers) - 1:
        return None
    boundary = backbone.layers[len(backbone.layers) - count - 1]
    try:
        return boundary.name, keras.Model(boundary.output, backbone.output, name=f"{backbone.name}_top")
    except ValueError:  # Keras: the top layers also read a tensor from below the boundary
        return None


def _predictions_from_features(
    model: keras.Model, feature_sets: Mapping[str, FeatureSet], mirrored: Mapping[str, FeatureSet] | None = None
) -> dict:
    """split -> (labels, P(COVID)); with `mirrored` (features of the mirror images) the mean over both."""

    def predict(features: np.ndarray) -> np.ndarray:
        return model.predict(features, batch_size=PREDICT_BATCH_SIZE, verbose=0).reshape(-1)

    predictions = {}
    for name, feature_set in feature_sets.items():
        probabilities = predict(feature_set.features)
        if mirrored is not None:
            probabilities = (probabilities + predict(mirrored[name].features)) / 2.0
        predictions[name] = (feature_set.labels.astype(np.int64), probabilities)
    return predictions


def _fine_tune(
    head: keras.Model,
    extractor: FeatureExtractor,
    config: ClassifierConfig,
    splits: Mapping[str, tf.data.Dataset],
    below: tuple[str, keras.Model, dict[str, FeatureSet]] | None,
    verbose,
) -> tuple[list[str], dict[str, list], dict | None, str]:
    """Train the top `config.fine_tune_layers` backbone layers together with the head.

    below: (boundary layer, the top as a model from its output, features at the boundary per
    split) when a single tensor feeds the top (VGG16's block5, a whole ResNet50 stage): each
    epoch then runs only the top. None: every epoch runs the whole backbone on images.
    -> (unfrozen layer names, history, predictions per split or None when they must come from
    images, what the top was trained on).
    """
    unfrozen = unfreeze_top_layers(extractor.model, config.fine_tune_layers)
    if below is None:
        model = assemble_classifier(extractor, head)

        def batches(name: str, shuffle: bool):
            return data.classifier_dataset(
                splits[name], config.backbone, config.image_size, config.batch_size, shuffle=shuffle, seed=config.seed
            )

        train, validation = batches("train", shuffle=True), None
        if "validation" in splits:
            validation = batches("validation", shuffle=False)
        trained_on = "images"
    else:
        boundary, top, features = below
        model = keras.Model(top.input, head(top.output), name="top_and_head")
        train = tf.data.Dataset.from_tensor_slices(tuple(features["train"])).shuffle(
            len(features["train"].labels), seed=config.seed).batch(config.batch_size)
        validation = tuple(features["validation"]) if "validation" in features else None
        trained_on = f"cached {boundary} features"

    compile_for_training(model, config.optimizer, config.fine_tune_rate)
    start_loss = float("inf")
    if config.keep_epoch == "best_validation" and validation is not None:
        # The model before fine-tuning competes too: fine-tuning that only overfits changes nothing.
        start_loss = _validation_loss(model, validation, config.batch_size)
    callbacks = _keep_epoch_callbacks(config, validation is not None, start_loss)
    history = model.fit(
        train,
        validation_data=validation,
        epochs=config.fine_tune_epochs or config.epochs,
        shuffle=False,  # both inputs are shuffled datasets already
        callbacks=callbacks,
        verbose=verbose,
    )
    predictions = _predictions_from_features(model, below[2]) if below is not None else None
    return unfrozen, _fit_record(history, callbacks, prefix="fine_tune_"), predictions, trained_on


def _validation_loss(model: keras.Model, validation, batch_size: int) -> float:
    if isinstance(validation, tuple):
        return float(model.evaluate(*validation, batch_size=batch_size, verbose=0, return_dict=True)["loss"])
    return float(model.evaluate(validation, verbose=0, return_dict=True)["loss"])


def train_classifier(
    config: ClassifierConfig,
    splits: Mapping[str, tf.data.Dataset],
    cache: FeatureCache | None = None,
    verbose="auto",
) -> TrainedClassifier:
    """Train a classifier on splits["train"] and evaluate it on every split given.

    splits: name -> TFDS-style examples (`data.load_split`); "train" is required,
    "validation" (if present) is reported every epoch. The head is trained on backbone
    features computed once per split (through `cache` when given); with
    `config.fine_tune_layers` the top of the backbone is then trained with the head
    (on cached features of the layer below it where the backbone allows, see `_fine_tune`).
    """
    if "train" not in splits:
        raise ValueError(f"splits needs a 'train' entry, got {sorted(splits)}")
    keras.utils.set_random_seed(config.seed)
    extractor = FeatureExtractor(config.backbone, config.image_size, config.weights, config.degrade_to)
    progress_verbose = 0 if verbose == 0 else 1
    split = split_above(extractor.model, config.fine_tune_layers) if config.fine_tune_layers else None
    below = None
    if split is not None:
        # The backbone runs once per split, to the boundary; the (still frozen) top gives the head's features.
        boundary, top = split
        below_features = {name: extractor.features(examples, cache, verbose=progress_verbose, layer=boundary)
                          for name, examples in splits.items()}
        below = (boundary, top, below_features)
        features = {
            name: FeatureSet(top.predict(below_features[name].features, batch_size=PREDICT_BATCH_SIZE, verbose=0),
                             below_features[name].labels)
            for name in ("train", "validation") if name in below_features
        }
    else:
        # Fine-tuning on images predicts from images, so it needs the cut features only to train the head.
        feature_splits = [name for name in splits if not config.fine_tune_layers or name in ("train", "validation")]
        features = {name: extractor.features(splits[name], cache, verbose=progress_verbose) for name in feature_splits}
    for name in ("train", "validation"):
        if name in features:
            check_both_classes(features[name].labels, name)
    mirrored, train = None, features["train"]
    if config.mirror:
        mirrored = {name: extractor.features(data.mirrored(examples), cache, verbose=progress_verbose)
                    for name, examples in splits.items()}
        train = train.concatenate(mirrored["train"])

    head = build_head(extractor.feature_shape)
    history = train_head(head, config, train, features.get("validation"), verbose=verbose)

    unfrozen, fine_tuned_on = [], None
    if config.fine_tune_layers:
        unfrozen, fine_tune_history, predictions, fine_tuned_on = _fine_tune(
            head, extractor, config, splits, below, verbose
        )
        history.update(fine_tune_history)
    else:
        predictions = _predictions_from_features(head, features, mirrored)
    model = assemble_classifier(extractor, head, mirror=config.mirror)
    if predictions is None:
        predictions = {
            name: predict_probabilities(model, examples, config.backbone, config.image_size, verbose=progress_verbose)
            for name, examples in splits.items()
        }
    metrics = {name: evaluation.classification_metrics(*prediction) for name, prediction in predictions.items()}
    return TrainedClassifier(config, extractor, head, model, history, predictions, metrics, unfrozen, fine_tuned_on)


# --- saving and loading ----------------------------------------------------------------------


def _ordered_splits(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda name: (SPLITS.index(name) if name in SPLITS else len(SPLITS), name))


def save_roc_plot(predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], path, title: str | None = None) -> str:
    """One ROC curve per split that has both classes."""
    curves = {}
    for name in _ordered_splits(predictions):
        labels, probabilities = predictions[name]
        auc = evaluation.roc_auc(labels, probabilities)
        if auc is None:
            continue  # one class only: no curve
        curve = evaluation.roc_curve(labels, probabilities)
        curves[name] = (curve["fpr"], curve["tpr"], auc)
    return plots.save_roc_curves(curves, path, title=title)


def save_classifier(
    trained: TrainedClassifier, out_dir: str | os.PathLike, data_description: Mapping | None = None
) -> pathlib.Path:
    """Write DIR/model.keras, DIR/classifier.json and DIR/roc.png; returns DIR."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trained.model.save(out_dir / MODEL_FILE)
    metadata = trained.metadata(data_description)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    save_roc_plot(trained.predictions, out_dir / ROC_FILE, title=f"{trained.config.backbone} COVID vs Normal")
    return out_dir


REQUIRED_METADATA = ("backbone", "image_size", "class_names", "weights")


def load_classifier_metadata(model_dir: str | os.PathLike) -> dict:
    if not pathlib.Path(model_dir).is_dir():
        raise FileNotFoundError(f"classifier directory {model_dir} does not exist")
    path = pathlib.Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a classifier directory written by save_classifier")
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} must hold a JSON object")
    missing = [field for field in REQUIRED_METADATA if field not in metadata]
    if missing:
        raise ValueError(f"{path} lacks the field(s) {', '.join(missing)}")
    get_backbone_spec(metadata["backbone"])  # a clear error for an unknown backbone
    return metadata


def load_classifier(model_dir: str | os.PathLike) -> tuple[keras.Model, dict]:
    """(model, metadata) of a directory written by `save_classifier`."""
    model_dir = pathlib.Path(model_dir)
    metadata = load_classifier_metadata(model_dir)
    model_path = model_dir / MODEL_FILE
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} is missing: not a classifier directory written by save_classifier")
    if model_path.stat().st_size == 0:  # Keras would call it "File not found"
        raise ValueError(f"{model_path} is empty (0 bytes): not a saved Keras model")
    try:
        model = keras.models.load_model(model_path)
    except Exception as error:
        raise ValueError(f"could not load the model {model_path}: {error}") from error
    return model, metadata


def evaluate_saved_classifier(
    model_dir: str | os.PathLike, examples: tf.data.Dataset, verbose: int = 1
) -> dict:
    """Metrics of a saved classifier on TFDS-style examples."""
    model, metadata = load_classifier(model_dir)
    labels, probabilities = predict_probabilities(
        model, examples, metadata["backbone"], int(metadata["image_size"]), verbose=verbose
    )
    return evaluation.classification_metrics(labels, probabilities)

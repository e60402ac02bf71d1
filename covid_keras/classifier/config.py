"""What decides a classifier run (`ClassifierConfig`, the study's presets) and which backbone weights it used."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib

import keras
import numpy as np

from covid_keras import runtime
from covid_keras.backbones import BackboneSpec, get_backbone_spec
from covid_keras.choices import FILM_MODES
# The study's training presets (reference-facts.md, "Classifiers") and the other choices live in
# covid_keras.choices (no TensorFlow, for --help); the package re-exports them.
from covid_keras.choices import (  # noqa: F401
    CLASSIFIER_OPTIMIZERS,
    KEEP_EPOCH,
    STUDY_BATCH_SIZE,
    STUDY_EPOCHS,
    STUDY_IMAGE_SIZE,
    STUDY_OPTIMIZER,
)

FEATURE_BATCH_SIZE = 32  # batch for backbone inference; no effect on the numbers
PREDICT_BATCH_SIZE = 256  # batch for the head alone on cached features
HEAD_UNITS = (1024, 64)
SPLITS = ("train", "validation", "test")

MODEL_FILE = "model.keras"
METADATA_FILE = "classifier.json"
ROC_FILE = "roc.png"
METADATA_FORMAT_VERSION = 1
WEIGHTS_TOOL = "python ../shared/tools/backbone_weights.py DIR"

OPTIMIZERS = dict(zip(CLASSIFIER_OPTIMIZERS, (keras.optimizers.Adam, keras.optimizers.SGD, keras.optimizers.RMSprop)))


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    try:
        optimizer_class = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}") from None
    return optimizer_class(learning_rate=learning_rate)


def check_image_size(spec: BackboneSpec, image_size: int) -> None:
    if image_size < spec.min_size:
        raise ValueError(f"image_size {image_size} is too small for {spec.name}: its minimum is {spec.min_size}")


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
    # Beyond the study: what of the film the classifier sees (`film.FILM_MODES`): "raw" as it is,
    # "equalised" (histogram-equalised) or "lungs" (equalised, only the lung fields), applied inside
    # the model (`film.FilmStandardisation`), so the export and every evaluation apply it too.
    film: str = "raw"
    # The operating threshold is chosen on validation (after temperature scaling) so that at least
    # this share of COVID images is called COVID (`operating_rule.OperatingRule`).
    target_sensitivity: float = 0.95
    seed: int = 0
    # The dtype policy the frozen backbone computes features in (`runtime.choose_precision("features")`
    # picks it for the machine; the commands pass that). The head always trains in float32 and the
    # saved model is float32 throughout; the features differ by bfloat16 rounding only.
    feature_precision: str = "float32"

    def __post_init__(self):
        if self.degrade_to is not None and not 1 <= self.degrade_to <= self.image_size:
            raise ValueError(f"degrade_to must be between 1 and image_size ({self.image_size}), got {self.degrade_to}")
        if self.degrade_to is not None and self.fine_tune_layers:
            raise ValueError("degrade_to needs a frozen backbone; it cannot be combined with "
                             f"fine_tune_layers={self.fine_tune_layers}")
        if self.mirror and self.fine_tune_layers:
            raise ValueError("mirror needs a frozen backbone (cached features); it cannot be combined with "
                             f"fine_tune_layers={self.fine_tune_layers}")
        if self.film not in FILM_MODES:
            raise ValueError(f"film: unknown {self.film!r}; choose one of {', '.join(FILM_MODES)}")
        if self.film != "raw" and self.fine_tune_layers:
            raise ValueError(f"film={self.film!r} needs a frozen backbone; it cannot be combined with "
                             f"fine_tune_layers={self.fine_tune_layers}")
        if not 0.0 < self.target_sensitivity <= 1.0:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {self.target_sensitivity}")
        if self.feature_precision not in runtime.PRECISIONS:
            raise ValueError(f"feature_precision: unknown {self.feature_precision!r}; "
                             f"choose one of {', '.join(runtime.PRECISIONS)}")
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

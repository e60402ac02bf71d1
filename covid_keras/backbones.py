"""The three ImageNet backbones of the study: where it cut them and how each expects its input.

Each backbone has its own `preprocess_input` (VGG16 and ResNet50: BGR mean subtraction;
InceptionV3: scale to [-1, 1]). The study skipped it; every pipeline and export here uses
`BackboneSpec.preprocess`, so this is the one place that knows.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable

import keras

from covid_keras.choices import BACKBONE_MIN_SIZES


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    cut_layer: str
    study_learning_rate: float
    constructor: Callable[..., keras.Model]
    preprocess: Callable  # float RGB in [0, 255] -> the backbone's input range
    weights_file: str  # file name that ../shared/tools/backbone_weights.py writes
    min_size: int  # smallest input side the cut layer accepts


BACKBONES = {
    "vgg16": BackboneSpec(
        name="vgg16",
        cut_layer="block5_pool",
        study_learning_rate=1e-3,
        constructor=keras.applications.VGG16,
        preprocess=keras.applications.vgg16.preprocess_input,
        weights_file="vgg16_notop.weights.h5",
        min_size=BACKBONE_MIN_SIZES["vgg16"],
    ),
    "resnet50": BackboneSpec(
        name="resnet50",
        cut_layer="conv5_block3_out",
        study_learning_rate=1e-4,
        constructor=keras.applications.ResNet50,
        preprocess=keras.applications.resnet50.preprocess_input,
        weights_file="resnet50_notop.weights.h5",
        min_size=BACKBONE_MIN_SIZES["resnet50"],
    ),
    "inception_v3": BackboneSpec(
        name="inception_v3",
        cut_layer="mixed7",
        study_learning_rate=1e-5,
        constructor=keras.applications.InceptionV3,
        preprocess=keras.applications.inception_v3.preprocess_input,
        weights_file="inception_v3_notop_APPROX.weights.h5",
        min_size=BACKBONE_MIN_SIZES["inception_v3"],
    ),
}


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}"
        ) from None


def default_weights_dir() -> pathlib.Path:
    """Where local ImageNet weight files live: $COVID_KERAS_WEIGHTS_DIR, else `<project>/../weights`."""
    env = os.environ.get("COVID_KERAS_WEIGHTS_DIR")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[1].parent / "weights"


def local_weights_file(name: str, weights_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """`name`'s local ImageNet weights file in `weights_dir` (default `default_weights_dir()`); raises
    FileNotFoundError naming the file and how to make it when it is missing."""
    folder = pathlib.Path(weights_dir) if weights_dir else default_weights_dir()
    path = folder / get_backbone_spec(name).weights_file
    if not path.is_file():
        raise FileNotFoundError(
            f"no {name} ImageNet weights: {path} does not exist "
            f"(make it with `python ../shared/tools/backbone_weights.py {folder}`, or pass --weights-dir)"
        )
    return path

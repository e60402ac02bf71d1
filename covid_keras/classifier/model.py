"""The classifier's head, the assembled model (backbone, head, the optional mirror average), and unfreezing the backbone's top."""

from __future__ import annotations

from typing import Iterable

import keras
import tensorflow as tf

# The study's training presets (reference-facts.md, "Classifiers").
from covid_keras.classifier.config import HEAD_UNITS, make_optimizer
from covid_keras.classifier.features import FeatureExtractor
from covid_keras.evaluation.calibration import LOGIT_EPSILON


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


def temperature_scaled(probability, temperature: float):
    """P(COVID) after temperature scaling, in the graph: the twin of
    `evaluation.calibration.apply_temperature` (same clipping), so exports and reports agree."""
    probability = tf.cast(probability, tf.float32)
    if temperature == 1.0:
        return probability
    clipped = tf.clip_by_value(probability, LOGIT_EPSILON, 1.0 - LOGIT_EPSILON)
    return tf.sigmoid((tf.math.log(clipped) - tf.math.log1p(-clipped)) / temperature)


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

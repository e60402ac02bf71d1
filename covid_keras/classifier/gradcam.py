"""Grad-CAM (Selvaraju et al. 2017) at the backbone's cut layer, in the classifier's own graph.

A classifier here is backbone -> cut layer -> head, so the cut layer is the head's input: the
map is the ReLU of the cut features weighted by the mean gradient of the explained class's
logit over each channel. The logit is read from the head's last Dense layer (its kernel and
bias), not recovered from a saturated sigmoid, so a confident image still has a gradient.

The explained class is the predicted one: COVID (the logit) when P(COVID) is above the
threshold, else Normal (minus the logit). With `mirror` the map is the mean of the image's map
and the mirror image's map flipped back, as P(COVID) is the mean over both.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from covid_keras.classifier.model import MirrorImage, temperature_scaled

HEAD_NAME = "head"


@dataclasses.dataclass(frozen=True)
class ClassifierParts:
    """The pieces of an assembled classifier (`assemble_classifier`), sharing its weights."""

    extractor: keras.Model  # preprocessed image -> cut features (the degrade step inside, if any)
    head: keras.Model  # cut features -> P(COVID)
    mirror: bool


def split_classifier(model: keras.Model) -> ClassifierParts:
    """The extractor and head inside an assembled (or loaded `model.keras`) classifier."""
    heads = [layer for layer in model.layers if layer.name == HEAD_NAME and isinstance(layer, keras.Model)]
    extractors = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != HEAD_NAME]
    if len(heads) != 1 or len(extractors) != 1:
        raise ValueError(f"{model.name} is not a classifier assembled from one backbone and a head named "
                         f"{HEAD_NAME!r} (found sub-models {[layer.name for layer in model.layers if isinstance(layer, keras.Model)]})")
    mirror = any(isinstance(layer, MirrorImage) for layer in model.layers)
    return ClassifierParts(extractors[0], heads[0], mirror)


def _last_dense(head: keras.Model) -> keras.layers.Dense:
    last = head.layers[-1]
    if not isinstance(last, keras.layers.Dense) or last.units != 1:
        raise ValueError(f"the head's last layer must be Dense(1), got {type(last).__name__}")
    return last


class GradCam:
    """Preprocessed images [B, S, S, 3] -> (P(COVID) [B], heatmaps [B, h, w] in [0, 1]).

    h x w is the cut layer's grid (7 x 7 for VGG16 and ResNet50 at 224 px); `upsampled` brings
    maps to the input's size. Each map is divided by its own maximum (an all-zero map stays 0).
    Works eagerly and inside a `tf.function`, so an export can serve it.
    """

    def __init__(self, parts: ClassifierParts):
        self.parts = parts
        dense = _last_dense(parts.head)
        self._kernel, self._bias = dense.kernel, dense.bias
        self._below_last = keras.Model(parts.head.input, parts.head.layers[-2].output, name="head_below_logit")
        self._traced = tf.function(self._explain, reduce_retracing=True)

    @classmethod
    def of(cls, model: keras.Model) -> "GradCam":
        return cls(split_classifier(model))

    def __call__(self, images, threshold: float = 0.5, temperature: float = 1.0):
        """(P(COVID) [B] after `temperature`, heatmaps [B, h, w]); the class explained is the one
        that P(COVID) > threshold picks, so map and label always agree."""
        if tf.inside_function():  # already traced (an export's signature)
            return self._explain(images, float(threshold), float(temperature))
        # Eagerly, a traced graph runs the backbone several times faster than op-by-op.
        return self._traced(tf.convert_to_tensor(images, tf.float32), float(threshold), float(temperature))

    def _explain(self, images, threshold: float, temperature: float):
        views = [images] + ([MirrorImage()(images)] if self.parts.mirror else [])
        logits, tapes, features = [], [], []
        for view in views:
            with tf.GradientTape() as tape:
                cut = tf.cast(self.parts.extractor(view, training=False), tf.float32)
                tape.watch(cut)
                hidden = tf.cast(self._below_last(cut, training=False), tf.float32)
                logit = (tf.matmul(hidden, tf.cast(self._kernel, tf.float32)) + tf.cast(self._bias, tf.float32))[:, 0]
            logits.append(logit)
            tapes.append(tape)
            features.append(cut)
        # P(COVID) is the mean over the views, as in the assembled model.
        probability = temperature_scaled(tf.add_n([tf.sigmoid(logit) for logit in logits]) / len(logits), temperature)
        sign = tf.where(probability > threshold, 1.0, -1.0)
        maps = []
        for index, (logit, tape, cut) in enumerate(zip(logits, tapes, features)):
            # Rows are independent, so the gradient of the batch's sum is each row's own; the sign
            # turns the COVID logit's gradient into the Normal one's where Normal is the label.
            gradients = tape.gradient(logit, cut) * sign[:, None, None, None]
            weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * cut, axis=-1))
            maps.append(tf.reverse(cam, axis=[2]) if index == 1 else cam)  # the mirror's map flipped back
        cam = tf.add_n(maps) / len(maps)
        heatmaps = tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2), keepdims=True))
        return probability, heatmaps


def upsampled(heatmaps, size: int):
    """[B, h, w] -> [B, size, size], bilinear (what an overlay on the model's input shows)."""
    return tf.image.resize(heatmaps[..., None], (size, size), method="bilinear")[..., 0]

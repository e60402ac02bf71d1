"""The small-CNN judge: a classifier trained on real images only, whose labels of generated images are their class fidelity; its recipe also trains TSTR and TRTR classifiers."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np

from covid_keras.augment import (
    RandomBlur,  # build_small_cnn's `augment` argument hides the module
)
from covid_keras.evaluation.images import resize_grey, to_uint8_images
from covid_keras.evaluation.metrics import roc_auc


def build_small_cnn(
    image_size: int, num_classes: int, base_filters: int = 16, augment: bool = True, seed: int = 0,
    blur_sigma: float = 0.0,
) -> keras.Model:
    """A small CNN from scratch. Input: grey images [B, S, S, 1] as floats in [0, 255];
    output: class probabilities [B, num_classes].

    One convolution at full resolution (the expensive one on CPU), then two per block; on real
    64 px X-rays (Normal vs COVID) it reaches about 0.9 test accuracy. blur_sigma > 0: training
    images are blurred at random by up to that sigma (`RandomBlur`).
    """
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = RandomBlur(blur_sigma, seed=seed + 3)(inputs) if blur_sigma > 0 else inputs
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    if augment:  # small geometric jitter: X-rays are roughly aligned, so keep it mild
        x = keras.layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed)(x)
        x = keras.layers.RandomZoom(0.08, fill_mode="constant", seed=seed + 1)(x)
    x = _conv_bn_relu(x, base_filters)
    x = keras.layers.MaxPooling2D()(x)
    for multiplier in (2, 4):
        x = _conv_bn_relu(_conv_bn_relu(x, base_filters * multiplier), base_filters * multiplier)
        x = keras.layers.MaxPooling2D()(x)
    x = _conv_bn_relu(x, base_filters * 8)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3, seed=seed + 2)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def _conv_bn_relu(x, filters: int):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    # Batch norm (0.91 test accuracy on 64 px X-rays; group norm reached 0.83), with a short
    # memory so its running statistics settle within an epoch or two.
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    return keras.layers.ReLU()(x)


MIN_STEPS_PER_EPOCH = 16


@dataclasses.dataclass
class ClassifierRecipe:
    """How every classifier here is trained (judge, TSTR, TRTR): seeded, early-stopped on validation."""

    image_size: int = 64
    base_filters: int = 16
    augment: bool = True
    epochs: int = 40
    patience: int = 8  # early stopping; the learning rate halves after patience // 2 flat epochs
    batch_size: int = 32  # at most; smaller for training sets under 16 batches
    learning_rate: float = 1e-3
    seed: int = 0
    blur_sigma: float = 0.0  # > 0: training images blurred at random by up to this sigma (px)


def train_small_cnn(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    recipe: ClassifierRecipe = ClassifierRecipe(),
    verbose: int = 0,
) -> tuple[keras.Model, dict]:
    """Train the small CNN; early stopping on validation loss keeps the best weights.

    -> (model, {"batch_size", "epochs_run", "best_epoch", "best_val_accuracy"}).
    """
    keras.utils.set_random_seed(recipe.seed)
    # Small training sets get smaller batches: batch norm and early stopping need steps per epoch.
    batch_size = int(np.clip(len(train_images) // MIN_STEPS_PER_EPOCH, 8, recipe.batch_size))
    train_images = resize_grey(train_images, recipe.image_size).astype(np.float32)
    val_images = resize_grey(val_images, recipe.image_size).astype(np.float32)
    model = build_small_cnn(recipe.image_size, num_classes, recipe.base_filters, recipe.augment, recipe.seed,
                            recipe.blur_sigma)
    model.compile(
        optimizer=keras.optimizers.Adam(recipe.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,  # XLA compiling costs more than it saves for a small CNN on CPU
    )
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=recipe.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(recipe.patience // 2, 1)),
    ]
    history = model.fit(
        train_images,
        np.asarray(train_labels, np.int64),
        validation_data=(val_images, np.asarray(val_labels, np.int64)),
        epochs=recipe.epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        shuffle=True,
        verbose=verbose,
    )
    val_loss = history.history["val_loss"]
    best = int(np.argmin(val_loss))
    return model, {
        "batch_size": batch_size,
        "epochs_run": len(val_loss),
        "best_epoch": best + 1,
        "best_val_accuracy": float(history.history["val_accuracy"][best]),
    }


def judge_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Class probabilities [B, C] of a judge-contract model (grey [B, S, S, 1] in [0, 255] ->
    probabilities [B, C], or [B, 1] = P(label 1)); images are resized to its input size."""
    size = model.input_shape[1]
    x = resize_grey(images, size).astype(np.float32) if size else to_uint8_images(images).astype(np.float32)
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    if probabilities.shape[-1] == 1:
        return np.concatenate([1.0 - probabilities, probabilities], axis=-1)
    return probabilities


def judge_classes(model: keras.Model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Predicted labels of a judge-contract model (see `judge_probabilities`)."""
    return np.argmax(judge_probabilities(model, images, batch_size), axis=-1).astype(np.int64)


def one_vs_rest_auc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """How well the scores rank each class above the others, whatever the threshold: for two
    classes the ROC AUC of P(label 1), for more the mean one-vs-rest AUC over the classes present.
    None when no class has both positives and negatives."""
    labels = np.asarray(labels).reshape(-1)
    probabilities = np.asarray(probabilities)
    if probabilities.shape[-1] == 2:
        return roc_auc(labels, probabilities[:, 1])
    aucs = [roc_auc((labels == k).astype(np.int64), probabilities[:, k]) for k in range(probabilities.shape[-1])]
    aucs = [auc for auc in aucs if auc is not None]
    return float(np.mean(aucs)) if aucs else None


def class_fidelity(
    judge: keras.Model, images: np.ndarray, conditioning_labels: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Share of images the judge labels as their conditioning class: overall and per class.

    On real images with their true labels this is the judge's accuracy (overall) and recall
    (per class).
    """
    labels = np.asarray(conditioning_labels, np.int64)
    predicted = judge_classes(judge, images)
    correct = predicted == labels
    per_class = {
        name: float(correct[labels == label].mean())
        for label, name in enumerate(class_names)
        if (labels == label).any()
    }
    return {"overall": float(correct.mean()), "per_class": per_class, "n": int(len(labels))}

"""How good is a conditional GAN, in numbers: KID, class fidelity, TSTR vs TRTR, diversity.

- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3 between feature vectors of real and generated images, per class,
  as mean and standard deviation over random subsets. Unbiased, so it is fine for the few
  hundred real images per class we have (FID is biased by the sample size).
- Features come from a named extractor (`EXTRACTORS`); the result always records which one
  and which weights, because KID values are only comparable under the same extractor.
- Class fidelity: a judge trained on real images only labels the generated images; per class,
  the share labelled as the class they were conditioned on, next to the judge's recall on
  real test images of that class. Beside it, the judge's accuracy on real test images after
  each DiffAugment policy: a policy that drops it toward chance hides the classes from a
  conditional discriminator. And how sharp the samples are: the blur that makes real images
  as soft, and the judge's recall on real images blurred that much (a judge that reads haze as
  COVID labels every blurry sample COVID).
- Checkerboard: the share of the images' power at the periods a strided transposed convolution
  paints (2 and 4 px), generated against real, per class. A grid that one class carries more
  than the other is a class cue no real image has.
- TSTR vs TRTR: the same small CNN recipe trained on synthetic images only, and on real
  images, both tested on the real test split: accuracy, and the threshold-free AUC. TSTR can be
  repeated over several classifiers, each on its own draw of samples (mean and spread), because
  one synthetic-trained classifier swings by more than the differences between generators.
- Diversity: mean pairwise feature distance and 1 - SSIM on pixels within each class, for
  generated and real images (the reference), to catch mode collapse.

Core functions take numpy arrays (grey uint8 images [N, H, W, 1]) and Keras models;
`evaluate_gan` glues them to a GAN run directory and a real `data.DataSpec`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import warnings
from typing import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import augment, plots
from covid_keras.augment import (
    RandomBlur,  # build_small_cnn's `augment` argument hides the module
)
from covid_keras.backbones import default_weights_dir, get_backbone_spec
from covid_keras.evaluation import roc_auc
from covid_keras.formatting import fixed, significant
from covid_keras.gan import diffaugment, sampling
from covid_keras.gan import run_dir as gan_run_dir

SPLITS = ("train", "validation", "test")


# ---------------------------------------------------------------------------------------------
# Images


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


# ---------------------------------------------------------------------------------------------
# Feature extractors


@dataclasses.dataclass
class FeatureExtractor:
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
EXTRACTORS = ("inception_v3", "resnet50", "vgg16", "random_conv")
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
) -> FeatureExtractor:
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
        return FeatureExtractor(
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
    return FeatureExtractor(name, model, size, spec.preprocess, keras_weights, exact, note)


def _build_auto_extractor(weights, weights_dir, random_input_size, seed) -> FeatureExtractor:
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


# ---------------------------------------------------------------------------------------------
# KID


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for every pair of rows."""
    dim = x.shape[1]
    return (x @ y.T / dim + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate between samples x [m, d] and y [n, d] (diagonals left out)."""
    return _mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


def _mmd2_from_kernels(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    m, n = k_xy.shape
    if m < 2 or n < 2:
        raise ValueError(f"MMD needs at least 2 samples on each side, got {m} and {n}")
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


# Up to this many samples a side, the kernel matrices are computed once and each subset indexes
# them (n^2 memory, 100x less compute); beyond it, each subset computes its own.
_PRECOMPUTE_KERNELS_UP_TO = 5000


def kernel_inception_distance(
    real_features: np.ndarray,
    generated_features: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> dict:
    """KID: mean and standard deviation of unbiased MMD^2 over random subsets (drawn without
    replacement within a subset), each of min(subset_size, n_real, n_generated) samples."""
    real = np.asarray(real_features, np.float64)
    fake = np.asarray(generated_features, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature arrays must be [N, D] with equal D, got {real.shape} and {fake.shape}")
    size = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    subsets = [
        (rng.choice(len(real), size, replace=False), rng.choice(len(fake), size, replace=False))
        for _ in range(num_subsets)
    ]
    if max(len(real), len(fake)) <= _PRECOMPUTE_KERNELS_UP_TO:
        k_rr, k_ff, k_rf = polynomial_kernel(real, real), polynomial_kernel(fake, fake), polynomial_kernel(real, fake)
        values = [_mmd2_from_kernels(k_rr[np.ix_(r, r)], k_ff[np.ix_(f, f)], k_rf[np.ix_(r, f)]) for r, f in subsets]
    else:
        values = [mmd2_unbiased(real[r], fake[f]) for r, f in subsets]
    values = np.asarray(values)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if num_subsets > 1 else 0.0,
        "subset_size": int(size),
        "num_subsets": int(num_subsets),
        "n_real": int(len(real)),
        "n_generated": int(len(fake)),
    }


def kid_per_class(
    real_features: np.ndarray,
    real_labels: np.ndarray,
    generated_features: np.ndarray,
    generated_labels: np.ndarray,
    class_names: Sequence[str],
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> dict:
    """{"per_class": {name: KID dict}, "mean_over_classes": float}; classes absent on a side are skipped."""
    per_class = {}
    for label, name in enumerate(class_names):
        real = real_features[real_labels == label]
        fake = generated_features[generated_labels == label]
        if len(real) >= 2 and len(fake) >= 2:
            per_class[name] = kernel_inception_distance(real, fake, num_subsets, subset_size, seed + label)
    means = [v["mean"] for v in per_class.values()]
    return {"per_class": per_class, "mean_over_classes": float(np.mean(means)) if means else None}


# ---------------------------------------------------------------------------------------------
# Diversity


def mean_pairwise_distance(features: np.ndarray, max_samples: int = 500, seed: int = 0) -> float:
    """Mean Euclidean distance over all distinct pairs (of at most `max_samples` rows, seeded).

    Differences are taken row by row, not through a Gram matrix, so identical rows give exactly 0.
    """
    features = np.asarray(features, np.float64)
    if len(features) > max_samples:
        features = features[np.random.default_rng(seed).choice(len(features), max_samples, replace=False)]
    n = len(features)
    if n < 2:
        raise ValueError(f"pairwise distance needs at least 2 samples, got {n}")
    total = sum(np.linalg.norm(features[i + 1 :] - features[i], axis=1).sum() for i in range(n - 1))
    return float(total / (n * (n - 1) / 2))


def mean_pairwise_ssim_distance(images: np.ndarray, num_pairs: int = 200, seed: int = 0) -> float:
    """1 - mean SSIM over random pairs of distinct images (pixels, grey, max value 255).

    Single-scale SSIM: MS-SSIM's five scales need images of at least 176 px.
    """
    images = to_uint8_images(images)
    n = len(images)
    if n < 2:
        raise ValueError(f"pairwise SSIM needs at least 2 images, got {n}")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, num_pairs)
    second = (first + rng.integers(1, n, num_pairs)) % n  # never the same index
    ssim = tf.image.ssim(
        tf.cast(images[first], tf.float32), tf.cast(images[second], tf.float32), max_val=255.0
    )
    return float(1.0 - np.mean(ssim.numpy()))


def diversity_per_class(
    features: np.ndarray, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], seed: int = 0
) -> dict:
    """{name: {"feature_distance", "pixel_1_minus_ssim", "n"}} for classes with at least 2 images."""
    out = {}
    for label, name in enumerate(class_names):
        mask = labels == label
        if mask.sum() >= 2:
            out[name] = {
                "feature_distance": mean_pairwise_distance(features[mask], seed=seed),
                "pixel_1_minus_ssim": mean_pairwise_ssim_distance(images[mask], seed=seed),
                "n": int(mask.sum()),
            }
    return out


# ---------------------------------------------------------------------------------------------
# Classifiers: the judge, TSTR and TRTR share one small CNN recipe


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


def train_classifier(
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


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Class probabilities [B, C] of a judge-contract model (grey [B, S, S, 1] in [0, 255] ->
    probabilities [B, C], or [B, 1] = P(label 1)); images are resized to its input size."""
    size = model.input_shape[1]
    x = resize_grey(images, size).astype(np.float32) if size else to_uint8_images(images).astype(np.float32)
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    if probabilities.shape[-1] == 1:
        return np.concatenate([1.0 - probabilities, probabilities], axis=-1)
    return probabilities


def predict_classes(model: keras.Model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Predicted labels of a judge-contract model (see `predict_probabilities`)."""
    return np.argmax(predict_probabilities(model, images, batch_size), axis=-1).astype(np.int64)


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
    predicted = predict_classes(judge, images)
    correct = predicted == labels
    per_class = {
        name: float(correct[labels == label].mean())
        for label, name in enumerate(class_names)
        if (labels == label).any()
    }
    return {"overall": float(correct.mean()), "per_class": per_class, "n": int(len(labels))}


# ---------------------------------------------------------------------------------------------
# Generating images


def class_signal_under_augmentation(
    judge: keras.Model, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], seed: int = 0
) -> dict[str, float]:
    """The judge's accuracy on real images after each DiffAugment policy, and after all of them.

    A conditional discriminator sees only augmented images, so it cannot learn a class from
    a cue that a policy erases: a policy that drops this toward chance hides the classes from
    the GAN. "none" is the plain accuracy.
    """
    as_float = to_uint8_images(images).astype(np.float32) / 127.5 - 1.0
    accuracy = {"none": class_fidelity(judge, images, labels, class_names)["overall"]}
    variants = [(policy, (policy,)) for policy in diffaugment.POLICIES] + [("all", diffaugment.POLICIES)]
    for name, policies in variants:
        augmented = diffaugment.diff_augment(tf.constant(as_float), policies, tf.constant([seed, 0]))
        accuracy[name] = class_fidelity(judge, np.clip(augmented.numpy(), -1.0, 1.0), labels, class_names)["overall"]
    return accuracy


BLUR_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # px, at the evaluated image size


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Grey uint8 images blurred by a Gaussian of `sigma` px (reflected borders); sigma 0 returns them."""
    images = to_uint8_images(images)
    if sigma <= 0:
        return images
    taps = augment.gaussian_kernel_1d(sigma)
    radius = len(taps) // 2
    kernel = np.outer(taps, taps)
    padded = tf.pad(tf.cast(images, tf.float32), [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    blurred = tf.nn.conv2d(padded, kernel[:, :, None, None].astype(np.float32), strides=1, padding="VALID")
    return np.clip(np.round(blurred.numpy()), 0, 255).astype(np.uint8)


def sharpness(images: np.ndarray) -> float:
    """Mean |blur(1 px) - blur(2 px)| in grey levels: the detail at the scale of rib edges and
    vessels; lower is blurrier. A band-pass, not the Laplacian: GAN speckle at the scale of one
    pixel would read as sharpness (our samples' Laplacian exceeds real images')."""
    images = to_uint8_images(images)
    fine = gaussian_blur(images, 1.0).astype(np.float32)
    coarse = gaussian_blur(images, 2.0).astype(np.float32)
    return float(np.mean(np.abs(fine - coarse)))


def blur_check(
    judge: keras.Model,
    real: LabelledImages,
    generated: LabelledImages,
    class_names: Sequence[str],
    sigmas: Sequence[float] = BLUR_SIGMAS,
) -> dict:
    """How sharp the generated images are, and what the judge makes of real images that blurry.

    A judge may read blur as a class (haze is what COVID opacities look like): then blurry
    samples of every class get that label, whatever their conditioning. Per class: the
    generated and real sharpness, the Gaussian sigma that blurs real images to the generated
    sharpness (interpolated over `sigmas`), and the judge's recall on real images blurred by
    each sigma.
    """
    blurred = [gaussian_blur(real.images, sigma) for sigma in sigmas]
    recall = [class_fidelity(judge, images, real.labels, class_names)["per_class"] for images in blurred]
    out = {"sigmas": list(sigmas), "per_class": {}}
    for label, name in enumerate(class_names):
        real_mask, generated_mask = real.labels == label, generated.labels == label
        if not real_mask.any() or not generated_mask.any():
            continue
        curve = [sharpness(images[real_mask]) for images in blurred]  # falls as sigma grows
        generated_sharpness = sharpness(generated.images[generated_mask])
        # np.interp needs increasing x: read the curve from the blurriest end.
        equivalent = float(np.interp(generated_sharpness, curve[::-1], list(sigmas)[::-1]))
        out["per_class"][name] = {
            "generated_sharpness": generated_sharpness,
            "real_sharpness": curve[0],
            "real_sharpness_by_sigma": curve,
            "blur_equivalent_sigma": equivalent,
            "judge_recall_by_sigma": [r.get(name) for r in recall],
            "judge_recall_at_equivalent_blur": float(np.interp(equivalent, sigmas, [r.get(name) for r in recall])),
        }
    return out


# The periods (px) of the checkerboard that stride-2 transposed convolutions paint: one block
# gives period 2, two stacked give period 4 (Odena et al. 2016). Real radiographs have little power there.
CHECKERBOARD_PERIODS = (2, 4)


def _period_frequencies(length: int, period: int) -> list[int]:
    """FFT bins of one axis whose period is exactly `period` px: m * length / period for m coprime
    to the period (period 4 leaves period 2's bin to period 2), rounded when length is not a multiple."""
    return sorted({round(m * length / period) % length for m in range(1, period) if np.gcd(m, period) == 1})


def periodic_power_share(images: np.ndarray, period: int) -> float:
    """Share of the images' power at period `period` px: over the mean power spectrum (each
    image's own mean removed), the rows and columns at that period's frequencies, over the whole.
    A transposed convolution's checkerboard puts its power there."""
    if period < 2:
        raise ValueError(f"period must be >= 2 px, got {period}")
    images = to_uint8_images(images)[..., 0].astype(np.float64)
    if len(images) == 0:
        raise ValueError("periodic_power_share needs at least one image")
    centred = images - images.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(centred)) ** 2).mean(axis=0)
    total = power.sum()
    if total == 0:
        return 0.0
    on_period = np.zeros(power.shape, bool)
    on_period[_period_frequencies(power.shape[0], period), :] = True
    on_period[:, _period_frequencies(power.shape[1], period)] = True
    return float(power[on_period].sum() / total)


def checkerboard_per_class(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], periods: Sequence[int] = CHECKERBOARD_PERIODS
) -> dict:
    """{class: {str(period): power share}} for the classes present."""
    out = {}
    for label, name in enumerate(class_names):
        mask = labels == label
        if mask.any():
            out[name] = {str(period): periodic_power_share(images[mask], period) for period in periods}
    return out


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


# ---------------------------------------------------------------------------------------------
# TSTR vs TRTR


# Seeds of TSTR classifier i > 0 (classifier 0 keeps the recipe's seed): far from the seeds
# that other evaluation seeds give classifier 0.
TSTR_SEED_STRIDE = 10_000


def tstr_classifier_seed(recipe_seed: int, index: int) -> int:
    return recipe_seed + TSTR_SEED_STRIDE * index


def tstr_trtr(
    synthetic_sets: Sequence[tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
    real_train: tuple[np.ndarray, np.ndarray],
    real_val: tuple[np.ndarray, np.ndarray],
    real_test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
    recipe: ClassifierRecipe = ClassifierRecipe(),
    trtr_model: keras.Model | None = None,
    verbose: int = 0,
) -> tuple[dict, keras.Model]:
    """Train on synthetic (early-stopped on held-out synthetic: no real image steers it) and on
    real; test both on the real test split. Each TSTR classifier is also scored on the real
    validation split, so that settings (a filter, a checkpoint, the recipe) can be chosen
    without looking at the test split.

    synthetic_sets: one ((train images, labels), (val images, labels)) per TSTR classifier;
        classifier i is seeded `tstr_classifier_seed(recipe.seed, i)`. TSTR figures are the
        mean over them, with their standard deviation (None for one) and each one's figures.
    trtr_model: an already trained real-data model of the same recipe (the judge) to reuse.
    -> (result dict, the TRTR model).
    """
    if not synthetic_sets:
        raise ValueError("tstr_trtr needs at least one synthetic (train, val) set")
    num_classes = len(class_names)
    tstr_runs = []
    for index, (synthetic_train, synthetic_val) in enumerate(synthetic_sets):
        seed = tstr_classifier_seed(recipe.seed, index)
        model, fit = train_classifier(*synthetic_train, *synthetic_val, num_classes,
                                      dataclasses.replace(recipe, seed=seed), verbose)
        recall = class_fidelity(model, *real_test, class_names)
        tstr_runs.append({
            "seed": seed,
            "n_synthetic_train": int(len(synthetic_train[1])),
            "accuracy": recall["overall"],
            # Threshold-free: a classifier fitted to well-separated synthetic classes may rank real
            # images right and still put its threshold in the wrong place.
            "auc": one_vs_rest_auc(real_test[1], predict_probabilities(model, real_test[0])),
            "recall_per_class": recall["per_class"],
            "real_validation": {
                "accuracy": class_fidelity(model, *real_val, class_names)["overall"],
                "auc": one_vs_rest_auc(real_val[1], predict_probabilities(model, real_val[0])),
            },
            "fit": fit,
        })
    trtr_fit = None
    if trtr_model is None:
        trtr_model, trtr_fit = train_classifier(*real_train, *real_val, num_classes, recipe, verbose)
    trtr = class_fidelity(trtr_model, *real_test, class_names)
    validation = [run["real_validation"] for run in tstr_runs]
    result = {
        "tstr_accuracy": _mean_of(tstr_runs, "accuracy"),
        "tstr_accuracy_sd": _sd_of(tstr_runs, "accuracy"),
        "trtr_accuracy": trtr["overall"],
        "tstr_auc": _mean_of(tstr_runs, "auc"),
        "tstr_auc_sd": _sd_of(tstr_runs, "auc"),
        "trtr_auc": one_vs_rest_auc(real_test[1], predict_probabilities(trtr_model, real_test[0])),
        "tstr_real_validation_accuracy": _mean_of(validation, "accuracy"),
        "tstr_real_validation_auc": _mean_of(validation, "auc"),
        "tstr_recall_per_class": {name: float(np.mean([run["recall_per_class"][name] for run in tstr_runs]))
                                  for name in tstr_runs[0]["recall_per_class"]},
        "trtr_recall_per_class": trtr["per_class"],
        "n_tstr_classifiers": len(tstr_runs),
        "recipe": dataclasses.asdict(recipe),
        "n_synthetic_train": tstr_runs[0]["n_synthetic_train"],
        "n_real_train": int(len(real_train[1])),
        "n_real_test": int(len(real_test[1])),
        "tstr_classifiers": tstr_runs,
        "trtr_fit": trtr_fit if trtr_fit is not None else "reused the judge (same recipe, real train)",
    }
    return result, trtr_model


def _mean_of(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in runs]
    return None if any(v is None for v in values) else float(np.mean(values))


def _sd_of(runs: list[dict], key: str) -> float | None:
    """Sample standard deviation over the runs; None for one run or a missing value."""
    values = [run[key] for run in runs]
    return None if len(values) < 2 or any(v is None for v in values) else float(np.std(values, ddof=1))


# ---------------------------------------------------------------------------------------------
# GAN runs: checkpoints and real data


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    epoch: int
    path: pathlib.Path


# gan_training keeps generator snapshots as weights/generator-epoch00010.weights.h5.
SNAPSHOT_GLOB = "weights/generator-epoch*.weights.h5"
# Elsewhere: an epoch number after "epoch", "ckpt" or "checkpoint" in a file or folder name.
_EPOCH_PATTERN = re.compile(r"(?:epoch|ckpt|checkpoint)[-_]?(\d+)", re.IGNORECASE)
_NOT_WEIGHTS = (".png", ".csv", ".json", ".md", ".txt", ".log")


def list_checkpoints(run_dir: str | os.PathLike) -> list[Checkpoint]:
    """Kept generator snapshots of a GAN run, oldest first, one per epoch.

    The gan_training layout first (`weights/generator-epoch<N>.weights.h5`). Failing that, any
    name in the run folder or two levels below with an epoch number after "epoch", "ckpt" or
    "checkpoint"; where several share an epoch, the generator's (its EMA weights first) is kept.
    Resume states (`train_state-*`) are not snapshots.
    """
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"GAN run folder not found: {run_dir}")
    candidates = list(run_dir.glob(SNAPSHOT_GLOB))
    if not candidates:
        candidates = [
            path for depth in ("*", "*/*", "*/*/*") for path in run_dir.glob(depth)
            if not path.name.endswith(_NOT_WEIGHTS) and "train_state" not in path.name
        ]
    found: dict[int, list[pathlib.Path]] = {}
    for path in candidates:
        match = _EPOCH_PATTERN.search(path.name)
        if match:
            found.setdefault(int(match.group(1)), []).append(path)
    return [Checkpoint(epoch, min(paths, key=_generator_first)) for epoch, paths in sorted(found.items())]


def _generator_first(path: pathlib.Path) -> tuple:
    name = path.name.lower()
    return ("ema" not in name, "gen" not in name, "disc" in name, len(name), name)


def load_run_generator(run_dir: str | os.PathLike, which: str | int | Checkpoint = "latest"):
    """`gan_training.load_generator(run_dir, which)` -> (generator, GanConfig, class_names).

    `which`: "latest", an epoch number, or a `Checkpoint` (loaded by its epoch).
    """
    from covid_keras.gan import (
        training as gan_training,  # imported here: evaluation on arrays needs no GAN code
    )

    if isinstance(which, Checkpoint):
        which = which.epoch
    return gan_training.load_generator(run_dir, which=which)


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


# ---------------------------------------------------------------------------------------------
# The evaluation


@dataclasses.dataclass
class EvaluationSettings:
    per_class: int = 1000  # generated images per class for KID, fidelity and diversity
    num_subsets: int = 100
    subset_size: int = 1000
    kid_real_split: str = "train"  # the distribution the GAN learned; more images than test
    curve_per_class: int = 250  # generated images per class at each checkpoint of the curve
    curves: bool = True
    tstr: bool = True
    tstr_classifiers: int = 1  # TSTR repeated over this many classifiers, each on its own draw
    # > 0: TSTR and TRTR classifiers (not the judge) train with random blur up to this sigma (px)
    tstr_blur_sigma: float = 0.0
    grid_columns: int = 8
    seed: int = 0
    recipe: ClassifierRecipe = dataclasses.field(default_factory=ClassifierRecipe)

    def __post_init__(self):
        if self.tstr_classifiers < 1:  # checked here, not after the minutes of KID before TSTR
            raise ValueError(f"tstr_classifiers must be at least 1, got {self.tstr_classifiers}")
        if self.tstr_blur_sigma < 0:
            raise ValueError(f"tstr_blur_sigma must be 0 (no blur) or more, got {self.tstr_blur_sigma}")


def evaluate_gan(
    generator_or_run_dir,
    real,
    *,
    class_names: Sequence[str] | None = None,
    extractor: FeatureExtractor | str = "auto",
    extractor_weights: str | None = None,
    judge: keras.Model | str | os.PathLike | None = None,
    settings: EvaluationSettings | None = None,
    which: str = "latest",
    out_dir: str | os.PathLike | None = None,
    image_filter: sampling.ConfidenceFilter | None = None,
    verbose: int = 1,
) -> dict:
    """Evaluate a conditional generator against real images; returns the report as a dict.

    generator_or_run_dir: a GAN run folder (its `which` checkpoint is evaluated; KID over
        training is computed when it has several checkpoints) or a generator `keras.Model`.
    real: a `data.DataSpec`, or {"train"|"validation"|"test": LabelledImages} already loaded.
    judge: a trained classifier (model or .keras path, judge contract: grey [B, S, S, 1] in
        [0, 255] -> class probabilities) or None to train the small CNN on real train.
    out_dir: when given, the JSON, Markdown summary, grids, curves and judge are written there.
    image_filter: keep only generated images it accepts (rejection sampling; its acceptance per
        class is reported), for every figure but the curves, which show the generator's own samples.
    """
    settings = settings or EvaluationSettings()
    log = print if verbose else (lambda *args: None)
    fit_verbose = 2 if verbose else 0  # one line per classifier epoch
    generator, class_names, run_dir, run_config = _resolve_generator(generator_or_run_dir, which, class_names)
    guide = run_class_guide(run_dir, run_config) if run_dir is not None else None
    image_size = int(generator.output_shape[1])
    real_splits, class_names = _resolve_real(real, image_size, class_names)
    if not isinstance(extractor, FeatureExtractor):
        extractor = build_extractor(extractor, extractor_weights, seed=settings.seed)
    recipe = dataclasses.replace(settings.recipe, image_size=image_size)

    log(f"generating {settings.per_class} images per class at {image_size} px"
        + (f", kept where {image_filter.name} gives their class >= {image_filter.min_confidence:g}" if image_filter else ""))
    labels = balanced_labels(len(class_names), settings.per_class)
    images, drawn = sampling.draw(generator, labels, np.random.default_rng(settings.seed), image_filter=image_filter)
    generated = LabelledImages(images, labels)
    kid_real = real_splits[settings.kid_real_split]
    log(f"features: {extractor.name} ({extractor.weights})")
    real_features = extractor.features(kid_real.images, verbose=bool(verbose))
    generated_features = extractor.features(generated.images, verbose=bool(verbose))

    result = {
        "run_dir": str(run_dir) if run_dir else None,
        "checkpoint": which if run_dir else None,
        # The run's GanConfig: tells runs that differ only in their training seed (gan_comparison).
        "run_config": run_config.to_dict() if run_config is not None else None,
        "image_size": image_size,
        "class_names": list(class_names),
        "class_guide": guide,
        "sample_filter": None if image_filter is None else {
            **image_filter.describe(),
            "acceptance_per_class": {name: settings.per_class / int(drawn[i]) for i, name in enumerate(class_names)},
        },
        "extractor": extractor.describe(),
        "real": {
            "description": "arrays" if isinstance(real, Mapping) else str(real),
            "counts": {split: real_splits[split].per_class_counts(class_names) for split in SPLITS},
            "kid_split": settings.kid_real_split,
        },
        "settings": dataclasses.asdict(settings),
        "kid": kid_per_class(
            real_features, kid_real.labels, generated_features, generated.labels, class_names,
            settings.num_subsets, settings.subset_size, settings.seed,
        ),
        "diversity": {
            "generated": diversity_per_class(generated_features, generated.images, generated.labels, class_names, settings.seed),
            "real": diversity_per_class(real_features, kid_real.images, kid_real.labels, class_names, settings.seed),
        },
    }

    log("class fidelity")
    judge_model, judge_info = _get_judge(judge, real_splits, class_names, recipe, fit_verbose)
    result["class_fidelity"] = _class_fidelity_section(judge_model, judge_info, real_splits["test"], generated, class_names)
    result["blur"] = blur_check(judge_model, real_splits["test"], generated, class_names)
    result["checkerboard"] = {
        "periods": list(CHECKERBOARD_PERIODS),
        "generated": checkerboard_per_class(generated.images, generated.labels, class_names),
        "real": checkerboard_per_class(kid_real.images, kid_real.labels, class_names),
    }
    if settings.tstr:
        log("TSTR vs TRTR")
        tstr_recipe = dataclasses.replace(recipe, blur_sigma=settings.tstr_blur_sigma)
        same_recipe = judge_info["source"] == "trained" and tstr_recipe == recipe
        result["tstr_trtr"] = _run_tstr_trtr(generator, real_splits, class_names, tstr_recipe, settings,
                                             judge_model if same_recipe else None, fit_verbose, image_filter)
    checkpoints = list_checkpoints(run_dir) if run_dir is not None else []
    if settings.curves and len(checkpoints) > 1:
        log(f"KID and class fidelity over training: {len(checkpoints)} checkpoints")
        result["curves"] = metrics_over_training(run_dir, checkpoints, real_features, kid_real.labels,
                                                 extractor, judge_model, class_names, settings, log)

    if out_dir is not None:
        write_report(result, out_dir, real_splits["test"], generated, class_names, settings.grid_columns)
        if judge_info["source"] == "trained":  # reuse it for other runs: --judge OUT/judge.keras
            judge_model.save(pathlib.Path(out_dir) / "judge.keras")
    return result


def _resolve_generator(generator_or_run_dir, which, class_names):
    """-> (generator, class names or None, run folder or None, the run's GanConfig or None)."""
    if isinstance(generator_or_run_dir, keras.Model):
        return generator_or_run_dir, class_names, None, None
    run_dir = pathlib.Path(generator_or_run_dir)
    generator, config, run_class_names = load_run_generator(run_dir, which)
    return generator, class_names or tuple(run_class_names), run_dir, config


def run_class_guide(run_dir: str | os.PathLike, config) -> dict | None:
    """The class guide the run's generator was trained against (`config`: its GanConfig, or None
    when unknown): {"weight", "loss", and class_guide.json's accuracy figures}, or None for an unguided
    run. Fidelity under a guide must say so."""
    

    if config is None or config.class_guide_weight <= 0:
        return None
    report_path = pathlib.Path(run_dir) / gan_run_dir.GUIDE_REPORT
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {"weight": float(config.class_guide_weight), "loss": config.class_guide_loss, **report}


def _resolve_real(real, image_size, class_names):
    """-> ({split: LabelledImages at image_size}, class names)."""
    if isinstance(real, Mapping):
        real_splits = {split: images.resized(image_size) for split, images in real.items()}
    else:
        class_names = _check_class_names(class_names, real)
        real_splits = load_real_splits(real, image_size)
    missing = [split for split in SPLITS if split not in real_splits]
    if missing:
        raise ValueError(f"real data lacks split(s) {missing}")
    if class_names is None:
        num_classes = int(max(s.labels.max() for s in real_splits.values())) + 1
        class_names = tuple(f"class_{i}" for i in range(num_classes))
    return real_splits, tuple(class_names)


def _class_fidelity_section(judge_model, judge_info, real_test, generated, class_names) -> dict:
    on_real = class_fidelity(judge_model, real_test.images, real_test.labels, class_names)
    on_generated = class_fidelity(judge_model, generated.images, generated.labels, class_names)
    augmented = class_signal_under_augmentation(judge_model, real_test.images, real_test.labels, class_names)
    return {
        "judge": {**judge_info, "real_test_accuracy": on_real["overall"],
                  "real_test_recall_per_class": on_real["per_class"],
                  "real_test_accuracy_after_diff_augment": augmented},
        "overall": on_generated["overall"],
        "per_class": on_generated["per_class"],
    }


def _check_class_names(generator_class_names, spec) -> tuple[str, ...]:
    """The real data's class names; they must be the generator's when it has some."""
    from covid_keras import data

    real_names = tuple(data.class_names(spec))
    if generator_class_names is not None and tuple(generator_class_names) != real_names:
        raise ValueError(
            f"the generator's classes {list(generator_class_names)} differ from the real data's "
            f"{list(real_names)} ({spec.config}): labels would not match"
        )
    return real_names


def _get_judge(judge, real_splits, class_names, recipe, verbose) -> tuple[keras.Model, dict]:
    if isinstance(judge, keras.Model):
        return judge, {"source": "given model"}
    if judge is not None:
        if not pathlib.Path(judge).is_file():
            raise FileNotFoundError(f"judge classifier not found: {judge}")
        return keras.models.load_model(judge), {"source": str(judge)}
    train, val = real_splits["train"], real_splits["validation"]
    model, fit = train_classifier(train.images, train.labels, val.images, val.labels,
                                  len(class_names), recipe, verbose)
    return model, {"source": "trained", "recipe": dataclasses.asdict(recipe), "fit": fit}


def _run_tstr_trtr(generator, real_splits, class_names, recipe, settings, trtr_model, verbose, image_filter) -> dict:
    """Per TSTR classifier: a synthetic train set as large as the real one, per class, and a
    quarter more as its validation, drawn with its own noise (classifier 0: the seeds that one
    classifier always used, so earlier figures reproduce)."""
    num_classes = len(class_names)
    counts = np.bincount(real_splits["train"].labels, minlength=num_classes)
    train_labels = np.repeat(np.arange(num_classes, dtype=np.int32), counts)
    val_labels = np.repeat(np.arange(num_classes, dtype=np.int32), np.maximum(counts // 4, 2))
    synthetic_sets = []
    for index in range(settings.tstr_classifiers):
        train_seed, val_seed = ((settings.seed + 1, settings.seed + 2) if index == 0
                                else ((settings.seed, index, 1), (settings.seed, index, 2)))
        synthetic_sets.append((
            (generate_images(generator, train_labels, train_seed, image_filter=image_filter), train_labels),
            (generate_images(generator, val_labels, val_seed, image_filter=image_filter), val_labels),
        ))
    as_pair = lambda s: (s.images, s.labels)  # noqa: E731
    result, _ = tstr_trtr(
        synthetic_sets, as_pair(real_splits["train"]), as_pair(real_splits["validation"]),
        as_pair(real_splits["test"]), class_names, recipe, trtr_model, verbose,
    )
    return result


def metrics_over_training(
    run_dir, checkpoints, real_features, real_labels, extractor, judge, class_names, settings, log
) -> list:
    """KID and the judge's class fidelity per class at every checkpoint, on fewer images per
    class than the main figures: whether more steps make the samples more real and more
    class-faithful."""
    labels = balanced_labels(len(class_names), settings.curve_per_class)
    curve = []
    for checkpoint in checkpoints:
        log(f"checkpoint epoch {checkpoint.epoch}: {checkpoint.path.name}")
        generator, _, _ = load_run_generator(run_dir, checkpoint)
        images = generate_images(generator, labels, seed=settings.seed)
        kid = kid_per_class(real_features, real_labels, extractor.features(images), labels, class_names,
                            settings.num_subsets, settings.subset_size, settings.seed)
        curve.append({"epoch": checkpoint.epoch, "checkpoint": str(checkpoint.path), **kid,
                      "class_fidelity": class_fidelity(judge, images, labels, class_names),
                      "checkerboard": checkerboard_per_class(images, labels, class_names)})
    return curve


# ---------------------------------------------------------------------------------------------
# Writers


def write_report(
    result: dict,
    out_dir: str | os.PathLike,
    real: LabelledImages | None = None,
    generated: LabelledImages | None = None,
    class_names: Sequence[str] | None = None,
    grid_columns: int = 8,
) -> dict:
    """metrics.json, summary.md, grid_<class>.png (real row above generated row), and
    kid_over_training.png and fidelity_over_training.png when the result has curves. -> {kind: path}."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "metrics.json", "markdown": out_dir / "summary.md"}
    paths["json"].write_text(json.dumps(result, indent=2, default=json_default) + "\n")
    paths["markdown"].write_text(markdown_summary(result))
    if real is not None and generated is not None:
        for label, name in enumerate(class_names or result["class_names"]):
            path = save_real_vs_generated_grid(real, generated, label, name, out_dir, grid_columns)
            if path:
                paths[f"grid_{name}"] = pathlib.Path(path)
    if result.get("curves"):
        paths["curves"] = pathlib.Path(save_kid_curve(result["curves"], result["class_names"],
                                                      out_dir / "kid_over_training.png", result["extractor"]["name"]))
        paths["fidelity_curves"] = pathlib.Path(save_fidelity_curve(
            result["curves"], result["class_names"], out_dir / "fidelity_over_training.png",
            result["class_fidelity"]["judge"]["real_test_accuracy"]))
    return {k: str(v) for k, v in paths.items()}


def json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")


def save_real_vs_generated_grid(real, generated, label, name, out_dir, columns=8) -> str | None:
    real_images = real.images[real.labels == label][:columns]
    fake_images = generated.images[generated.labels == label][:columns]
    columns = min(len(real_images), len(fake_images))
    if columns == 0:
        return None
    grid = np.stack([real_images[:columns], fake_images[:columns]])
    return plots.save_image_grid(
        grid, pathlib.Path(out_dir) / f"grid_{_file_name(name)}.png",
        row_labels=[f"{name} real", f"{name} generated"], title=f"{name}: real (top) vs generated (bottom)",
    )


def save_kid_curve(curves: list, class_names: Sequence[str], path, extractor_name: str) -> str:
    epochs = [point["epoch"] for point in curves]
    series = {}
    for name in class_names:
        points = [point["per_class"].get(name) for point in curves]
        if all(p is not None for p in points):
            series[name] = ([p["mean"] for p in points], [p["std"] for p in points])
    return plots.save_metric_curves(
        epochs, series, path, xlabel="epoch", ylabel=f"KID ({extractor_name} features)",
        title="KID, generated vs real, over training (band: ± std over subsets)",
    )


def save_fidelity_curve(curves: list, class_names: Sequence[str], path, judge_accuracy: float) -> str:
    """Class fidelity per class over training, with the judge's real-test accuracy as the line to reach."""
    epochs = [point["epoch"] for point in curves]
    series = {"overall": ([point["class_fidelity"]["overall"] for point in curves], None)}
    for name in class_names:
        values = [point["class_fidelity"]["per_class"].get(name) for point in curves]
        if all(v is not None for v in values):
            series[name] = (values, None)
    series[f"judge on real test ({judge_accuracy:.3f})"] = ([judge_accuracy] * len(epochs), None)
    return plots.save_metric_curves(
        epochs, series, path, xlabel="epoch", ylabel="share labelled as the conditioning class",
        title="Class fidelity over training (the judge's labels of generated images)",
    )


def markdown_summary(result: dict) -> str:
    """A human-readable summary of an `evaluate_gan` result."""
    lines = (_summary_header(result) + _summary_table(result) + _blur_lines(result.get("blur"))
             + _checkerboard_lines(result.get("checkerboard")))
    if "tstr_trtr" in result:
        t = result["tstr_trtr"]
        lines += [
            "## TSTR vs TRTR (same small CNN, tested on the real test split)",
            "",
            f"- TSTR (trained on {t['n_synthetic_train']} synthetic images{_over_classifiers(t)}): "
            f"**{fixed(t['tstr_accuracy'])}**{_plus_minus(t.get('tstr_accuracy_sd'))} "
            f"(AUC {fixed(t.get('tstr_auc'))}{_plus_minus(t.get('tstr_auc_sd'))})",
            f"- TRTR (trained on {t['n_real_train']} real images): **{fixed(t['trtr_accuracy'])}** "
            f"(AUC {fixed(t.get('trtr_auc'))})",
            "- accuracy needs the classifier's threshold in the right place; AUC asks only whether it ranks "
            "real images of each class above the others",
        ]
        if t.get("tstr_real_validation_accuracy") is not None:
            lines.append(f"- TSTR on the real validation split (to choose settings by, not the test split): "
                         f"{fixed(t['tstr_real_validation_accuracy'])} (AUC {fixed(t.get('tstr_real_validation_auc'))})")
        blur_sigma = t.get("recipe", {}).get("blur_sigma", 0.0)
        if blur_sigma > 0:
            lines.append(f"- both classifiers trained with random Gaussian blur of sigma up to {blur_sigma:g} px "
                         "on their training images (the judge without)")
        lines.append("")
    if result.get("curves"):
        names = result["class_names"]
        periods = " / ".join(str(p) for p in CHECKERBOARD_PERIODS)
        lines += ["## Over training (KID: mean over classes)", "",
                  "| epoch | KID | class fidelity | " + " | ".join(f"{n}: checkerboard ‰, period {periods} px" for n in names) + " |",
                  "|---|---|---|" + "---|" * len(names)]
        for point in result["curves"]:
            grids = [" / ".join(_permille(point.get("checkerboard", {}).get(n, {}).get(str(p))) for p in CHECKERBOARD_PERIODS)
                     for n in names]
            lines.append(f"| {point['epoch']} | {significant(point['mean_over_classes'])} | "
                         f"{fixed(point['class_fidelity']['overall'])} | " + " | ".join(grids) + " |")
        lines += ["", "![KID over training](kid_over_training.png)",
                  "![Class fidelity over training](fidelity_over_training.png)", ""]
    lines += [f"![{name}](grid_{_file_name(name)}.png)" for name in result["class_names"]] + [""]
    return "\n".join(lines)


def _over_classifiers(tstr: dict) -> str:
    count = tstr.get("n_tstr_classifiers", 1)
    return "" if count == 1 else f"; mean ± standard deviation over {count} classifiers, each on its own draw"


def _plus_minus(sd) -> str:
    return "" if sd is None else f" ± {fixed(sd)}"


def _blur_lines(blur: dict | None) -> list[str]:
    if not blur or not blur["per_class"]:
        return []
    lines = [
        "## Sharpness and the judge",
        "",
        "Sharpness (mean band-pass detail at 1-2 px) of generated and real test images; the Gaussian blur that makes real images "
        "as soft as the generated ones; the judge's recall on real images blurred that much. A judge "
        "that reads blur as one class labels blurry samples of every class that way.",
        "",
        "| class | sharpness gen / real | blur-equivalent sigma (px) | judge recall on real images at that blur |",
        "|---|---|---|---|",
    ]
    for name, c in blur["per_class"].items():
        lines.append(f"| {name} | {fixed(c['generated_sharpness'])} / {fixed(c['real_sharpness'])} "
                     f"| {fixed(c['blur_equivalent_sigma'])} | {fixed(c['judge_recall_at_equivalent_blur'])} |")
    return lines + [""]


def _checkerboard_lines(checkerboard: dict | None) -> list[str]:
    if not checkerboard or not checkerboard["generated"]:
        return []
    periods = checkerboard["periods"]
    lines = [
        "## Checkerboard",
        "",
        "Share of the images' power (per mille) at the periods a strided transposed convolution paints, "
        "generated / real. A grid in one class's samples only is a class cue that no real image has.",
        "",
        "| class | " + " | ".join(f"period {p} px, gen / real (‰)" for p in periods) + " |",
        "|---|" + "---|" * len(periods),
    ]
    for name, generated in checkerboard["generated"].items():
        real = checkerboard["real"].get(name, {})
        cells = [f"{_permille(generated.get(str(p)))} / {_permille(real.get(str(p)))}" for p in periods]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _permille(share) -> str:
    return "n/a" if share is None else f"{1000 * share:.2f}"


def _summary_header(result: dict) -> list[str]:
    ext = result["extractor"]
    judge = result["class_fidelity"]["judge"]
    lines = [
        "# GAN evaluation",
        "",
        f"- run: `{result['run_dir']}` (checkpoint {result['checkpoint']}), image size {result['image_size']} px",
        f"- real data: {result['real']['description']}; KID and diversity against the "
        f"`{result['real']['kid_split']}` split",
        f"- feature extractor: **{ext['name']}**, weights `{ext['weights']}`"
        f"{'' if ext['exact_weights'] else ' (NOT exact ImageNet weights)'}; {ext['feature_dim']}-d at "
        f"{ext['input_size']} px. {ext['note']}",
        f"- judge: {judge['source']}; accuracy on the real test split **{fixed(judge['real_test_accuracy'])}**",
    ]
    augmented = judge.get("real_test_accuracy_after_diff_augment")
    if augmented:
        after = ", ".join(f"{name} {fixed(value)}" for name, value in augmented.items() if name != "none")
        lines.append(f"- judge accuracy on real test images after DiffAugment (what a discriminator sees): {after}; "
                     "a policy near chance hides the classes from a conditional discriminator")
    guide = result.get("class_guide")
    if guide:
        from covid_keras.gan.guide import guide_accuracy

        accuracy, split = guide_accuracy(guide)
        lines.append(
            f"- the generator was trained against a class guide ({guide['loss'].replace('_', ' ')}, "
            f"weight {guide['weight']:g}; accuracy "
            f"{fixed(accuracy)} on real {split} images): a different network from the judge, trained "
            "apart from it. TSTR is the check that no classifier's quirks can pass"
        )
    sample_filter = result.get("sample_filter")
    if sample_filter:
        acceptance = ", ".join(f"{name} {fixed(value)}" for name, value in sample_filter["acceptance_per_class"].items())
        lines.append(
            f"- **filtered samples**: every figure but the curves is of generated images kept only where "
            f"{sample_filter['classifier']} gives their class at least {sample_filter['min_confidence']:g} "
            f"(acceptance {acceptance}): the generator and a filter, not the generator alone"
        )
    chance = 1.0 / len(result["class_names"])
    if judge["real_test_accuracy"] < chance + 0.1:
        lines.append(f"- **WARNING: the judge is near chance ({chance:.2f}) on real images: "
                     "its class-fidelity figures say nothing.**")
    return lines + [""]


def _summary_table(result: dict) -> list[str]:
    fidelity = result["class_fidelity"]
    judge = fidelity["judge"]
    lines = [
        "KID: mean ± std over random subsets (comparable only under the same extractor). Fidelity: "
        "share of generated images the judge labels as their conditioning class, beside the judge's "
        "recall on real test images of that class. Diversity: mean pairwise feature distance and "
        "1 - SSIM within the class, generated / real; far below real means mode collapse.",
        "",
        "| class | KID | fidelity (generated) | judge recall (real test) | feature distance gen / real | 1-SSIM gen / real |",
        "|---|---|---|---|---|---|",
    ]
    for name in result["class_names"]:
        kid = result["kid"]["per_class"].get(name) or {}
        gen = result["diversity"]["generated"].get(name, {})
        real = result["diversity"]["real"].get(name, {})
        lines.append(
            f"| {name} | {significant(kid.get('mean'))} ± {significant(kid.get('std'))} "
            f"| {fixed(fidelity['per_class'].get(name))} | {fixed(judge['real_test_recall_per_class'].get(name))} "
            f"| {fixed(gen.get('feature_distance'))} / {fixed(real.get('feature_distance'))} "
            f"| {fixed(gen.get('pixel_1_minus_ssim'))} / {fixed(real.get('pixel_1_minus_ssim'))} |"
        )
    lines += [
        f"| **all** | {significant(result['kid']['mean_over_classes'])} (mean over classes) "
        f"| {fixed(fidelity['overall'])} | {fixed(judge['real_test_accuracy'])} (accuracy) | | |",
        "",
    ]
    return lines

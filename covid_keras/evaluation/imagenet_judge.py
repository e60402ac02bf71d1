"""A class judge that shares nothing with a GAN's training but the real training images.

Frozen ImageNet features (VGG16 or ResNet50, exact local weights) of real train images degraded
to the GAN's resolution (the caller passes them at that size; they are resized up to the
network's input here, as generated images are), and a softmax head on top, early-stopped on the
real validation split. Neither the class guide (a small strided CNN trained from scratch) nor the
small-CNN judge of `evaluation.judge` shares its architecture, weights or features, so a generator
that learnt the guide's quirks is not scored by the same quirks.
"""

from __future__ import annotations

import keras
import numpy as np

from covid_keras.evaluation.embeddings import EmbeddingExtractor, build_extractor
from covid_keras.evaluation.images import to_uint8_images

JUDGE_BACKBONES = ("vgg16", "resnet50")


class ImagenetJudge:
    """`fit` on real images, then `predict_probabilities` / `predict_classes` on any grey images.

    The judge contract of `evaluation.judge` (grey [B, S, S, 1] -> class probabilities), but not a
    keras.Model: the backbone's features of the real images are computed once and the head is
    trained on them, which keeps a VGG16 judge to minutes on a CPU.
    """

    def __init__(self, extractor: EmbeddingExtractor, num_classes: int, l2: float = 1e-3, seed: int = 0,
                 max_epochs: int = 300, patience: int = 20):
        self.extractor = extractor
        self.max_epochs = int(max_epochs)
        self.patience = int(patience)
        self.num_classes = int(num_classes)
        self.l2 = float(l2)
        self.seed = int(seed)
        self.head: keras.Model | None = None
        self._mean = self._scale = None
        self.fit_info: dict | None = None

    @classmethod
    def build(cls, backbone: str = "vgg16", num_classes: int = 2, input_size: int = 128,
              weights: str | None = None, weights_dir=None, seed: int = 0) -> "ImagenetJudge":
        """A judge on exact ImageNet weights (`weights` file, else `weights_dir`'s; never random)."""
        if backbone not in JUDGE_BACKBONES:
            raise ValueError(f"judge backbone must be one of {JUDGE_BACKBONES}, got {backbone!r}")
        extractor = build_extractor(backbone, weights, weights_dir, input_size=input_size)
        if not extractor.exact_weights:
            raise ValueError(f"the independent judge needs exact ImageNet weights; {extractor.weights} is approximate")
        return cls(extractor, num_classes, seed=seed)

    def features(self, images: np.ndarray, verbose: bool = False) -> np.ndarray:
        return self.extractor.features(to_uint8_images(images), verbose=verbose)

    def fit(self, train_images, train_labels, val_images, val_labels, verbose: bool = False,
            train_features: np.ndarray | None = None, val_features: np.ndarray | None = None) -> dict:
        """Train the head on real train features; early stopping on real validation loss."""
        train_x = self.features(train_images, verbose) if train_features is None else train_features
        val_x = self.features(val_images, verbose) if val_features is None else val_features
        self._mean = train_x.mean(axis=0)
        self._scale = train_x.std(axis=0) + 1e-6
        keras.utils.set_random_seed(self.seed)
        features = keras.Input((train_x.shape[1],))
        logits = keras.layers.Dense(self.num_classes, kernel_regularizer=keras.regularizers.L2(self.l2))(features)
        self.head = keras.Model(features, keras.layers.Softmax()(logits), name="judge_head")
        self.head.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
        history = self.head.fit(
            self._standardise(train_x), np.asarray(train_labels, np.int64),
            validation_data=(self._standardise(val_x), np.asarray(val_labels, np.int64)),
            epochs=self.max_epochs, batch_size=64, verbose=0, shuffle=True,
            callbacks=[keras.callbacks.EarlyStopping("val_loss", patience=self.patience, restore_best_weights=True)],
        )
        best = int(np.argmin(history.history["val_loss"]))
        self.fit_info = {"epochs_run": len(history.history["val_loss"]), "best_epoch": best + 1,
                         "best_val_accuracy": float(history.history["val_accuracy"][best]),
                         "n_train": int(len(train_x)), "n_validation": int(len(val_x))}
        return self.fit_info

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self._mean) / self._scale).astype(np.float32)

    def probabilities_from_features(self, features: np.ndarray) -> np.ndarray:
        if self.head is None:
            raise RuntimeError("the judge is not fitted: call fit() first")
        return np.asarray(self.head.predict(self._standardise(features), batch_size=512, verbose=0))

    def predict_probabilities(self, images: np.ndarray, verbose: bool = False) -> np.ndarray:
        return self.probabilities_from_features(self.features(images, verbose))

    def predict_classes(self, images: np.ndarray, verbose: bool = False) -> np.ndarray:
        return np.argmax(self.predict_probabilities(images, verbose), axis=-1).astype(np.int64)

    def describe(self) -> dict:
        return {"kind": "frozen ImageNet features + softmax head on real train images",
                "extractor": self.extractor.describe(), "l2": self.l2, "seed": self.seed,
                "max_epochs": self.max_epochs, "patience": self.patience, "fit": self.fit_info}

"""The class guide: a classifier of real images, trained before the GAN and then frozen, whose view
of the fakes the generator is also trained on. A small CNN trained from scratch, or a head on frozen
ImageNet ResNet50 features: here are both builders, their training, and `ClassGuideTerm`, the
component of `ConditionalGAN` that turns a trained guide into a term of the generator's loss.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import distribute
from covid_keras.backbones import get_backbone_spec
from covid_keras.gan import diffaugment, losses
from covid_keras.gan.config import CLASS_GUIDE_LOSSES, GanConfig, check_choice

# What the class guide sees of an image, in its training and when it scores the fakes.
GUIDE_AUGMENT = ("translation",)


def build_class_guide(
    image_size: int,
    num_classes: int,
    filters: Sequence[int] = (32, 64, 128, 256),
    leaky_relu_slope: float = 0.2,
    dropout: float = 0.3,
    name: str = "class_guide",
) -> keras.Model:
    """A plain CNN classifier: images [B, S, S, 1] in [-1, 1] (the generator's range) -> class logits [B, C].

    The class guide: trained on real images only before the GAN, then frozen; the generator is
    also rewarded when the guide labels its fakes as their conditioning class (see ConditionalGAN).
    Strided 4x4 convolutions and LeakyReLU, so it is not the evaluation's judge (3x3 convolutions,
    max-pooling, ReLU) under another seed: a generator that fooled one network's quirks would not
    be scored by the same quirks.
    """
    image = keras.Input((image_size, image_size, 1), name="image")
    x = image
    for i, n_filters in enumerate(filters):
        x = keras.layers.Conv2D(n_filters, 4, strides=2, padding="same", use_bias=i == 0, name=f"guide_conv_{i}")(x)
        if i > 0:  # frozen, it normalises with the real images' statistics
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"guide_bn_{i}")(x)
        x = keras.layers.LeakyReLU(leaky_relu_slope, name=f"guide_lrelu_{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="guide_pool")(x)
    x = keras.layers.Dropout(dropout, name="guide_dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="guide_logits")(x)
    return keras.Model(image, logits, name=name)


class ImagenetInput(keras.layers.Layer):
    """Grey images in [-1, 1] (the generator's range) -> `backbone`'s input: RGB resized to `size`, then
    its own `preprocess_input`. Differentiable, so the generator's gradient flows through it."""

    def __init__(self, backbone: str, size: int, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.size = int(size)
        self._preprocess = get_backbone_spec(backbone).preprocess

    def call(self, images):
        rgb = tf.repeat((tf.cast(images, "float32") + 1.0) * 127.5, 3, axis=-1)
        resized = tf.image.resize(rgb, (self.size, self.size), method="bilinear")
        return self._preprocess(resized)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, 3)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "size": self.size}


def build_imagenet_class_guide(
    image_size: int,
    num_classes: int,
    backbone: str = "resnet50",
    input_size: int = 128,
    weights: str | None = None,
    dropout: float = 0.3,
    name: str = "class_guide",
) -> keras.Model:
    """A class guide on frozen ImageNet features: images [B, S, S, 1] in [-1, 1] -> class logits [B, C].

    The backbone (its globally average-pooled last block, `weights` a local ImageNet file or None
    for loading a trained guide later) stays frozen; only the Dense head is trained on real images
    (`frozen_pretrained` tells `train_class_guide`). Its features are ImageNet's, not ones learnt
    from 840 X-rays, so a generator that matches their class statistics must change what any
    ImageNet network sees, not one small CNN's quirks.
    """
    image = keras.Input((image_size, image_size, 1), name="image")
    x = ImagenetInput(backbone, input_size, name="guide_imagenet_input")(image)
    base = get_backbone_spec(backbone).constructor(
        include_top=False, weights=weights, input_shape=(input_size, input_size, 3), pooling="avg"
    )
    base.trainable = False
    base.frozen_pretrained = True
    features = base(x, training=False)
    x = keras.layers.Dropout(dropout, name="guide_dropout")(features)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="guide_logits")(x)
    return keras.Model(image, logits, name=name)


def class_guide_for(config: GanConfig) -> keras.Model | None:
    """The (untrained) class guide `config` asks for, or None."""
    if config.class_guide_weight <= 0:
        return None
    if config.class_guide_backbone == "cnn":
        return build_class_guide(config.image_size, config.num_classes)
    # The ImageNet weights are loaded before the head is trained (`_fit_class_guide`); a trained
    # guide comes back whole from its weights file or the train state.
    return build_imagenet_class_guide(
        config.image_size, config.num_classes, config.class_guide_backbone, config.class_guide_input_size
    )


class ClassGuideTerm:
    """What the generator pays for its fakes under a frozen class guide (a component of ConditionalGAN).

    `network`: the guide (`build_class_guide` or `build_imagenet_class_guide`, trained on real
    images beforehand), frozen here. `loss` "cross_entropy": the guide's class cross-entropy on the
    fakes, shifted by DiffAugment's translation so that G cannot win with a pixel-exact pattern.
    "feature_matching": per class, the mean and the standard deviation of the guide's features
    (the input of its last layer) on the fakes are pulled to those on the batch's real images; the
    cross-entropy is lowest for fakes more typical of their class than any real image, matching the
    real statistics is not. The term's weight is 0 before step `start_step` and rises linearly to
    `weight` over `ramp_steps`: from the first step, the guide would pull a generator that makes
    noise towards whatever noise the guide labels right, before it has learnt what an X-ray is.
    """

    def __init__(self, network: keras.Model, weight: float, start_step: int = 0, ramp_steps: int = 0,
                 loss: str = "cross_entropy"):
        if weight <= 0:
            raise ValueError(f"class_guide_weight must be > 0 for a class guide, got {weight}")
        if start_step < 0 or ramp_steps < 0:
            raise ValueError(f"class_guide_start_step ({start_step}) and class_guide_ramp_steps ({ramp_steps}) "
                             "must be >= 0")
        check_choice("class_guide_loss", loss, CLASS_GUIDE_LOSSES)
        network.trainable = False  # trained on real images before the GAN; never by it
        self.network = network
        self.weight = float(weight)
        self.start_step = int(start_step)
        self.ramp_steps = int(ramp_steps)
        self.loss = loss
        self.num_classes = int(network.outputs[0].shape[-1])
        self._features_and_logits = keras.Model(
            network.inputs, [network.layers[-1].input, network.outputs[0]], name="guide_features"
        )

    def get_config(self) -> dict:
        return {"network": keras.saving.serialize_keras_object(self.network), "weight": self.weight,
                "start_step": self.start_step, "ramp_steps": self.ramp_steps, "loss": self.loss}

    @classmethod
    def from_config(cls, config: dict) -> "ClassGuideTerm":
        return cls(**{**config, "network": keras.saving.deserialize_keras_object(config["network"])})

    def weight_at(self, step: tf.Tensor) -> tf.Tensor:
        """The term's weight at training step `step`."""
        since_start = tf.cast(step, tf.float32) - float(self.start_step)
        ramp = tf.clip_by_value((since_start + 1.0) / float(self.ramp_steps + 1), 0.0, 1.0)
        return self.weight * ramp

    def __call__(self, fakes, fake_labels, real_images, real_labels, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """(the term before its weight, the guide's accuracy on the fakes); `seed` draws the shifts."""
        shifted = diffaugment.diff_augment(fakes, GUIDE_AUGMENT, seed)
        fake_features, guide_logits = self._features_and_logits(shifted, training=False)
        cross_entropy, accuracy = losses.class_loss_and_accuracy(fake_labels, guide_logits)
        if self.loss == "cross_entropy":
            return cross_entropy, accuracy
        real_features, _ = self._features_and_logits(
            diffaugment.diff_augment(real_images, GUIDE_AUGMENT, tf.random.experimental.stateless_fold_in(seed, 1)),
            training=False,
        )
        matching = self.feature_matching(
            tf.cast(fake_features, tf.float32), fake_labels, tf.cast(real_features, tf.float32), real_labels
        )
        return matching, accuracy

    def feature_matching(self, fake_features, fake_labels, real_features, real_labels) -> tf.Tensor:
        """Mean over the classes in both batches of mean_F[(mu_fake - mu_real)^2 + (sd_fake - sd_real)^2]."""
        fake_mean, fake_sd, fake_count = self._class_statistics(fake_features, fake_labels)
        real_mean, real_sd, real_count = self._class_statistics(tf.stop_gradient(real_features), real_labels)
        gap = tf.reduce_mean(tf.square(fake_mean - real_mean) + tf.square(fake_sd - real_sd), axis=-1)
        present = tf.cast((fake_count > 0) & (real_count > 0), tf.float32)
        return losses.replica_share(tf.reduce_sum(gap * present) / tf.maximum(tf.reduce_sum(present), 1.0))

    def _class_statistics(self, features: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Per class: (mean [C, F], standard deviation [C, F], count [C]) of `features` [B, F]."""
        one_hot = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
        count = tf.reduce_sum(one_hot, axis=0)
        denominator = tf.maximum(count, 1.0)[:, None]
        mean = tf.matmul(one_hot, features, transpose_a=True) / denominator
        variance = tf.matmul(one_hot, tf.square(features), transpose_a=True) / denominator - tf.square(mean)
        return mean, tf.sqrt(tf.maximum(variance, 0.0) + 1e-6), count


def class_guide_term_for(config: GanConfig, steps_per_epoch: int) -> ClassGuideTerm | None:
    """The generator's class-guide term `config` asks for (its guide untrained), or None."""
    network = class_guide_for(config)
    if network is None:
        return None
    return ClassGuideTerm(network, config.class_guide_weight, config.class_guide_from_epoch * steps_per_epoch,
                          config.class_guide_ramp_epochs * steps_per_epoch, config.class_guide_loss)


# How the class guide is trained: on real images only, early-stopped on validation loss.
GUIDE_EPOCHS = 40
GUIDE_PATIENCE = 8
GUIDE_LEARNING_RATE = 1e-3


class _GuideShift(keras.layers.Layer):
    """In training, DiffAugment's GUIDE_AUGMENT: the guide learns real images as it will see the fakes."""

    def __init__(self, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        return diffaugment.diff_augment(images, GUIDE_AUGMENT, self.seed_generator.next())


def train_class_guide(
    guide: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    seed: int = 0,
    epochs: int = GUIDE_EPOCHS,
    verbose: str | int = "auto",
) -> dict:
    """Fit `guide` on real (images in [-1, 1], labels) batches, then freeze it.

    With `val_ds`, training stops GUIDE_PATIENCE epochs after the lowest validation loss and keeps
    those weights. -> {"epochs_run", "best_epoch", "train_accuracy", "val_accuracy" (None without val_ds)}.
    """
    keras.utils.set_random_seed(seed)
    pretrained = [layer for layer in guide.layers if getattr(layer, "frozen_pretrained", False)]
    if pretrained:
        return _train_head_on_frozen_features(guide, train_ds, val_ds, epochs)
    guide.trainable = True
    trainer = keras.Sequential([keras.Input(guide.input_shape[1:]), _GuideShift(seed), guide], name="class_guide_trainer")
    trainer.compile(
        optimizer=keras.optimizers.Adam(GUIDE_LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    distribute.fit_ready(trainer, tf.distribute.get_strategy())  # the run's strategy: built in its scope
    callbacks = []
    if val_ds is not None:
        callbacks += [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=GUIDE_PATIENCE, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=GUIDE_PATIENCE // 2),
        ]
    history = trainer.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose,
                          shuffle=False).history  # train_ds shuffles itself
    guide.trainable = False
    return _guide_report(history, val_ds is not None)


def _train_head_on_frozen_features(guide: keras.Model, train_ds, val_ds, epochs: int) -> dict:
    """A guide whose backbone is frozen ImageNet features: those features are computed once per
    image (unshifted: they are globally pooled) and only the Dense head is fitted on them, which
    takes seconds where running the backbone every epoch takes minutes on a CPU."""
    head_layers = guide.layers[-2:]  # Dropout, Dense (build_imagenet_class_guide)
    features_of = keras.Model(guide.input, head_layers[0].input)

    def features(ds):
        if ds is None:
            return None
        pairs = [(features_of.predict_on_batch(x), y.numpy()) for x, y in ds]
        return np.concatenate([f for f, _ in pairs]), np.concatenate([y for _, y in pairs])

    train, val = features(train_ds), features(val_ds)
    for layer in head_layers:
        layer.trainable = True
    head = keras.Sequential([keras.Input(train[0].shape[1:]), *head_layers], name="class_guide_head")
    head.compile(optimizer=keras.optimizers.Adam(GUIDE_LEARNING_RATE),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    callbacks = []
    if val is not None:
        callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=4 * GUIDE_PATIENCE,
                                                   restore_best_weights=True)]
    history = head.fit(*train, validation_data=val, epochs=10 * epochs, batch_size=32, shuffle=True,
                       callbacks=callbacks, verbose=0).history
    guide.trainable = False
    return _guide_report(history, val is not None)


def _guide_report(history: dict, validated: bool) -> dict:
    monitored = history["val_loss"] if validated else history["loss"]
    best = int(np.argmin(monitored))
    return {
        "epochs_run": len(monitored),
        "best_epoch": best + 1,
        "train_accuracy": float(history["accuracy"][best]),
        "val_accuracy": float(history["val_accuracy"][best]) if validated else None,
    }


def guide_accuracy(report: dict) -> tuple[float | None, str]:
    """(accuracy, split) of a `train_class_guide` report: validation when it had a validation split, else train."""
    if report.get("val_accuracy") is not None:
        return report["val_accuracy"], "validation"
    return report.get("train_accuracy"), "train"

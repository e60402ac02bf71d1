"""An image-editing conditional GAN: a real X-ray of one class in, the same X-ray as another class out.

A noise-to-image generator must learn anatomy, texture and class at once from ~1,000 images; at
64 px on a CPU it learns the first and not the others (samples softer than real, labels near
chance under an independent judge). This one edits real images instead: the translator returns
`clip(x + r, -1, 1)`, where the residual `r` comes from a small encoder / residual / decoder net
whose BatchNorm is conditioned on the target class. Anatomy and sharpness come from the input;
what is learnt is the class difference.

Losses (hinge, as the `stable` preset): the projection discriminator with an auxiliary class
head (trained on real images only) sees real images with their labels and edits with their
target labels; the translator pays the adversarial term, the class head's cross-entropy of its
edits' target, an identity term |T(x, y) - x| (an image asked for its own class comes back
unchanged) and a cycle term |T(T(x, t), y) - x| (edits keep what is not class). The
discriminator steps once every `d_every` calls of `train_step`.

`source_sampler` wraps a trained translator in the generator contract ([noise, label] -> image):
the noise picks which real training image of another class is edited, so sampling, filtering,
`generate.py`-style writing and the evidence protocol work on it unchanged.
"""

from __future__ import annotations

import json
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

from covid_keras import data, files, plots
from covid_keras.files import atomic_save_weights
from covid_keras.gan import diffaugment
from covid_keras.gan.config import TranslationConfig  # noqa: F401  (part of this module's interface)
from covid_keras.gan.losses import GanLoss
from covid_keras.gan.networks import ClassConditionalAffine, build_discriminator

CONFIG_FILE = "translation.json"
WEIGHTS_FILE = "translator.weights.h5"
DISCRIMINATOR_WEIGHTS_FILE = "discriminator.weights.h5"


def _conditional_norm(x, label, num_classes, name):
    x = keras.layers.BatchNormalization(center=False, scale=False, momentum=0.9, name=f"{name}_bn")(x)
    return ClassConditionalAffine(num_classes, name=f"{name}_affine")([x, label])


def build_translator(image_size: int = 64, num_classes: int = 2, filters=(16, 32, 64), residual_blocks: int = 2,
                     name: str = "translator") -> keras.Model:
    """[image float32 [B, S, S, 1] in [-1, 1], target label int32 [B]] -> the edited image, same shape and range."""
    image = keras.Input((image_size, image_size, 1), name="image")
    label = keras.Input((), dtype="int32", name="target_label")
    x = keras.layers.Conv2D(filters[0], 3, padding="same", name="stem")(image)
    x = keras.layers.ReLU()(_conditional_norm(x, label, num_classes, "stem"))
    for i, n in enumerate(filters[1:], start=1):
        x = keras.layers.Conv2D(n, 4, strides=2, padding="same", use_bias=False, name=f"down{i}")(x)
        x = keras.layers.ReLU()(_conditional_norm(x, label, num_classes, f"down{i}"))
    for i in range(residual_blocks):
        y = keras.layers.Conv2D(filters[-1], 3, padding="same", use_bias=False, name=f"res{i}_a")(x)
        y = keras.layers.ReLU()(_conditional_norm(y, label, num_classes, f"res{i}_a"))
        y = keras.layers.Conv2D(filters[-1], 3, padding="same", use_bias=False, name=f"res{i}_b")(y)
        x = keras.layers.Add()([x, _conditional_norm(y, label, num_classes, f"res{i}_b")])
    for i, n in enumerate(reversed(filters[:-1]), start=1):
        # Resize + conv: no transposed-convolution checkerboard in the residual.
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}_resize")(x)
        x = keras.layers.Conv2D(n, 3, padding="same", use_bias=False, name=f"up{i}")(x)
        x = keras.layers.ReLU()(_conditional_norm(x, label, num_classes, f"up{i}"))
    residual = keras.layers.Conv2D(1, 3, padding="same", activation="tanh", name="residual")(x)
    edited = keras.layers.Lambda(lambda t: keras.ops.clip(2.0 * t[1] + t[0], -1.0, 1.0), name="edit")([image, residual])
    return keras.Model([image, label], edited, name=name)


def discriminator_for(config: TranslationConfig) -> keras.Model:
    return build_discriminator(
        config.image_size, config.num_classes, filters=config.discriminator_filters, leaky_relu_slope=0.2,
        dropout=0.0, conditioning="projection", norm="spectral", auxiliary_classifier=config.aux_class_weight > 0,
        minibatch_std=True,
    )


def other_class(labels: tf.Tensor, num_classes: int, seed: tf.Tensor) -> tf.Tensor:
    """A uniformly drawn class other than each label."""
    offset = tf.random.stateless_uniform(tf.shape(labels), seed, 1, num_classes, dtype=tf.int32) if num_classes > 2 \
        else tf.ones_like(labels)
    return (labels + offset) % num_classes


@keras.saving.register_keras_serializable(package="covid_keras")
class TranslationGAN(keras.Model):
    """Translator + discriminator, trained as the module docstring says."""

    def __init__(self, translator: keras.Model, discriminator: keras.Model, num_classes: int = 2, d_every: int = 1,
                 identity_weight: float = 10.0, cycle_weight: float = 10.0, aux_class_weight: float = 1.0,
                 diff_augment=(), seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.translator = translator
        self.discriminator = discriminator
        self.num_classes = int(num_classes)
        self.d_every = int(d_every)
        self.identity_weight = float(identity_weight)
        self.cycle_weight = float(cycle_weight)
        self.aux_class_weight = float(aux_class_weight)
        self.diff_augment = tuple(diff_augment)
        self.seed = int(seed)
        self.gan_loss = GanLoss("hinge")
        self.step_counter = keras.Variable(0, dtype="int64", trainable=False, name="step_counter")
        names = ("g_loss", "d_loss", "identity_l1", "cycle_l1", "d_class_accuracy", "g_class_accuracy")
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        super().compile(**kwargs)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        g_optimizer.build(self.translator.trainable_variables)
        d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training: bool = False):
        return self.translator(inputs, training=training)

    def _discriminate(self, images, labels, seed):
        if self.diff_augment:
            images = diffaugment.diff_augment(images, self.diff_augment, seed)
        outputs = self.discriminator([images, labels], training=True)
        return (outputs[0], outputs[1]) if self.aux_class_weight > 0 else (outputs, None)

    def _class_loss(self, labels, logits):
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return loss, accuracy

    def train_step(self, batch):
        images, labels = batch
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        step = tf.convert_to_tensor(self.step_counter.value)
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(self.seed, tf.int64), step]), 4)
        targets = other_class(labels, self.num_classes, seeds[0])
        zero = tf.zeros(())
        with tf.GradientTape() as tape:
            edits = self.translator([images, targets], training=True)
            logits, class_logits = self._discriminate(edits, targets, seeds[1])
            g_loss = tf.reduce_mean(self.gan_loss.generator(logits))
            g_accuracy = zero
            if class_logits is not None:
                class_loss, g_accuracy = self._class_loss(targets, class_logits)
                g_loss += self.aux_class_weight * class_loss
            identity = tf.reduce_mean(tf.abs(self.translator([images, labels], training=True) - images))
            cycle = tf.reduce_mean(tf.abs(self.translator([edits, labels], training=True) - images))
            g_loss += self.identity_weight * identity + self.cycle_weight * cycle
        grads = tape.gradient(g_loss, self.translator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.translator.trainable_variables))

        def d_step():
            with tf.GradientTape() as d_tape:
                real_logits, real_class_logits = self._discriminate(images, labels, seeds[2])
                fake_logits, _ = self._discriminate(tf.stop_gradient(edits), targets, seeds[3])
                real_loss, fake_loss = self.gan_loss.discriminator(real_logits, fake_logits)
                d_loss = (tf.reduce_mean(real_loss) + tf.reduce_mean(fake_loss)) / 2.0
                accuracy = zero
                if real_class_logits is not None:  # the class head learns from real images only
                    class_loss, accuracy = self._class_loss(labels, real_class_logits)
                    d_loss += self.aux_class_weight * class_loss
            d_grads = d_tape.gradient(d_loss, self.discriminator.trainable_variables)
            self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
            return d_loss, accuracy

        d_now = tf.equal(step % self.d_every, 0)
        d_loss, d_accuracy = tf.cond(d_now, d_step, lambda: (zero, zero))
        self.step_counter.assign_add(1)
        d_weight = tf.cast(d_now, tf.float32)
        self.trackers["g_loss"].update_state(g_loss)
        self.trackers["identity_l1"].update_state(identity)
        self.trackers["cycle_l1"].update_state(cycle)
        self.trackers["g_class_accuracy"].update_state(g_accuracy)
        self.trackers["d_loss"].update_state(d_loss, sample_weight=d_weight)
        self.trackers["d_class_accuracy"].update_state(d_accuracy, sample_weight=d_weight)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def build_translation_gan(config: TranslationConfig) -> TranslationGAN:
    model = TranslationGAN(
        build_translator(config.image_size, config.num_classes, config.filters, config.residual_blocks),
        discriminator_for(config), config.num_classes, config.d_every, config.identity_weight, config.cycle_weight,
        config.aux_class_weight, config.diff_augment, config.seed,
    )
    model.compile(
        keras.optimizers.Adam(config.learning_rate, beta_1=0.5, beta_2=0.999),
        keras.optimizers.Adam(config.learning_rate * config.d_lr_multiplier, beta_1=0.5, beta_2=0.999),
    )
    return model


@keras.saving.register_keras_serializable(package="covid_keras")
class SourcePicker(keras.layers.Layer):
    """[noise [B, >=2], target label [B]] -> a bank image of another class, picked by the noise.

    noise[:, 0] picks the image within the source class (through the normal CDF, so standard
    normal noise picks uniformly); noise[:, 1] picks the source class among the other classes.
    """

    def __init__(self, bank_images: np.ndarray, bank_labels: np.ndarray, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        bank_labels = np.asarray(bank_labels, np.int64)
        counts = np.bincount(bank_labels, minlength=num_classes)
        if counts.min() < 1:
            raise ValueError(f"the source bank needs images of every class, has {counts.tolist()}")
        self.num_classes = int(num_classes)
        order = np.argsort(bank_labels, kind="stable")
        self._images = tf.constant(np.asarray(bank_images, np.float32)[order])
        self._starts = tf.constant(np.concatenate([[0], np.cumsum(counts)[:-1]]), tf.int64)
        self._counts = tf.constant(counts, tf.int64)

    def call(self, inputs):
        noise, label = inputs
        uniform = 0.5 * (1.0 + tf.math.erf(tf.cast(noise[:, :2], tf.float32) / np.sqrt(2.0)))
        uniform = tf.clip_by_value(uniform, 0.0, 1.0 - 1e-7)
        label = tf.cast(label, tf.int64)
        offset = 1 + tf.cast(tf.floor(uniform[:, 1] * (self.num_classes - 1)), tf.int64)
        source = (label + offset) % self.num_classes
        within = tf.cast(tf.floor(uniform[:, 0] * tf.cast(tf.gather(self._counts, source), tf.float32)), tf.int64)
        return tf.gather(self._images, tf.gather(self._starts, source) + within)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], *self._images.shape[1:])


def source_sampler(translator: keras.Model, bank_images: np.ndarray, bank_labels: np.ndarray,
                   num_classes: int, noise_dim: int = 2) -> keras.Model:
    """The translator by the generator contract: [noise [B, noise_dim], label [B]] -> an edit of a
    bank image (real train images, float in [-1, 1]) of another class into `label`."""
    if noise_dim < 2:
        raise ValueError(f"noise_dim must be >= 2 (image and source class), got {noise_dim}")
    noise = keras.Input((noise_dim,), name="noise")
    label = keras.Input((), dtype="int32", name="label")
    source = SourcePicker(bank_images, bank_labels, num_classes, name="source_picker")([noise, label])
    return keras.Model([noise, label], translator([source, label], training=False), name="translation_sampler")


class _SaveEveryEpoch(keras.callbacks.Callback):
    def __init__(self, run_dir: pathlib.Path, record: dict, budget_seconds: float | None):
        super().__init__()
        self.run_dir, self.record, self.budget = run_dir, record, budget_seconds

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        atomic_save_weights(self.model.translator, self.run_dir / WEIGHTS_FILE)
        atomic_save_weights(self.model.discriminator, self.run_dir / DISCRIMINATOR_WEIGHTS_FILE)
        self.record.update(epochs_done=epoch + 1, seconds=time.monotonic() - self.start,
                           last_logs={k: float(v) for k, v in (logs or {}).items()})
        files.atomic_write_json(self.run_dir / CONFIG_FILE, self.record, sort_keys=True)
        if self.budget is not None and time.monotonic() - self.start > self.budget:
            self.model.stop_training = True


def train_translation_gan(config: TranslationConfig, data_spec, run_dir, minutes: float | None = None,
                          verbose: int = 2) -> dict:
    """Train on the spec's real train split; writes run_dir/translation.json, the weights every epoch
    (atomically) and samples.png. Refuses a folder that already holds a translation run."""
    run_dir = pathlib.Path(run_dir)
    if (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(f"{run_dir} already holds a translation run; choose another run folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    train = data.gan_dataset(data.load_split(data_spec, "train"), config.image_size, config.batch_size,
                             shuffle_seed=config.seed)
    model = build_translation_gan(config)
    record = {"kind": "translation", "config": config.to_dict(), "data": str(data_spec),
              "class_names": list(data.class_names(data_spec)), "epochs_done": 0}
    files.atomic_write_json(run_dir / CONFIG_FILE, record, sort_keys=True)
    budget = None if minutes is None else 60.0 * minutes
    model.fit(train, epochs=config.epochs, verbose=verbose, callbacks=[_SaveEveryEpoch(run_dir, record, budget)],
              shuffle=False)  # the dataset shuffles itself
    images, labels = next(iter(data.gan_dataset(data.load_split(data_spec, "train"), config.image_size, 8,
                                                shuffle_seed=None)))
    targets = other_class(tf.cast(labels, tf.int32), config.num_classes, tf.constant([config.seed, 0], tf.int64))
    edits = model.translator([images, targets], training=False)
    plots.save_image_grid(np.stack([images.numpy(), edits.numpy()]), run_dir / "samples.png",
                          row_labels=["real", "edited"], title="train images (top) edited into the other class (bottom)")
    return record


def is_translation_run(run_dir) -> bool:
    return (pathlib.Path(run_dir) / CONFIG_FILE).is_file()


def load_translation_run(run_dir) -> tuple[keras.Model, TranslationConfig, list[str]]:
    """(the trained translator, its config, class names) of a translation run folder."""
    run_dir = pathlib.Path(run_dir)
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    config = TranslationConfig(**record["config"])
    translator = build_translator(config.image_size, config.num_classes, config.filters, config.residual_blocks)
    translator.load_weights(run_dir / WEIGHTS_FILE)
    return translator, config, record["class_names"]

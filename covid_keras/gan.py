"""The study's conditional GAN in Keras 3: generator, discriminator and `ConditionalGAN(keras.Model)`.

Generator: label -> Embedding -> Dense -> a base-size map, concatenated channel-wise with the noise
map (Dense -> ReLU -> reshape); stride-2 `Conv2DTranspose` k4 "conv_layer_set" blocks (BN + ReLU);
a final stride-1 `Conv2DTranspose` + Tanh block. The base size and the cropping of each block (the
Keras form of PyTorch's `padding` / `output_padding`) come from `upsampling_plan`, so any image size
the blocks can reach comes out exactly that size.

Discriminator: label -> Embedding -> Dense(H*W) -> an HxWx1 plane concatenated with the image;
conv k4 s1 + LeakyReLU; stride-2 conv + BN + LeakyReLU sets; conv k4 s1 + LeakyReLU; Flatten;
Dropout; Dense(1). It returns a LOGIT: the study's Sigmoid + BCE is the same function as
BCE(from_logits=True) on the logit, which is numerically stable when D saturates (the study's runs
drove D's loss to 0). P(real) is `sigmoid(logit)`.

Training (`ConditionalGAN.train_step`) follows the study's loop: the generator steps on every batch
(fresh noise, random labels, loss against "real"); the discriminator steps only when
`step % d_every == 0`, on the batch's real images and the same (detached) fakes, with loss
(BCE(real, 1) + BCE(fake, 0)) / 2. The step counter is a model variable, saved with the weights.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf

# Below this the Dense layers that make the base map are wasteful; above it, huge.
MAX_BASE_SIZE = 32
# PyTorch BatchNorm2d defaults (momentum 0.1 there is 0.9 here), as in the study. Synchronized: under
# MirroredStrategy the statistics are the global batch's, as on one device. Convs before BN have no
# bias (the study's had one): BN removes it, so its gradient is rounding noise, which Adam turns
# into full-size random steps.
_BN = dict(momentum=0.9, epsilon=1e-5, synchronized=True)


# --------------------------------------------------------------------------- generator


def upsampling_plan(image_size: int, num_blocks: int) -> tuple[int, list[int]]:
    """(base size, crop per stride-2 block) so that the generator outputs exactly `image_size`.

    A k4 s2 `Conv2DTranspose` with "valid" padding maps n -> 2n + 2; cropping c rows makes
    2n + 2 - c (PyTorch: padding and output_padding). The final k4 s1 block maps n -> n + 1
    (n + 3, cropped by 2, like the study's padding 1). Working back from the output with the
    smallest crop (0 or 1) gives, at 150 px with 4 blocks, 8 -> 17 -> 36 -> 74 -> 149 -> 150:
    the study's 8x8 base and output (its intermediate sizes differ slightly).
    """
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if num_blocks < 1:
        raise ValueError(f"the generator needs at least one upsampling block, got {num_blocks}")
    size = int(image_size) - 1  # input of the final k4 s1 block
    crops = []
    for _ in range(num_blocks):
        previous = (size - 1) // 2
        if previous < 1:
            raise ValueError(
                f"image_size {image_size} is too small for {num_blocks} upsampling blocks "
                f"(generator_filters has {num_blocks} entries): use fewer blocks or a larger size"
            )
        crops.append(2 * previous + 2 - size)
        size = previous
    if size > MAX_BASE_SIZE:
        raise ValueError(
            f"image_size {image_size} with {num_blocks} upsampling blocks needs a {size}x{size} base map "
            f"(max {MAX_BASE_SIZE}): add entries to generator_filters"
        )
    return size, crops[::-1]


def _crop(crop: int, name: str) -> keras.layers.Layer:
    # PyTorch's output_padding keeps the extra row at the bottom/right, so odd crops take it from the top/left.
    first, second = (crop + 1) // 2, crop // 2
    return keras.layers.Cropping2D(((first, second), (first, second)), name=name)


def build_generator(
    image_size: int,
    noise_dim: int = 128,
    num_classes: int = 2,
    embedding_dim: int = 50,
    filters: Sequence[int] = (256, 128, 64, 32),
    base_channels: int = 128,
    name: str = "generator",
) -> keras.Model:
    """Inputs [noise float32 [B, noise_dim], label int32 [B]] -> image float32 [B, S, S, 1] in [-1, 1]."""
    base, crops = upsampling_plan(image_size, len(filters))
    noise = keras.Input((noise_dim,), name="noise")
    label = keras.Input((), dtype="int32", name="label")

    x = keras.layers.Dense(base * base * base_channels, name="noise_dense")(noise)
    x = keras.layers.ReLU(name="noise_relu")(x)
    x = keras.layers.Reshape((base, base, base_channels), name="noise_map")(x)
    y = keras.layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
    y = keras.layers.Dense(base * base, name="label_dense")(y)
    y = keras.layers.Reshape((base, base, 1), name="label_map")(y)
    x = keras.layers.Concatenate(axis=-1, name="noise_label_concat")([x, y])

    for i, (n_filters, crop) in enumerate(zip(filters, crops), start=1):
        block = f"conv_layer_set_{i}"
        x = keras.layers.Conv2DTranspose(
            n_filters, 4, strides=2, padding="valid", use_bias=False, name=f"{block}_deconv"
        )(x)
        if crop:
            x = _crop(crop, f"{block}_crop")(x)
        x = keras.layers.BatchNormalization(name=f"{block}_bn", **_BN)(x)
        x = keras.layers.ReLU(name=f"{block}_relu")(x)

    x = keras.layers.Conv2DTranspose(1, 4, strides=1, padding="valid", name="final_deconv")(x)
    x = _crop(2, "final_crop")(x)
    image = keras.layers.Activation("tanh", name="tanh")(x)
    return keras.Model([noise, label], image, name=name)


# --------------------------------------------------------------------------- discriminator


def _valid_output_size(image_size: int, num_strided: int) -> int:
    size = image_size - 3  # first k4 s1 conv
    for _ in range(num_strided):
        size = (size - 4) // 2 + 1 if size >= 4 else 0
    return size - 3  # last k4 s1 conv


def resolve_discriminator_padding(image_size: int, num_layers: int, padding: str = "auto") -> str:
    """"valid" (the study's) where the image survives it, "same" otherwise when `padding` is "auto"."""
    if padding not in ("auto", "valid", "same"):
        raise ValueError(f"discriminator padding must be 'auto', 'valid' or 'same', got {padding!r}")
    fits_valid = _valid_output_size(image_size, num_layers - 2) >= 1
    if padding == "auto":
        return "valid" if fits_valid else "same"
    if padding == "valid" and not fits_valid:
        raise ValueError(
            f"image_size {image_size} is too small for a discriminator of {num_layers} 'valid' k4 convs: "
            "use discriminator_padding 'same' or 'auto'"
        )
    return padding


def build_discriminator(
    image_size: int,
    num_classes: int = 2,
    embedding_dim: int = 50,
    filters: Sequence[int] = (64, 64, 64, 64, 64),
    padding: str = "auto",
    leaky_relu_slope: float = 0.01,
    dropout: float = 0.5,
    name: str = "discriminator",
) -> keras.Model:
    """Inputs [image float32 [B, S, S, 1], label int32 [B]] -> logit [B, 1] (P(real) = sigmoid(logit))."""
    if len(filters) < 2:
        raise ValueError(f"the discriminator needs >= 2 conv layers (first and last), got filters={filters}")
    padding = resolve_discriminator_padding(image_size, len(filters), padding)
    image = keras.Input((image_size, image_size, 1), name="image")
    label = keras.Input((), dtype="int32", name="label")

    y = keras.layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
    y = keras.layers.Dense(image_size * image_size, name="label_dense")(y)
    y = keras.layers.Reshape((image_size, image_size, 1), name="label_plane")(y)
    x = keras.layers.Concatenate(axis=-1, name="image_label_concat")([image, y])

    x = keras.layers.Conv2D(filters[0], 4, strides=1, padding=padding, name="conv_in")(x)
    x = keras.layers.LeakyReLU(leaky_relu_slope, name="conv_in_lrelu")(x)
    for i, n_filters in enumerate(filters[1:-1], start=1):
        block = f"conv_layer_set_{i}"
        x = keras.layers.Conv2D(n_filters, 4, strides=2, padding=padding, use_bias=False, name=f"{block}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{block}_bn", **_BN)(x)
        x = keras.layers.LeakyReLU(leaky_relu_slope, name=f"{block}_lrelu")(x)
    x = keras.layers.Conv2D(filters[-1], 4, strides=1, padding=padding, name="conv_out")(x)
    x = keras.layers.LeakyReLU(leaky_relu_slope, name="conv_out_lrelu")(x)

    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logit = keras.layers.Dense(1, name="logit")(x)
    return keras.Model([image, label], logit, name=name)


# --------------------------------------------------------------------------- losses


def make_loss(name: str = "bce") -> keras.losses.Loss:
    """A per-example loss on discriminator logits (reduction None: the GAN averages by GLOBAL batch)."""
    if name == "bce":
        return keras.losses.BinaryCrossentropy(from_logits=True, reduction=None, name="bce")
    raise ValueError(f"unknown GAN loss {name!r}; choose one of ['bce']")


# --------------------------------------------------------------------------- the GAN


def _global_sum(value: tf.Tensor) -> tf.Tensor:
    """Sum over replicas (identity without a distribution strategy)."""
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


@keras.saving.register_keras_serializable(package="covid_keras")
class ConditionalGAN(keras.Model):
    """Generator + discriminator trained with the study's loop (see the module docstring).

    Losses are averaged over the GLOBAL batch (`tf.nn.compute_average_loss`), so under
    `tf.distribute.MirroredStrategy` the summed replica gradients equal the single-device ones.
    Noise and fake labels are drawn statelessly from (seed, step) for the global batch and each
    replica takes its slice: a resumed or distributed run draws what a single-device run would.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        noise_dim: int,
        num_classes: int,
        d_every: int = 10,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if d_every < 1:
            raise ValueError(f"d_every must be >= 1, got {d_every}")
        self.generator = generator
        self.discriminator = discriminator
        self.noise_dim = int(noise_dim)
        self.num_classes = int(num_classes)
        self.d_every = int(d_every)
        self.seed = int(seed)
        # Training steps taken so far; D steps when step % d_every == 0. Saved with the weights.
        self.step_counter = self.add_weight(
            name="step_counter", shape=(), dtype="int64", initializer="zeros",
            trainable=False, aggregation="only_first_replica",
        )
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.d_real_accuracy_tracker = keras.metrics.Mean(name="d_real_accuracy")
        self.d_fake_accuracy_tracker = keras.metrics.Mean(name="d_fake_accuracy")
        self.built = True

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "noise_dim": self.noise_dim,
            "num_classes": self.num_classes,
            "d_every": self.d_every,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict) -> "ConditionalGAN":
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        loss_fn: Callable | None = None,
        **kwargs,
    ) -> None:
        """`loss_fn(y_true, logits)` must return PER-EXAMPLE losses (default: `make_loss("bce")`)."""
        super().compile(optimizer=None, **kwargs)
        loss_fn = loss_fn or make_loss("bce")
        if isinstance(loss_fn, keras.losses.Loss) and loss_fn.reduction not in (None, "none"):
            raise ValueError(
                f"loss_fn must return per-example losses (reduction=None), got reduction={loss_fn.reduction!r}"
            )
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.loss_fn = loss_fn
        # Optimizer slots exist before any step, so a checkpoint can be loaded into them.
        g_optimizer.build(self.generator.trainable_variables)
        d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.g_loss_tracker, self.d_loss_tracker, self.d_real_accuracy_tracker, self.d_fake_accuracy_tracker]

    def call(self, inputs, training: bool = False):
        """[noise, label] -> generated images."""
        return self.generator(inputs, training=training)

    def _noise_and_labels(self, local_batch: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        global_batch = local_batch * replicas
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(self.seed, tf.int64), step]), 2)
        noise = tf.random.stateless_normal([global_batch, self.noise_dim], seed=seeds[0])
        labels = tf.random.stateless_uniform([global_batch], seed=seeds[1], maxval=self.num_classes, dtype=tf.int32)
        start = replica * local_batch
        return noise[start : start + local_batch], labels[start : start + local_batch]

    def _average(self, per_example_loss: tf.Tensor) -> tf.Tensor:
        return tf.nn.compute_average_loss(per_example_loss)

    def _generator_step(self, noise, fake_labels):
        with tf.GradientTape() as tape:
            fakes = self.generator([noise, fake_labels], training=True)
            logits = self.discriminator([fakes, fake_labels], training=True)
            g_loss = self._average(self.loss_fn(tf.ones_like(logits), logits))
        grads = tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
        return g_loss, tf.stop_gradient(fakes)

    def _discriminator_step(self, real_images, real_labels, fakes, fake_labels):
        with tf.GradientTape() as tape:
            real_logits = self.discriminator([real_images, real_labels], training=True)
            fake_logits = self.discriminator([fakes, fake_labels], training=True)
            real_loss = self._average(self.loss_fn(tf.ones_like(real_logits), real_logits))
            fake_loss = self._average(self.loss_fn(tf.zeros_like(fake_logits), fake_logits))
            d_loss = (real_loss + fake_loss) / 2.0
        grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))
        real_accuracy = self._average(tf.cast(real_logits[:, 0] > 0, tf.float32))
        fake_accuracy = self._average(tf.cast(fake_logits[:, 0] < 0, tf.float32))
        return d_loss, real_accuracy, fake_accuracy

    def _discriminator_step_if(self, d_steps_now: tf.Tensor, d_step: Callable):
        """`d_step` when `d_steps_now`, else a no-op, where replicas must synchronise.

        tf.distribute forbids synchronisation (gradient all-reduce, optimizer updates, synchronized
        BN) inside `tf.cond` in a replica, so the step always runs and a skipped step is undone:
        D's weights, BN statistics and optimizer state (slots, iterations, hence its schedule) are
        put back. Costs a D step per batch instead of one per `d_every`; the result is the same.
        """
        state = [v.value for v in self.discriminator.variables + self.d_optimizer.variables]
        saved = [tf.identity(v) for v in state]
        results = d_step()

        def restore(strategy, keep, saved_values):
            for variable, value in zip(state, saved_values):
                strategy.extended.update(
                    variable, lambda v, s, k: v.assign(tf.where(k, v, s)), args=(value, keep), group=False
                )

        with tf.control_dependencies(results):
            tf.distribute.get_replica_context().merge_call(restore, args=(d_steps_now, saved))
        weight = tf.cast(d_steps_now, tf.float32)
        return tuple(value * weight for value in results)

    def train_step(self, data):
        real_images, real_labels = data
        real_labels = tf.cast(tf.reshape(real_labels, [-1]), tf.int32)
        step = tf.convert_to_tensor(self.step_counter.value)
        noise, fake_labels = self._noise_and_labels(tf.shape(real_images)[0], step)

        g_loss, fakes = self._generator_step(noise, fake_labels)
        d_steps_now = tf.equal(step % self.d_every, 0)
        d_step = lambda: self._discriminator_step(real_images, real_labels, fakes, fake_labels)  # noqa: E731
        if tf.distribute.get_replica_context().num_replicas_in_sync == 1:
            d_loss, real_accuracy, fake_accuracy = tf.cond(
                d_steps_now, d_step, lambda: (tf.zeros(()), tf.zeros(()), tf.zeros(()))
            )
        else:
            d_loss, real_accuracy, fake_accuracy = self._discriminator_step_if(d_steps_now, d_step)
        self.step_counter.assign_add(1)

        # Trackers hold GLOBAL values; D's are weighted 0 on skipped steps so they are not diluted.
        d_weight = tf.cast(d_steps_now, tf.float32)
        self.g_loss_tracker.update_state(_global_sum(g_loss))
        self.d_loss_tracker.update_state(_global_sum(d_loss), sample_weight=d_weight)
        self.d_real_accuracy_tracker.update_state(_global_sum(real_accuracy), sample_weight=d_weight)
        self.d_fake_accuracy_tracker.update_state(_global_sum(fake_accuracy), sample_weight=d_weight)
        return {m.name: m.result() for m in self.metrics}

"""The conditional GAN's training in Keras 3: the adversarial losses and `ConditionalGAN(keras.Model)`.

Training (`ConditionalGAN.train_step`) follows the study's loop: the generator steps on every batch
(fresh noise, random labels, loss against "real"); the discriminator steps only when
`step % d_every == 0`, on the batch's real images and the same (detached) fakes, with loss
(BCE(real, 1) + BCE(fake, 0)) / 2. The step counter is a model variable, saved with the weights.

Beyond the study (all off by default, so runs 1-3 are the study's; the "stable" preset turns them
on): class-conditional BatchNorm in the generator, a projection discriminator (Miyato & Koyama
2018) with spectral normalisation instead of BatchNorm, a hinge loss, DiffAugment of every
discriminator input (`covid_keras.gan.diffaugment`), an auxiliary classification head on the discriminator
(AC-GAN: D learns the class of real images, G is rewarded when D recognises the class of its
fakes), an exponential moving average of the generator's weights that samples are drawn from, and
a class guide (a classifier trained on real images, then frozen, whose cross-entropy on the fakes
G also minimises: the discriminator's own class head stays a weak classifier on real images), and
a mode-seeking term (Mao et al. 2019, MSGAN): G is penalised when two noises of the same class give
nearly the same image; and resize-convolution upsampling in the generator, which cannot paint the
transposed convolutions' checkerboard.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from covid_keras.gan import diffaugment
from covid_keras.gan.guide import ClassGuideTerm
from covid_keras.gan.losses import (
    GanLoss,
    average,
    class_loss_and_accuracy,
    global_sum,
    replica_share,
)

# --------------------------------------------------------------------------- the GAN


@keras.saving.register_keras_serializable(package="covid_keras")
class ConditionalGAN(keras.Model):
    """Generator + discriminator trained with the study's loop (see the module docstring).

    Losses are averaged over the GLOBAL batch (`tf.nn.compute_average_loss`), so under
    `tf.distribute.MirroredStrategy` the summed replica gradients equal the single-device ones.
    Noise and fake labels are drawn statelessly from (seed, step) for the global batch and each
    replica takes its slice: a resumed or distributed run draws what a single-device run would.
    (DiffAugment draws per replica, so with it a distributed run is equal in distribution only.)

    `diff_augment`: DiffAugment policies applied to every discriminator input, real and fake, in
    both steps; never to what the generator returns. `ema_decay` > 0 keeps `ema_generator`, an
    exponential moving average of the generator's weights, which `sampling_generator` and
    `call` use (its decay warms up as min(ema_decay, (1 + t) / (10 + t)) at step t).
    `aux_class_weight` > 0 needs a discriminator with an auxiliary classifier: D also minimises
    the class cross-entropy on real images, G that on its fakes, times the weight.
    `guide_term` (a `ClassGuideTerm`: a frozen class guide, its loss and its weight's schedule)
    adds what a classifier trained on real images thinks of the fakes to G's loss.
    `mode_seeking_weight` > 0 pairs the fakes (the second half of each replica's batch gets the
    first half's labels) and adds weight / (r + 1e-5) to G's loss, where r is the mean absolute
    difference between paired images over that between their noises (MSGAN's form): a generator
    that ignores its noise within a class pays the most.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        noise_dim: int,
        num_classes: int,
        d_every: int = 10,
        seed: int = 0,
        diff_augment: Sequence[str] = (),
        ema_decay: float = 0.0,
        aux_class_weight: float = 0.0,
        guide_term: ClassGuideTerm | None = None,
        mode_seeking_weight: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if d_every < 1:
            raise ValueError(f"d_every must be >= 1, got {d_every}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.has_auxiliary_classifier = len(discriminator.outputs) == 2
        if aux_class_weight < 0 or (aux_class_weight > 0 and not self.has_auxiliary_classifier):
            raise ValueError(
                f"aux_class_weight {aux_class_weight} needs a discriminator built with auxiliary_classifier=True "
                "and a weight >= 0"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.guide_term = guide_term
        # The guide's network is tracked under this name: its weights travel in every resume point
        # as class_guide/..., as they always have.
        self.class_guide = guide_term.network if guide_term is not None else None
        if mode_seeking_weight < 0:
            raise ValueError(f"mode_seeking_weight must be >= 0, got {mode_seeking_weight}")
        self.mode_seeking_weight = float(mode_seeking_weight)
        self.noise_dim = int(noise_dim)
        self.num_classes = int(num_classes)
        self.d_every = int(d_every)
        self.seed = int(seed)
        self.diff_augment = diffaugment.check_policies(diff_augment)
        self.ema_decay = float(ema_decay)
        self.aux_class_weight = float(aux_class_weight)
        self.ema_generator = None
        if self.ema_decay > 0:
            self.ema_generator = keras.models.clone_model(generator)
            self.ema_generator.set_weights(generator.get_weights())
        # Training steps taken so far; D steps when step % d_every == 0. Saved with the weights.
        self.step_counter = self.add_weight(
            name="step_counter", shape=(), dtype="int64", initializer="zeros",
            trainable=False, aggregation="only_first_replica",
        )
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.d_real_accuracy_tracker = keras.metrics.Mean(name="d_real_accuracy")
        self.d_fake_accuracy_tracker = keras.metrics.Mean(name="d_fake_accuracy")
        # The auxiliary head's accuracy on real images and on G's fakes (their conditioning label).
        self.d_class_accuracy_tracker = keras.metrics.Mean(name="d_class_accuracy")
        self.g_class_accuracy_tracker = keras.metrics.Mean(name="g_class_accuracy")
        # The share of fakes the class guide labels as their conditioning class.
        self.g_guide_accuracy_tracker = keras.metrics.Mean(name="g_guide_accuracy")
        # Paired fakes' image distance over their noise distance (see _mode_seeking_ratio).
        self.g_mode_seeking_ratio_tracker = keras.metrics.Mean(name="g_mode_seeking_ratio")
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
            "diff_augment": list(self.diff_augment),
            "ema_decay": self.ema_decay,
            "aux_class_weight": self.aux_class_weight,
            "guide_term": self.guide_term.get_config() if self.guide_term is not None else None,
            "mode_seeking_weight": self.mode_seeking_weight,
        }

    @classmethod
    def from_config(cls, config: dict) -> "ConditionalGAN":
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        if config.get("guide_term"):
            config["guide_term"] = ClassGuideTerm.from_config(config["guide_term"])
        return cls(**config)

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        loss: str | GanLoss = "bce",
        **kwargs,
    ) -> None:
        """`loss` is a `GanLoss` or its name ("bce", "hinge"). Wrap the optimizers in
        `keras.optimizers.LossScaleOptimizer` for mixed_float16: the train step scales the losses."""
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.gan_loss = loss if isinstance(loss, GanLoss) else GanLoss(loss)
        # Optimizer slots exist before any step, so a checkpoint can be loaded into them.
        g_optimizer.build(self.generator.trainable_variables)
        d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        trackers = [self.g_loss_tracker, self.d_loss_tracker, self.d_real_accuracy_tracker, self.d_fake_accuracy_tracker]
        if self.has_auxiliary_classifier:
            trackers += [self.d_class_accuracy_tracker, self.g_class_accuracy_tracker]
        if self.guide_term is not None:
            trackers.append(self.g_guide_accuracy_tracker)
        if self.mode_seeking_weight > 0:
            trackers.append(self.g_mode_seeking_ratio_tracker)
        return trackers

    @property
    def sampling_generator(self) -> keras.Model:
        """The generator to draw samples from: the moving average when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def call(self, inputs, training: bool = False):
        """[noise, label] -> generated images (from `sampling_generator` unless training)."""
        generator = self.generator if training else self.sampling_generator
        return generator(inputs, training=training)

    def _noise_and_labels(self, local_batch: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        global_batch = local_batch * replicas
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(self.seed, tf.int64), step]), 2)
        noise = tf.random.stateless_normal([global_batch, self.noise_dim], seed=seeds[0])
        labels = tf.random.stateless_uniform([global_batch], seed=seeds[1], maxval=self.num_classes, dtype=tf.int32)
        start = replica * local_batch
        noise, labels = noise[start : start + local_batch], labels[start : start + local_batch]
        if self.mode_seeking_weight > 0:
            pairs = local_batch // 2  # fake i and fake i + pairs share a label
            labels = tf.concat([labels[:pairs], labels[:pairs], labels[2 * pairs :]], axis=0)
        return noise, labels

    def _augment_seeds(self, step: tf.Tensor) -> tf.Tensor:
        """[3, 2] seeds: G's view of the fakes, D's view of the reals, D's view of the fakes."""
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        base = tf.stack([tf.constant(self.seed, tf.int64) * 1000 + 1 + replica, step])
        return tf.random.experimental.stateless_split(base, 3)

    def augment(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """What the discriminator sees of `images` (the identity without DiffAugment policies)."""
        if not self.diff_augment:
            return images
        return diffaugment.diff_augment(images, self.diff_augment, seed)

    def _discriminate(self, images, labels) -> tuple[tf.Tensor, tf.Tensor | None]:
        outputs = self.discriminator([images, labels], training=True)
        if self.has_auxiliary_classifier:
            return outputs[0], outputs[1]
        return outputs, None

    def _mode_seeking_ratio(self, noise: tf.Tensor, fakes: tf.Tensor) -> tf.Tensor:
        """mean|fake_i - fake_{i+n}| / mean|noise_i - noise_{i+n}| over this replica's n = B // 2 pairs."""
        pairs = tf.shape(fakes)[0] // 2
        fakes = tf.cast(fakes, tf.float32)
        image_gap = tf.reduce_mean(tf.abs(fakes[:pairs] - fakes[pairs : 2 * pairs]))
        noise_gap = tf.reduce_mean(tf.abs(noise[:pairs] - noise[pairs : 2 * pairs]))
        return image_gap / noise_gap

    def _mode_seeking_loss(self, ratio: tf.Tensor) -> tf.Tensor:
        return replica_share(1.0 / (ratio + 1e-5))

    def _generator_step(self, noise, fake_labels, real_images, real_labels, augment_seed, step):
        with tf.GradientTape() as tape:
            fakes = self.generator([noise, fake_labels], training=True)
            logits, class_logits = self._discriminate(self.augment(fakes, augment_seed), fake_labels)
            g_loss = average(self.gan_loss.generator(logits))
            class_accuracy = tf.zeros(())
            if class_logits is not None:
                class_loss, class_accuracy = class_loss_and_accuracy(fake_labels, class_logits)
                g_loss += self.aux_class_weight * class_loss
            guide_accuracy = tf.zeros(())
            if self.guide_term is not None:
                guide_seed = tf.random.experimental.stateless_fold_in(augment_seed, 1)
                guide_loss, guide_accuracy = self.guide_term(fakes, fake_labels, real_images, real_labels, guide_seed)
                g_loss += self.guide_term.weight_at(step) * guide_loss
            mode_seeking_ratio = tf.zeros(())
            if self.mode_seeking_weight > 0:
                mode_seeking_ratio = self._mode_seeking_ratio(noise, fakes)
                g_loss += self.mode_seeking_weight * self._mode_seeking_loss(mode_seeking_ratio)
            scaled_loss = self.g_optimizer.scale_loss(g_loss)
        grads = tape.gradient(scaled_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
        if self.ema_generator is not None:
            self._update_ema()
        return g_loss, class_accuracy, guide_accuracy, mode_seeking_ratio, tf.stop_gradient(fakes)

    def _update_ema(self) -> None:
        # Warm-up (as tf.train.ExponentialMovingAverage's num_updates): early on the average would
        # otherwise be dominated by the random initial weights for ~1/(1 - decay) steps.
        updates = tf.cast(self.step_counter.value, tf.float32) + 1.0
        decay = tf.minimum(self.ema_decay, updates / (updates + 9.0))
        targets = self.ema_generator.weights
        values = [decay * e.value + (1.0 - decay) * w.value
                  for e, w in zip(targets, self.generator.weights)]

        def assign(strategy, new_values):
            for variable, value in zip(targets, new_values):
                # `.value`: the tf.Variable under the Keras one (a distributed one under a strategy), as Keras'
                # own optimizer updates it; the Keras variable itself fails a strategy's update.
                strategy.extended.update(variable.value, lambda v, x: v.assign(x), args=(value,), group=False)

        # The generator's weights are identical on every replica, so is the average: assign it
        # from the cross-replica context, which works with and without a distribution strategy.
        tf.distribute.get_replica_context().merge_call(assign, args=(values,))

    def _discriminator_step(self, real_images, real_labels, fakes, fake_labels, augment_seeds):
        with tf.GradientTape() as tape:
            real_logits, real_class_logits = self._discriminate(self.augment(real_images, augment_seeds[1]), real_labels)
            fake_logits, _ = self._discriminate(self.augment(fakes, augment_seeds[2]), fake_labels)
            real_loss, fake_loss = self.gan_loss.discriminator(real_logits, fake_logits)
            d_loss = (average(real_loss) + average(fake_loss)) / 2.0
            class_accuracy = tf.zeros(())
            if real_class_logits is not None:
                class_loss, class_accuracy = class_loss_and_accuracy(real_labels, real_class_logits)
                d_loss += self.aux_class_weight * class_loss
            scaled_loss = self.d_optimizer.scale_loss(d_loss)
        grads = tape.gradient(scaled_loss, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))
        real_accuracy = average(tf.cast(real_logits[:, 0] > 0, tf.float32))
        fake_accuracy = average(tf.cast(fake_logits[:, 0] < 0, tf.float32))
        return d_loss, real_accuracy, fake_accuracy, class_accuracy

    def _discriminator_step_if(self, d_steps_now: tf.Tensor, d_step):
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
        augment_seeds = self._augment_seeds(step)

        g_loss, g_class_accuracy, g_guide_accuracy, g_mode_seeking_ratio, fakes = self._generator_step(
            noise, fake_labels, real_images, real_labels, augment_seeds[0], step
        )
        d_steps_now = tf.equal(step % self.d_every, 0)
        d_step = lambda: self._discriminator_step(real_images, real_labels, fakes, fake_labels, augment_seeds)  # noqa: E731
        if tf.distribute.get_replica_context().num_replicas_in_sync == 1:
            d_results = tf.cond(d_steps_now, d_step, lambda: (tf.zeros(()),) * 4)
        else:
            d_results = self._discriminator_step_if(d_steps_now, d_step)
        d_loss, real_accuracy, fake_accuracy, d_class_accuracy = d_results
        self.step_counter.assign_add(1)

        # Trackers hold GLOBAL values; D's are weighted 0 on skipped steps so they are not diluted.
        d_weight = tf.cast(d_steps_now, tf.float32)
        self.g_loss_tracker.update_state(global_sum(g_loss))
        self.d_loss_tracker.update_state(global_sum(d_loss), sample_weight=d_weight)
        self.d_real_accuracy_tracker.update_state(global_sum(real_accuracy), sample_weight=d_weight)
        self.d_fake_accuracy_tracker.update_state(global_sum(fake_accuracy), sample_weight=d_weight)
        if self.has_auxiliary_classifier:
            self.d_class_accuracy_tracker.update_state(global_sum(d_class_accuracy), sample_weight=d_weight)
            self.g_class_accuracy_tracker.update_state(global_sum(g_class_accuracy))
        if self.guide_term is not None:
            self.g_guide_accuracy_tracker.update_state(global_sum(g_guide_accuracy))
        if self.mode_seeking_weight > 0:
            # A ratio per replica, so averaged over replicas rather than summed.
            self.g_mode_seeking_ratio_tracker.update_state(global_sum(replica_share(g_mode_seeking_ratio)))
        return {m.name: m.result() for m in self.metrics}

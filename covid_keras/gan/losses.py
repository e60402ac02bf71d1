"""The GAN's loss pieces, shared by the model and its components: the adversarial losses, and the
replica-aware averages every loss term goes through (so that under a distribution strategy the
summed replica gradients equal the single-device ones)."""

from __future__ import annotations

import tensorflow as tf

from covid_keras.gan.config import LOSSES, check_choice


class GanLoss:
    """Per-example adversarial losses on discriminator logits (the GAN averages them by GLOBAL batch).

    "bce": the study's BCE on sigmoid(logit), computed from the logit (stable when D saturates);
    the generator's is the non-saturating -log sigmoid(fake). "hinge": D min relu(1 - real) +
    relu(1 + fake), G min -fake (SAGAN / BigGAN).
    """

    def __init__(self, name: str = "bce"):
        check_choice("GAN loss", name, LOSSES)
        self.name = name

    def discriminator(self, real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(per-example loss on real, per-example loss on fake), each [B]."""
        real, fake = real_logits[:, 0], fake_logits[:, 0]
        if self.name == "hinge":
            return tf.nn.relu(1.0 - real), tf.nn.relu(1.0 + fake)
        return (
            tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real), real),
            tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake), fake),
        )

    def generator(self, fake_logits: tf.Tensor) -> tf.Tensor:
        """Per-example generator loss [B]."""
        fake = fake_logits[:, 0]
        if self.name == "hinge":
            return -fake
        return tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake), fake)


def global_sum(value: tf.Tensor) -> tf.Tensor:
    """Sum over replicas (identity without a distribution strategy)."""
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def replica_share(batch_statistic: tf.Tensor) -> tf.Tensor:
    """A loss computed from this replica's batch statistics, divided by the number of replicas.

    Per-example losses are averaged over the global batch (`tf.nn.compute_average_loss`); a batch
    statistic is not per example, so this division is what makes the summed replica gradients average.
    """
    return batch_statistic / tf.cast(tf.distribute.get_replica_context().num_replicas_in_sync, tf.float32)


def average(per_example_loss: tf.Tensor) -> tf.Tensor:
    """A per-example loss [B] averaged over the GLOBAL batch."""
    return tf.nn.compute_average_loss(per_example_loss)


def class_loss_and_accuracy(labels: tf.Tensor, class_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(cross-entropy, accuracy) of class logits [B, C] against labels [B], each averaged as `average`."""
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, class_logits)
    hits = tf.cast(tf.equal(tf.argmax(class_logits, axis=-1, output_type=tf.int32), labels), tf.float32)
    return average(loss), average(hits)

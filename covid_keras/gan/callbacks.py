"""What a GAN run does at the end of each epoch: stop on NaN or at a wall-time budget, log the learning
rates, draw the sample grid, write the resume point atomically; and its loss curve at the end."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import distribute, plots
from covid_keras.files import atomic_save_weights, atomic_write_text
from covid_keras.gan.run_dir import (
    CHECKPOINT_DIR,
    DISCRIMINATOR_WEIGHTS,
    GENERATOR_WEIGHTS,
    LOSS_CSV,
    LOSS_CURVE,
    SNAPSHOT_DIR,
    STATE_FILE,
    WEIGHTS_SUFFIX,
)


def _finite(logs: dict | None) -> bool:
    return all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in (logs or {}).values())


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss. (Keras' TerminateOnNaN only watches a "loss" key.)"""

    def __init__(self):
        super().__init__()
        self.bad_epoch: int | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.bad_epoch is None and not _finite(logs):
            self.bad_epoch = self._epoch
            self.model.stop_training = True
            print(f"\nnon-finite GAN loss in epoch {self._epoch + 1} ({logs}): stopping; no checkpoint is written from here on")


class TimeBudget(keras.callbacks.Callback):
    """Stops training at the end of the first epoch that ends more than `seconds` after training began.

    Comparing GANs "at the same budget" means the same wall time on the same machine, whatever
    each one's speed per epoch. The run stays resumable: re-running continues from that epoch.
    Under several workers (`strategy`) the chief's clock decides for all, so they stop together:
    one stopping alone would leave the others waiting in the next step's all-reduce.
    """

    def __init__(self, seconds: float, strategy=None):
        super().__init__()
        self.seconds = float(seconds)
        self.strategy = strategy
        self.stopped_at: int | None = None

    def on_train_begin(self, logs=None):
        self._start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        over = time.monotonic() - self._start > self.seconds
        if self.strategy is not None:
            over = bool(distribute.chief_value(self.strategy, over))
        if over:
            self.stopped_at = epoch + 1
            self.model.stop_training = True
            print(f"\ntime budget of {self.seconds / 60:.1f} min used up after epoch {epoch + 1}: stopping (resumable)")


class LearningRateLogger(keras.callbacks.Callback):
    """Adds G's and D's current learning rates to the epoch logs (so the CSV shows the schedule)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["g_learning_rate"] = float(np.asarray(self.model.g_optimizer.learning_rate))
            logs["d_learning_rate"] = float(np.asarray(self.model.d_optimizer.learning_rate))


def sample_images(generator: keras.Model, noise: np.ndarray, num_classes: int) -> np.ndarray:
    """[num_classes, len(noise), S, S, 1] in [-1, 1]: the same noise for every label (one row each)."""
    per_class = len(noise)
    labels = np.repeat(np.arange(num_classes, dtype="int32"), per_class)
    images = generator([np.tile(noise, (num_classes, 1)), labels], training=False)
    images = np.asarray(images)
    return images.reshape(num_classes, per_class, *images.shape[1:])


class SampleGrid(keras.callbacks.Callback):
    """Saves samples/epoch_NNNNN.png every `every` epochs, at `last_epoch`, and at the epoch where
    training stopped early (time budget, NaN guard), so a run always ends with a grid.

    tensorboard_dir: the same samples also go there as TensorBoard images, one tag per class
    (`samples/<class>`), beside the losses Keras' TensorBoard callback logs.
    """

    def __init__(self, samples_dir: pathlib.Path, class_names: Sequence[str], noise: np.ndarray, every: int,
                 last_epoch: int, tensorboard_dir: pathlib.Path | None = None):
        super().__init__()
        self.samples_dir, self.class_names, self.noise = samples_dir, list(class_names), noise
        self.every, self.last_epoch = every, last_epoch
        self.tensorboard_dir = tensorboard_dir
        self._writer = None
        self._completed: int | None = None
        self._saved: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        self._completed = epoch + 1
        if self._completed % self.every == 0 or self._completed == self.last_epoch:
            self._save(self._completed)

    def on_train_end(self, logs=None):
        if self._completed is not None and self._saved != self._completed:
            self._save(self._completed)

    def _save(self, completed: int) -> None:
        images = sample_images(self.model.sampling_generator, self.noise, len(self.class_names))
        path = self.samples_dir / f"epoch_{completed:05d}.png"
        tmp = path.with_name(f".tmp-{path.name}")
        plots.save_image_grid(images, tmp, row_labels=self.class_names, title=f"epoch {completed}")
        os.replace(tmp, path)
        if self.tensorboard_dir is not None:
            self._write_tensorboard(images, completed)
        self._saved = completed

    def _write_tensorboard(self, images: np.ndarray, completed: int) -> None:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.tensorboard_dir))
        with self._writer.as_default():
            for label, name in enumerate(self.class_names):
                tf.summary.image(f"samples/{name}", (images[label] + 1.0) / 2.0, step=completed,
                                 max_outputs=len(images[label]))
        self._writer.flush()


class AtomicCheckpoint(keras.callbacks.Callback):
    """The resume point every epoch (see the module docstring) and kept weights every `keep_every` epochs.

    Skips saving once `nan_guard` has seen a non-finite loss, so the last good checkpoint stays.
    """

    def __init__(self, run_dir: pathlib.Path, keep_every: int, nan_guard: StopOnNonFiniteLoss | None = None):
        super().__init__()
        self.run_dir, self.keep_every, self.nan_guard = run_dir, keep_every, nan_guard

    def on_epoch_end(self, epoch, logs=None):
        if (self.nan_guard is not None and self.nan_guard.bad_epoch is not None) or not _finite(logs):
            return
        completed = epoch + 1
        checkpoints = self.run_dir / CHECKPOINT_DIR
        checkpoints.mkdir(parents=True, exist_ok=True)
        train_state = f"train_state-epoch{completed:05d}{WEIGHTS_SUFFIX}"
        atomic_save_weights(self.model, checkpoints / train_state)
        # The generator a user samples from: the moving average when the run keeps one.
        atomic_save_weights(self.model.sampling_generator, self.run_dir / GENERATOR_WEIGHTS)
        atomic_save_weights(self.model.discriminator, self.run_dir / DISCRIMINATOR_WEIGHTS)
        if completed % self.keep_every == 0:
            snapshots = self.run_dir / SNAPSHOT_DIR
            snapshots.mkdir(exist_ok=True)
            atomic_save_weights(self.model.sampling_generator, snapshots / f"generator-epoch{completed:05d}{WEIGHTS_SUFFIX}")
            atomic_save_weights(self.model.discriminator, snapshots / f"discriminator-epoch{completed:05d}{WEIGHTS_SUFFIX}")
        # The commit point: until state.json moves, the previous resume point is the valid one.
        atomic_write_text(checkpoints / STATE_FILE, json.dumps({"epoch": completed, "train_state": train_state}) + "\n")
        for old in checkpoints.glob(f"train_state-epoch*{WEIGHTS_SUFFIX}"):
            if old.name != train_state:
                old.unlink()


def save_loss_curve(run_dir: pathlib.Path) -> str | None:
    path = run_dir / LOSS_CSV
    if not path.exists():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    epochs = [int(r["epoch"]) + 1 for r in rows]
    series = {"generator loss": [float(r["g_loss"]) for r in rows], "discriminator loss": [float(r["d_loss"]) for r in rows]}
    return plots.save_loss_curves(series, run_dir / LOSS_CURVE, x=epochs, title=run_dir.name)

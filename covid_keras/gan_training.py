"""A conditional-GAN run in `runs/<name>/`: training that survives being killed, samples, losses.

What a run directory holds:

    config.json                       the GanConfig, the data it trained on, the class names
    losses.csv                        per-epoch G/D losses, D accuracies and learning rates (CSVLogger)
    tensorboard/                      TensorBoard logs
    samples/epoch_00010.png           fixed noise, one row per label, every `sample_every` epochs and the last
    loss_curve.png                    smoothed G and D losses, written at the end
    generator.weights.h5              latest generator / discriminator weights
    discriminator.weights.h5
    weights/generator-epoch00010.weights.h5   kept every `checkpoint_every` epochs (and D's)
    checkpoints/state.json            {"epoch": N, "train_state": FILE}: the resume point, every epoch
    checkpoints/train_state-epoch0000N.weights.h5   both models, both optimizers, the step counter
    class_guide.json                  with class_guide_weight > 0: the class guide's accuracy on real
                                      images (it is trained once, before the first epoch; its weights
                                      travel in the train state)
    class_guide.weights.h5            the trained guide alone (`load_class_guide`: filtering samples)
    init_from.json                    with `init_from`: the run and epoch the weights started from

Every file is written to a temporary name and moved into place (`os.replace`), and state.json is
moved last, so a kill at any moment leaves the previous resume point intact. Re-running the same
command resumes from it: optimizer slots and iterations (hence the learning-rate schedule), and the
GAN's step counter (hence the D-every-K phase) come back with the weights. Data order after a
resume restarts from the shuffle's first permutation.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import augment, backbones, data, plots, runtime, sampling
from covid_keras.gan import (
    GUIDE_AUGMENT,
    ConditionalGAN,
    build_class_guide,
    build_imagenet_class_guide,
    build_discriminator,
    build_generator,
    resolve_discriminator_padding,
    upsampling_plan,
)
from covid_keras.gan_config import GanConfig

CONFIG_FILE = "config.json"
LOSS_CSV = "losses.csv"
LOSS_CURVE = "loss_curve.png"
TENSORBOARD_DIR = "tensorboard"
SAMPLES_DIR = "samples"
SNAPSHOT_DIR = "weights"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
GENERATOR_WEIGHTS = "generator.weights.h5"
DISCRIMINATOR_WEIGHTS = "discriminator.weights.h5"
GUIDE_REPORT = "class_guide.json"
GUIDE_WEIGHTS = "class_guide.weights.h5"
INIT_REPORT = "init_from.json"
_WEIGHTS_SUFFIX = ".weights.h5"


@dataclasses.dataclass
class TrainResult:
    run_dir: pathlib.Path
    gan: ConditionalGAN
    config: GanConfig
    class_names: list[str]
    initial_epoch: int  # 0 for a fresh run, the resumed epoch otherwise
    epochs_done: int
    history: dict[str, list[float]]


# --------------------------------------------------------------------------- building


def make_optimizer(
    config: GanConfig, updates_per_restart: int, lr_multiplier: float = 1.0
) -> keras.optimizers.Optimizer:
    """The configured optimizer at `lr_multiplier` x the learning rate; for "cosine_restarts" the LR
    restarts every `updates_per_restart` updates."""
    learning_rate: Any = config.learning_rate * lr_multiplier
    if config.lr_schedule == "cosine_restarts":
        # PyTorch's CosineAnnealingWarmRestarts(T_0, eta_min=0), stepped per update.
        learning_rate = keras.optimizers.schedules.CosineDecayRestarts(
            learning_rate, first_decay_steps=max(1, updates_per_restart), t_mul=1.0, m_mul=1.0, alpha=0.0
        )
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config.momentum)
    # epsilon 1e-8: PyTorch's default (Keras's is 1e-7).
    return keras.optimizers.Adam(learning_rate, beta_1=config.beta_1, beta_2=config.beta_2, epsilon=1e-8)


def generator_for(config: GanConfig) -> keras.Model:
    """The (untrained) generator that `config` describes."""
    return build_generator(
        config.image_size, config.noise_dim, config.num_classes, config.embedding_dim,
        config.generator_filters, base_channels=config.base_channels, conditioning=config.generator_conditioning,
        upsampling=config.generator_upsampling,
    )


def discriminator_for(config: GanConfig) -> keras.Model:
    """The (untrained) discriminator that `config` describes."""
    return build_discriminator(
        config.image_size, config.num_classes, config.embedding_dim, config.discriminator_filters,
        padding=config.discriminator_padding, leaky_relu_slope=config.leaky_relu_slope, dropout=config.dropout,
        conditioning=config.discriminator_conditioning, norm=config.discriminator_norm,
        auxiliary_classifier=config.aux_class_weight > 0, minibatch_std=config.minibatch_std,
    )


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


def build_gan(
    config: GanConfig, steps_per_epoch: int = 1, jit_compile: bool = False, precision: str = "float32"
) -> ConditionalGAN:
    """A compiled ConditionalGAN for `config`. Call inside `strategy.scope()` to distribute it.

    The restart period is `restart_epochs` epochs for both networks: G updates every step, D once
    every `d_every` steps, so D's period in updates is `d_every` times shorter. `precision` is a
    Keras dtype policy (see `covid_keras.runtime`); the images and logits stay float32.
    """
    with runtime.precision_policy(precision):
        gan = ConditionalGAN(
            generator_for(config), discriminator_for(config), config.noise_dim, config.num_classes,
            config.d_every, config.seed, diff_augment=config.diff_augment, ema_decay=config.ema_decay,
            aux_class_weight=config.aux_class_weight, class_guide=class_guide_for(config),
            class_guide_weight=config.class_guide_weight,
            class_guide_start_step=config.class_guide_from_epoch * steps_per_epoch,
            class_guide_ramp_steps=config.class_guide_ramp_epochs * steps_per_epoch,
            class_guide_loss=config.class_guide_loss, mode_seeking_weight=config.mode_seeking_weight,
        )
    g_period = config.restart_epochs * steps_per_epoch
    gan.compile(
        g_optimizer=runtime.loss_scaled(make_optimizer(config, g_period), precision),
        d_optimizer=runtime.loss_scaled(
            make_optimizer(config, round(g_period / config.d_every), config.d_lr_multiplier), precision
        ),
        loss=config.loss,
        jit_compile=jit_compile,
    )
    return gan


# --------------------------------------------------------------------------- files


def atomic_write_text(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_weights(model: keras.Model, path: pathlib.Path) -> None:
    # Keras insists on the .weights.h5 suffix, so the temporary name keeps it.
    tmp = path.with_name(f".tmp-{path.name}")
    model.save_weights(tmp, overwrite=True)
    os.replace(tmp, path)


def _run_record(
    config: GanConfig, data_spec: data.DataSpec, class_names: Sequence[str], precision: str, init_from: str | None,
    train_files: Sequence[str] | None = None,
) -> dict:
    record = {
        "gan": config.to_dict(),
        "precision": precision,
        "data": {"config": data_spec.config, "path": data_spec.path},
        "class_names": list(class_names),
    }
    if init_from is not None:  # absent otherwise, so older run dirs keep matching their command
        record["init_from"] = init_from
    if train_files is not None:  # the whole list: a run on a subset says which images it saw
        record["data"]["train_files"] = sorted(train_files)
    return record


def train_subset(train: tf.data.Dataset, train_files: Sequence[str], split_name: str = "train") -> tf.data.Dataset:
    """The examples of `train` named in `train_files`; a name that is not in the split is refused,
    so a GAN for a subset can never be handed a validation or test image."""
    present = {name for name, _ in data.file_names_and_labels(train)}
    outside = sorted(set(train_files) - present)
    if outside:
        shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
        raise ValueError(f"{len(outside)} train_files are not in the {split_name} split: {shown}")
    return data.keep_files(train, train_files)


def _epoch_dataset(train: tf.data.Dataset, config: GanConfig) -> tf.data.Dataset:
    """The GAN's batches for one epoch (see GanConfig.epoch_images)."""
    if not config.epoch_images:
        return data.gan_dataset(train, config.image_size, config.batch_size, shuffle_seed=config.seed)
    count = int(train.cardinality())
    repeats = max(1, -(-config.epoch_images // max(count, 1)))
    batches = data.gan_dataset(train.repeat(repeats), config.image_size, config.batch_size, shuffle_seed=config.seed)
    return batches.take(config.epoch_images // config.batch_size)


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key, "<missing>"), wanted.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} in the file, {b!r} now")
    return out


def _claim_run_dir(run_dir: pathlib.Path, record: dict) -> None:
    """Create the run dir with config.json, or accept an existing one holding the same run."""
    config_path = run_dir / CONFIG_FILE
    if config_path.exists():
        with open(config_path) as f:
            saved = json.load(f)
        differences = _differences(saved, record)
        if differences:
            raise ValueError(
                f"{config_path} belongs to a different run ({'; '.join(differences)}): "
                "refusing to overwrite it; choose another run dir"
            )
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"{run_dir} is not empty and has no {CONFIG_FILE}: refusing to write a GAN run into it")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, json.dumps(record, indent=2) + "\n")


def _read_run_record(run_dir: pathlib.Path) -> dict:
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} is missing: {run_dir} is not a GAN run directory")
    try:
        with open(config_path) as f:
            return json.load(f)
    except ValueError as e:
        raise ValueError(f"{config_path} is not valid JSON: {e}") from e


def _load_weights(model: keras.Model, path: pathlib.Path, built_from: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} is missing")
    try:
        model.load_weights(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"checkpoint {path} does not fit the model built from {built_from}: {e}") from e


def _resume_point(run_dir: pathlib.Path) -> dict | None:
    state_path = run_dir / CHECKPOINT_DIR / STATE_FILE
    if not state_path.exists():
        return None
    with open(state_path) as f:
        return json.load(f)


def completed_epochs(run_dir: str | os.PathLike) -> int:
    """Epochs completed according to the run's resume point (0 when it has none)."""
    state = _resume_point(pathlib.Path(run_dir))
    return int(state["epoch"]) if state else 0


def restore_train_state(gan: ConditionalGAN, run_dir: str | os.PathLike) -> int:
    """Load the run's last resume point into `gan`; return the number of epochs it had completed (0: none)."""
    run_dir = pathlib.Path(run_dir)
    state = _resume_point(run_dir)
    if state is None:
        return 0
    _load_weights(gan, run_dir / CHECKPOINT_DIR / state["train_state"], str(run_dir / CONFIG_FILE))
    return int(state["epoch"])


def initialise_from_run(gan: ConditionalGAN, source_dir: str | os.PathLike) -> int:
    """Copy another run's generator, its moving average and discriminator (from its resume point)
    into `gan`, a fresh run of the same architecture; optimizers and step counter start afresh.
    -> the epoch the source run had reached."""
    source_dir = pathlib.Path(source_dir)
    source_config, _ = read_run_config(source_dir)
    source = build_gan(source_config)  # the structure of its checkpoint: optimizers, guide and all
    epoch = restore_train_state(source, source_dir)
    if epoch == 0:
        raise FileNotFoundError(f"{source_dir / CHECKPOINT_DIR / STATE_FILE} is missing: no weights to start from")
    pairs = [(gan.generator, source.generator), (gan.discriminator, source.discriminator)]
    if gan.ema_generator is not None:
        pairs.append((gan.ema_generator, source.sampling_generator))
    for target, weights in pairs:
        try:
            target.set_weights(weights.get_weights())
        except ValueError as e:
            raise ValueError(f"the {target.name} of {source_dir} does not fit this run's architecture: {e}") from e
    return epoch


def _truncate_csv(path: pathlib.Path, epochs: int) -> None:
    """Drop rows of epochs >= `epochs`: written after the resume point, they are about to be redone."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) < epochs]
    if len(kept) != len(rows):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(kept)


# --------------------------------------------------------------------------- the class guide

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
        return augment.diff_augment(images, GUIDE_AUGMENT, self.seed_generator.next())


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
    callbacks = []
    if val_ds is not None:
        callbacks += [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=GUIDE_PATIENCE, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=GUIDE_PATIENCE // 2),
        ]
    history = trainer.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose).history
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


def _fit_class_guide(gan: ConditionalGAN, config: GanConfig, data_spec: data.DataSpec, train_ds, run_dir, verbose,
                     weights_dir=None) -> None:
    """Train the run's class guide on the real train split (validation split for early stopping)."""
    if config.class_guide_backbone != "cnn":
        path = backbones.local_weights_file(config.class_guide_backbone, weights_dir)
        gan.class_guide.get_layer(config.class_guide_backbone).load_weights(str(path))
        print(f"class guide: frozen ImageNet {config.class_guide_backbone} from {path}")
    val_ds = None
    if "validation" in data.prepare(data_spec).info.splits:
        val_ds = data.gan_dataset(data.load_split(data_spec, "validation"), config.image_size, config.batch_size,
                                  shuffle_seed=None, drop_remainder=False)
    print("training the class guide on the real train split")
    report = train_class_guide(gan.class_guide, train_ds, val_ds, seed=config.seed, verbose=verbose)
    atomic_save_weights(gan.class_guide, run_dir / GUIDE_WEIGHTS)  # for filtering samples later (load_class_guide)
    atomic_write_text(run_dir / GUIDE_REPORT, json.dumps(report, indent=2) + "\n")
    accuracy, split = guide_accuracy(report)
    print(f"class guide: accuracy {accuracy:.3f} on real {split} images "
          f"(best epoch {report['best_epoch']} of {report['epochs_run']}); now frozen")


# --------------------------------------------------------------------------- callbacks


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
            print(f"\nnon-finite GAN loss in epoch {self._epoch + 1} ({logs}): stopping; the last good checkpoint stays")


class TimeBudget(keras.callbacks.Callback):
    """Stops training at the end of the first epoch that ends more than `seconds` after training began.

    Comparing GANs "at the same budget" means the same wall time on the same machine, whatever
    each one's speed per epoch. The run stays resumable: re-running continues from that epoch.
    """

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = float(seconds)
        self.stopped_at: int | None = None

    def on_train_begin(self, logs=None):
        self._start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() - self._start > self.seconds:
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
    training stopped early (time budget, NaN guard), so a run always ends with a grid."""

    def __init__(self, samples_dir: pathlib.Path, class_names: Sequence[str], noise: np.ndarray, every: int, last_epoch: int):
        super().__init__()
        self.samples_dir, self.class_names, self.noise = samples_dir, list(class_names), noise
        self.every, self.last_epoch = every, last_epoch
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
        self._saved = completed


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
        train_state = f"train_state-epoch{completed:05d}{_WEIGHTS_SUFFIX}"
        atomic_save_weights(self.model, checkpoints / train_state)
        # The generator a user samples from: the moving average when the run keeps one.
        atomic_save_weights(self.model.sampling_generator, self.run_dir / GENERATOR_WEIGHTS)
        atomic_save_weights(self.model.discriminator, self.run_dir / DISCRIMINATOR_WEIGHTS)
        if completed % self.keep_every == 0:
            snapshots = self.run_dir / SNAPSHOT_DIR
            snapshots.mkdir(exist_ok=True)
            atomic_save_weights(self.model.sampling_generator, snapshots / f"generator-epoch{completed:05d}{_WEIGHTS_SUFFIX}")
            atomic_save_weights(self.model.discriminator, snapshots / f"discriminator-epoch{completed:05d}{_WEIGHTS_SUFFIX}")
        # The commit point: until state.json moves, the previous resume point is the valid one.
        atomic_write_text(checkpoints / STATE_FILE, json.dumps({"epoch": completed, "train_state": train_state}) + "\n")
        for old in checkpoints.glob(f"train_state-epoch*{_WEIGHTS_SUFFIX}"):
            if old.name != train_state:
                old.unlink()


# --------------------------------------------------------------------------- training


def _count_batches(ds: tf.data.Dataset) -> int:
    count = int(ds.cardinality())
    if count == tf.data.INFINITE_CARDINALITY:
        raise ValueError("the GAN dataset is infinite: an epoch must be one pass over the training split")
    if count == tf.data.UNKNOWN_CARDINALITY:
        count = int(ds.reduce(0, lambda n, _: n + 1))
    return count


def _check_architecture(config: GanConfig) -> None:
    """Raise the builders' ValueError for a size the generator or discriminator cannot make."""
    upsampling_plan(config.image_size, len(config.generator_filters))
    resolve_discriminator_padding(config.image_size, len(config.discriminator_filters), config.discriminator_padding)


def _check_mode_seeking_pairs(config: GanConfig, replicas: int) -> None:
    """Mode seeking pairs the fakes within each replica's share of the batch: it needs two there."""
    if config.mode_seeking_weight > 0 and config.batch_size // replicas < 2:
        raise ValueError(
            f"GanConfig.mode_seeking_weight > 0 pairs the fakes on each of the {replicas} replicas: batch_size "
            f"({config.batch_size}) must be at least 2 per replica, i.e. >= {2 * replicas}"
        )


def _check_two_classes(data_spec: data.DataSpec, class_names: Sequence[str]) -> None:
    """A conditional GAN needs images of at least two classes in the train split."""
    try:
        counts = data.build_report(data_spec)["split_counts"]["train"]
    except (OSError, KeyError, ValueError):
        counts = {name: 1 for name in class_names}  # no report: trust the declared classes
    present = [name for name, count in counts.items() if count > 0]
    if len(present) < 2:
        raise ValueError(
            f"the train split of data {data_spec.config!r} ({data_spec.path or 'built-in'}) has images of "
            f"{len(present)} class(es) only (counts {counts}): a conditional GAN needs at least two"
        )


def _save_loss_curve(run_dir: pathlib.Path) -> str | None:
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


def train_gan(
    config: GanConfig,
    data_spec: data.DataSpec,
    run_dir: str | os.PathLike,
    *,
    strategy: tf.distribute.Strategy | None = None,
    verbose: str | int = "auto",
    jit_compile: bool | str = "auto",
    precision: str = "auto",
    time_budget_s: float | None = None,
    init_from: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    train_files: Sequence[str] | None = None,
) -> TrainResult:
    """Train (or resume) the GAN run in `run_dir` on `data_spec`'s train split.

    `config.num_classes` follows the data. A run dir whose config.json differs is refused; a
    matching one is resumed from its last checkpoint. Raises FloatingPointError when the losses
    became NaN (the last good checkpoint is kept). `precision` and `jit_compile` default to the
    fastest measured for this device kind (`covid_keras.runtime.DEFAULTS`); the precision is part
    of the run's record, since it changes the results beyond float tolerance. `time_budget_s`
    stops after the epoch that crosses it (see `TimeBudget`). `init_from`: a fresh run starts from
    that run's latest weights (`initialise_from_run`), e.g. to add a class guide to a trained GAN.
    `weights_dir`: local ImageNet weights for a pretrained class guide (`backbones.local_weights_file`).
    `train_files`: train only on these train-split images (and fit the guide on them alone); a
    name outside the train split is refused. The list is part of the run's record.
    """
    run_dir = pathlib.Path(run_dir)
    precision, jit_compile = runtime.resolve(precision, jit_compile)
    strategy = strategy or tf.distribute.get_strategy()
    _check_architecture(config)  # before touching the data or the run dir
    _check_mode_seeking_pairs(config, strategy.num_replicas_in_sync)
    data.prepare(data_spec)
    class_names = data.class_names(data_spec)
    _check_two_classes(data_spec, class_names)
    config = dataclasses.replace(config, num_classes=len(class_names))
    init_from = None if init_from is None else str(init_from)
    train = data.load_split(data_spec, "train", balanced=config.balanced)
    if train_files is not None:
        train = train_subset(train, train_files)
    _claim_run_dir(run_dir, _run_record(config, data_spec, class_names, precision, init_from, train_files))

    gan_ds = _epoch_dataset(train, config)
    steps_per_epoch = _count_batches(gan_ds)
    if steps_per_epoch == 0:
        raise ValueError(f"the train split of {data_spec.config!r} has fewer images than batch_size={config.batch_size}")

    keras.utils.set_random_seed(config.seed)  # the same initial weights for the same config
    with strategy.scope():
        gan = build_gan(config, steps_per_epoch, jit_compile=jit_compile, precision=precision)
    initial_epoch = restore_train_state(gan, run_dir)
    if initial_epoch:
        print(f"resuming {run_dir} from epoch {initial_epoch} (step {int(gan.step_counter.numpy())})")
    else:
        if init_from is not None:
            source_epoch = initialise_from_run(gan, init_from)
            atomic_write_text(run_dir / INIT_REPORT, json.dumps({"run_dir": init_from, "epoch": source_epoch}) + "\n")
            print(f"starting from the weights of {init_from} at its epoch {source_epoch}")
        if gan.class_guide is not None:
            with strategy.scope():
                _fit_class_guide(gan, config, data_spec, gan_ds, run_dir, verbose, weights_dir)
    _truncate_csv(run_dir / LOSS_CSV, initial_epoch)

    nan_guard = StopOnNonFiniteLoss()
    noise = np.random.default_rng(config.seed).standard_normal((config.samples_per_class, config.noise_dim))
    callbacks = [
        nan_guard,
        LearningRateLogger(),
        SampleGrid(run_dir / SAMPLES_DIR, class_names, noise.astype("float32"), config.sample_every, config.epochs),
        keras.callbacks.CSVLogger(str(run_dir / LOSS_CSV), append=True),
        keras.callbacks.TensorBoard(str(run_dir / TENSORBOARD_DIR), write_graph=False),
        AtomicCheckpoint(run_dir, config.checkpoint_every, nan_guard),  # last: after the CSV row and samples
    ]
    if time_budget_s is not None:
        callbacks.insert(0, TimeBudget(time_budget_s))
    history: dict[str, list[float]] = {}
    if initial_epoch < config.epochs:
        fit = gan.fit(gan_ds, epochs=config.epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose)
        history = fit.history
    else:
        print(f"{run_dir} already finished its {config.epochs} epochs")
    _save_loss_curve(run_dir)
    if nan_guard.bad_epoch is not None:
        raise FloatingPointError(
            f"GAN losses became non-finite in epoch {nan_guard.bad_epoch + 1}; "
            f"{run_dir / CHECKPOINT_DIR / STATE_FILE} still points at the last good checkpoint"
        )
    epochs_done = completed_epochs(run_dir)
    return TrainResult(run_dir, gan, config, class_names, initial_epoch, epochs_done, history)


# --------------------------------------------------------------------------- loading


def read_run_config(run_dir: str | os.PathLike) -> tuple[GanConfig, list[str]]:
    """(GanConfig, class names) from a run's config.json; clear errors for a missing or foreign file."""
    run_dir = pathlib.Path(run_dir)
    record = _read_run_record(run_dir)
    try:
        return GanConfig.from_dict(record["gan"]), list(record["class_names"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{run_dir / CONFIG_FILE} is not a GAN run config: {e}") from e


def load_generator(run_dir: str | os.PathLike, which: str | int = "latest") -> tuple[keras.Model, GanConfig, list[str]]:
    """(generator, GanConfig, class names) of a run; `which` is "latest" or a kept epoch number."""
    run_dir = pathlib.Path(run_dir)
    config, class_names = read_run_config(run_dir)
    generator = generator_for(config)
    if which == "latest":
        path = run_dir / GENERATOR_WEIGHTS
    else:
        path = run_dir / SNAPSHOT_DIR / f"generator-epoch{int(which):05d}{_WEIGHTS_SUFFIX}"
    if not path.exists():
        kept = sorted(p.name for p in (run_dir / SNAPSHOT_DIR).glob("generator-*")) if (run_dir / SNAPSHOT_DIR).exists() else []
        raise FileNotFoundError(f"checkpoint {path} is missing (kept snapshots: {kept or 'none'})")
    _load_weights(generator, path, str(run_dir / CONFIG_FILE))
    return generator, config, class_names


def load_class_guide(run_dir: str | os.PathLike) -> keras.Model:
    """The frozen class guide a guided run trained its generator against: from class_guide.weights.h5,
    or, for runs older than that file, from the run's resume point (the guide is frozen throughout)."""
    run_dir = pathlib.Path(run_dir)
    config, _ = read_run_config(run_dir)
    if config.class_guide_weight <= 0:
        raise ValueError(f"{run_dir} was trained without a class guide (class_guide_weight "
                         f"{config.class_guide_weight:g} in {run_dir / CONFIG_FILE}): there is none to load")
    path = run_dir / GUIDE_WEIGHTS
    if path.exists():
        guide = class_guide_for(config)
        _load_weights(guide, path, str(run_dir / CONFIG_FILE))
        return guide
    gan = build_gan(config)
    if restore_train_state(gan, run_dir) == 0:
        raise FileNotFoundError(f"{path} and {run_dir / CHECKPOINT_DIR / STATE_FILE} are missing: no class guide to load")
    return gan.class_guide


def class_guide_filter(run_dir: str | os.PathLike, min_confidence: float) -> sampling.ConfidenceFilter:
    """Keep a run's samples only where its own class guide gives their class >= min_confidence."""
    return sampling.ConfidenceFilter(load_class_guide(run_dir), min_confidence, name="the run's class guide")

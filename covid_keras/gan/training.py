"""Training a conditional GAN into a run folder (covid_keras.gan.run_dir), surviving being killed,
and loading a run's networks back.

Every file is written to a temporary name and moved into place, and the resume point is moved
last, so a kill at any moment leaves the previous one intact. Re-running the same command resumes
from it: optimizer slots and iterations (hence the learning-rate schedule), and the GAN's step
counter (hence the D-every-K phase) come back with the weights. Data order after a resume
restarts from the shuffle's first permutation.

Under a multi-worker strategy (`covid_keras.distribute`) every worker runs `train_gan` on its
share of each global batch; only the chief writes the run folder, the others write the same
files into a temporary folder that is removed. All of them resume from the chief's resume point,
so the run folder must be on a file system they share.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import backbones, data, distribute, runtime
from covid_keras.files import atomic_save_weights, atomic_write_text
from covid_keras.gan import class_separate, sampling
from covid_keras.gan.callbacks import (
    AtomicCheckpoint,
    LearningRateLogger,
    SampleGrid,
    StopOnNonFiniteLoss,
    TimeBudget,
    save_loss_curve,
)
from covid_keras.gan.config import GanConfig
from covid_keras.gan.guide import class_guide_for, class_guide_term_for, guide_accuracy, train_class_guide
from covid_keras.gan.model import ConditionalGAN
from covid_keras.gan.networks import (
    build_discriminator,
    build_generator,
    resolve_discriminator_padding,
    upsampling_plan,
)
from covid_keras.gan.projected import build_projected_discriminator, check_backbone
from covid_keras.gan.run_dir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    GENERATOR_WEIGHTS,
    GUIDE_REPORT,
    GUIDE_WEIGHTS,
    INIT_REPORT,
    LOSS_CSV,
    SAMPLES_DIR,
    SNAPSHOT_DIR,
    STATE_FILE,
    TENSORBOARD_DIR,
    WEIGHTS_SUFFIX,
    claim_run_dir,
    class_run_dir,
    completed_epochs,
    read_run_config,
    read_run_record,
    refuse_lost_resume_point,
    resume_point,
    run_record,
    truncate_csv,
)


@dataclasses.dataclass
class TrainResult:
    run_dir: pathlib.Path
    gan: ConditionalGAN
    config: GanConfig
    class_names: list[str]
    initial_epoch: int  # 0 for a fresh run, the resumed epoch otherwise
    epochs_done: int
    history: dict[str, list[float]]




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


def discriminator_for(config: GanConfig, backbone_weights: str | None = None) -> keras.Model:
    """The (untrained) discriminator that `config` describes; `backbone_weights`: the pretrained file
    of a projected discriminator's backbone (None: random, for loading a trained one)."""
    if config.discriminator_backbone != "none":
        return build_projected_discriminator(
            config.image_size, config.num_classes, config.discriminator_backbone, config.discriminator_backbone_size,
            backbone_weights, leaky_relu_slope=config.leaky_relu_slope, dropout=config.dropout,
            auxiliary_classifier=config.aux_class_weight > 0, minibatch_std=config.minibatch_std,
        )
    return build_discriminator(
        config.image_size, config.num_classes, config.embedding_dim, config.discriminator_filters,
        padding=config.discriminator_padding, leaky_relu_slope=config.leaky_relu_slope, dropout=config.dropout,
        conditioning=config.discriminator_conditioning, norm=config.discriminator_norm,
        auxiliary_classifier=config.aux_class_weight > 0, minibatch_std=config.minibatch_std,
    )


def build_gan(
    config: GanConfig, steps_per_epoch: int = 1, jit_compile: bool = False, precision: str = "float32",
    backbone_weights: str | None = None,
) -> ConditionalGAN:
    """A compiled ConditionalGAN for `config`. Call inside `strategy.scope()` to distribute it.
    `backbone_weights`: see `discriminator_for`.

    The restart period is `restart_epochs` epochs for both networks: G updates every step, D once
    every `d_every` steps, so D's period in updates is `d_every` times shorter. `precision` is a
    Keras dtype policy (see `covid_keras.runtime`); the images and logits stay float32.
    """
    with runtime.precision_policy(precision):
        gan = ConditionalGAN(
            generator_for(config), discriminator_for(config, backbone_weights), config.noise_dim, config.num_classes,
            config.d_every, config.seed, diff_augment=config.diff_augment, ema_decay=config.ema_decay,
            aux_class_weight=config.aux_class_weight, guide_term=class_guide_term_for(config, steps_per_epoch),
            mode_seeking_weight=config.mode_seeking_weight,
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


def _load_weights(model: keras.Model, path: pathlib.Path, built_from: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} is missing")
    try:
        model.load_weights(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"checkpoint {path} does not fit the model built from {built_from}: {e}") from e


def restore_train_state(gan: ConditionalGAN, run_dir: str | os.PathLike) -> int:
    """Load the run's last resume point into `gan`; return the number of epochs it had completed (0: none)."""
    run_dir = pathlib.Path(run_dir)
    state = resume_point(run_dir)
    if state is None:
        refuse_lost_resume_point(run_dir)
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


def _fit_class_guide(gan: ConditionalGAN, config: GanConfig, data_spec: data.DataSpec, train_ds, run_dir, verbose,
                     weights_dir=None) -> None:
    """Train the run's class guide on the real train split (validation split for early stopping);
    its weights and report go into `run_dir`."""
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
    if config.discriminator_backbone != "none":
        check_backbone(config.discriminator_backbone, config.discriminator_backbone_size)
        return
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


def _precision_for(run_dir: pathlib.Path, requested: str) -> runtime.PrecisionChoice:
    """The run's precision: a resumed run keeps its recorded one under "auto", since a changed
    default (a new table, another machine) must not refuse or silently alter a run half-way."""
    choice = runtime.choose_precision("gan", requested, requested_by="precision")
    if choice.source == "auto" and (run_dir / CONFIG_FILE).exists():
        saved = read_run_record(run_dir).get("precision")
        if saved in runtime.PRECISIONS:
            return runtime.PrecisionChoice(saved, f"auto: the resumed run's {saved}", "auto")
    return choice


def check_pretrained_weights(config: GanConfig, weights_dir: str | os.PathLike | None) -> None:
    """Raise FileNotFoundError (saying how to make them) when a pretrained part of `config` (a class
    guide or discriminator backbone) has no local ImageNet weights in `weights_dir`."""
    if config.class_guide_weight > 0 and config.class_guide_backbone != "cnn":
        backbones.local_weights_file(config.class_guide_backbone, weights_dir)
    if config.discriminator_backbone != "none":
        backbones.local_weights_file(config.discriminator_backbone, weights_dir)


def discriminator_backbone_weights(config: GanConfig, weights_dir=None) -> str | None:
    """The local ImageNet weights file of the discriminator's frozen backbone; None without one."""
    if config.discriminator_backbone == "none":
        return None
    return str(backbones.local_weights_file(config.discriminator_backbone, weights_dir))


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
    until_epoch: int | None = None,
    init_from: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    train_files: Sequence[str] | None = None,
) -> TrainResult:
    """Train (or resume) the GAN run in `run_dir` on `data_spec`'s train split.

    `config.num_classes` follows the data. A run dir whose config.json differs is refused; a
    matching one is resumed from its last checkpoint. Raises FloatingPointError when the losses
    became NaN (the last good checkpoint is kept). `precision` and `jit_compile` default to the
    fastest measured for this machine (`covid_keras.runtime.choose_precision("gan")`); the precision
    and why it was chosen are part of the run's record, since it changes the results beyond float
    tolerance, and a resumed run keeps its recorded precision when asked for "auto". `time_budget_s`
    stops after the epoch that crosses it (see `TimeBudget`); `until_epoch` stops after that epoch
    (e.g. to score two seeds at the same step). Either way the run stays resumable towards
    `config.epochs`. `init_from`: a fresh run starts from
    that run's latest weights (`initialise_from_run`), e.g. to add a class guide to a trained GAN.
    `weights_dir`: local pretrained weights for a pretrained class guide or discriminator backbone
    (`backbones.local_weights_file`).
    `train_files`: train only on these train-split images (and fit the guide on them alone); a
    name outside the train split is refused. The list is part of the run's record.
    `strategy`: the distribution strategy (default: the current one); `config.batch_size` is the
    global batch. Under several workers only the chief writes `run_dir` (see the module docstring).
    """
    run_dir = pathlib.Path(run_dir)
    choice = _precision_for(run_dir, precision)
    precision, jit_compile = runtime.resolve(choice.precision, jit_compile)
    strategy = strategy or tf.distribute.get_strategy()
    if until_epoch is not None and until_epoch < 1:
        raise ValueError(f"until_epoch must be >= 1, got {until_epoch}")
    _check_architecture(config)  # before touching the data or the run dir
    check_pretrained_weights(config, weights_dir)
    _check_mode_seeking_pairs(config, strategy.num_replicas_in_sync)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) must split evenly over the "
                         f"{strategy.num_replicas_in_sync} replicas")
    if resume_point(run_dir) is None:  # a damaged or lost resume point is refused before any work
        refuse_lost_resume_point(run_dir)
    # The chief builds the TFDS folder; the other workers wait, then open it (all at once, they race).
    distribute.chief_first(strategy, lambda: data.prepare(data_spec))
    class_names = data.class_names(data_spec)
    _check_two_classes(data_spec, class_names)
    config = dataclasses.replace(config, num_classes=len(class_names))
    init_from = None if init_from is None else str(init_from)
    train = data.load_split(data_spec, "train", balanced=config.balanced)
    if train_files is not None:
        train = train_subset(train, train_files)
    if config.class_separate:
        return _train_class_separate(
            config, data_spec, run_dir, strategy, train, class_names, choice, verbose, jit_compile, time_budget_s,
            until_epoch, init_from, weights_dir, train_files,
        )
    with distribute.worker_scratch_dir(run_dir, strategy) as out_dir:
        return _train_into(
            config, data_spec, run_dir, out_dir, strategy, train, class_names, choice, precision, jit_compile, verbose,
            time_budget_s, until_epoch, init_from, weights_dir, train_files,
        )


def _train_class_separate(
    config: GanConfig, data_spec: data.DataSpec, run_dir: pathlib.Path, strategy: tf.distribute.Strategy,
    train: tf.data.Dataset, class_names: list[str], choice: runtime.PrecisionChoice, verbose, jit_compile,
    time_budget_s: float | None, until_epoch: int | None, init_from: str | None, weights_dir,
    train_files: Sequence[str] | None,
) -> TrainResult:
    """Each class's run in turn (covid_keras.gan.class_separate), each an ordinary run on that class's
    images of `train` (the split, or its `train_files`); the parent's config.json records the whole.
    Killed, it resumes where it stopped."""
    if init_from is not None:
        raise ValueError("--init-from is not supported for a class-separate run (start each class from scratch)")
    if distribute.is_chief(strategy):
        claim_run_dir(run_dir, run_record(config, data_spec, class_names, choice.precision, None, train_files,
                                          choice.reason))
    pairs = data.file_names_and_labels(train)
    one_class = dataclasses.replace(config, class_separate=False)
    start, results = time.monotonic(), []
    for label, name in enumerate(class_names):
        files = class_separate.files_of_class(pairs, label)
        print(f"class {name}: {len(files)} train images -> {class_run_dir(run_dir, name)}")
        left = None if time_budget_s is None else max(time_budget_s - (time.monotonic() - start), 0.0)
        results.append(train_gan(
            one_class, data_spec, class_run_dir(run_dir, name), strategy=strategy, verbose=verbose,
            jit_compile=jit_compile, precision=choice.precision, time_budget_s=left, until_epoch=until_epoch,
            weights_dir=weights_dir, train_files=files,
        ))
    return TrainResult(run_dir, results[-1].gan, config, class_names, min(r.initial_epoch for r in results),
                       min(r.epochs_done for r in results), {})


def _train_into(
    config: GanConfig, data_spec: data.DataSpec, run_dir: pathlib.Path, out_dir: pathlib.Path,
    strategy: tf.distribute.Strategy, train: tf.data.Dataset, class_names: list[str],
    choice: runtime.PrecisionChoice, precision: str, jit_compile: bool, verbose: str | int,
    time_budget_s: float | None, until_epoch: int | None, init_from: str | None, weights_dir,
    train_files: Sequence[str] | None,
) -> TrainResult:
    """`train_gan` from its run record on: resume from `run_dir`, write into `out_dir` (the same
    folder on the chief, a worker's temporary one elsewhere)."""
    if out_dir == run_dir:  # the chief (or the only process) owns the record
        claim_run_dir(run_dir, run_record(config, data_spec, class_names, precision, init_from, train_files,
                                          choice.reason))
    print(f"precision: {precision} ({choice.reason})")

    gan_ds = _epoch_dataset(train, config)
    steps_per_epoch = _count_batches(gan_ds)
    if steps_per_epoch == 0:
        raise ValueError(f"the train split of {data_spec.config!r} has fewer images than batch_size={config.batch_size}")

    backbone_weights = discriminator_backbone_weights(config, weights_dir)
    if backbone_weights is not None:
        print(f"discriminator: heads on frozen {config.discriminator_backbone} features from {backbone_weights}")
    keras.utils.set_random_seed(config.seed)  # the same initial weights for the same config
    with strategy.scope():
        gan = distribute.fit_ready(
            build_gan(config, steps_per_epoch, jit_compile=jit_compile, precision=precision,
                      backbone_weights=backbone_weights),
            strategy,
        )
    initial_epoch = restore_train_state(gan, run_dir)
    if initial_epoch:
        print(f"resuming {run_dir} from epoch {initial_epoch} (step {int(gan.step_counter.numpy())})")
    else:
        if init_from is not None:
            source_epoch = initialise_from_run(gan, init_from)
            atomic_write_text(out_dir / INIT_REPORT, json.dumps({"run_dir": init_from, "epoch": source_epoch}) + "\n")
            print(f"starting from the weights of {init_from} at its epoch {source_epoch}")
        if gan.class_guide is not None:
            with strategy.scope():
                _fit_class_guide(gan, config, data_spec, gan_ds, out_dir, verbose, weights_dir)
    truncate_csv(out_dir / LOSS_CSV, initial_epoch)

    nan_guard = StopOnNonFiniteLoss()
    noise = np.random.default_rng(config.seed).standard_normal((config.samples_per_class, config.noise_dim))
    callbacks = [
        nan_guard,
        LearningRateLogger(),
        SampleGrid(out_dir / SAMPLES_DIR, class_names, noise.astype("float32"), config.sample_every, config.epochs,
                   tensorboard_dir=out_dir / TENSORBOARD_DIR / "train"),
        keras.callbacks.CSVLogger(str(out_dir / LOSS_CSV), append=True),
        keras.callbacks.TensorBoard(str(out_dir / TENSORBOARD_DIR), write_graph=False),
        AtomicCheckpoint(out_dir, config.checkpoint_every, nan_guard),  # last: after the CSV row and samples
    ]
    if time_budget_s is not None:
        callbacks.insert(0, TimeBudget(time_budget_s, strategy))
    history: dict[str, list[float]] = {}
    last_epoch = config.epochs if until_epoch is None else min(until_epoch, config.epochs)
    if initial_epoch < last_epoch:
        fit = gan.fit(gan_ds, epochs=last_epoch, initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose,
                      shuffle=False)  # the dataset shuffles itself
        history = fit.history
    else:
        print(f"{run_dir} already reached epoch {last_epoch} of {config.epochs}")
    save_loss_curve(out_dir)
    # A worker's own record holds only the epochs since this start; the chief's may still be moving.
    epochs_done = max(initial_epoch, completed_epochs(out_dir))
    if nan_guard.bad_epoch is not None:
        kept = (f"{run_dir / CHECKPOINT_DIR / STATE_FILE} still points at the last good checkpoint (epoch {epochs_done})"
                if epochs_done else "no epoch had completed, so there is no checkpoint to resume from")
        raise FloatingPointError(f"GAN losses became non-finite in epoch {nan_guard.bad_epoch + 1}; {kept}")
    return TrainResult(run_dir, gan, config, class_names, initial_epoch, epochs_done, history)


# --------------------------------------------------------------------------- loading


def load_generator(run_dir: str | os.PathLike, which: str | int = "latest") -> tuple[keras.Model, GanConfig, list[str]]:
    """(generator, GanConfig, class names) of a run; `which` is "latest" or a kept epoch number."""
    run_dir = pathlib.Path(run_dir)
    config, class_names = read_run_config(run_dir)
    if config.class_separate:
        generators = [load_generator(class_run_dir(run_dir, name), which)[0] for name in class_names]
        for label, generator in enumerate(generators):
            generator.name = f"generator_{label}"  # unique inside the combined model
        return class_separate.combine_generators(generators), config, class_names
    generator = generator_for(config)
    if which == "latest":
        path = run_dir / GENERATOR_WEIGHTS
    else:
        path = run_dir / SNAPSHOT_DIR / f"generator-epoch{int(which):05d}{WEIGHTS_SUFFIX}"
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

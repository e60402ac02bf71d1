"""`GanConfig`: every hyperparameter of a conditional-GAN run, and the names each choice may take.

No TensorFlow here: scripts read and check a config (and `--help` shows a preset) before
TensorFlow loads. New options are fields whose default is the study's behaviour, so old
config.json files keep loading and meaning the same thing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

# DiffAugment policies (covid_keras.gan.diffaugment), the networks' options (covid_keras.gan.networks),
# the adversarial losses and the class guide's (covid_keras.gan.model, covid_keras.gan.guide).
DIFF_AUGMENT_POLICIES = ("color", "translation", "cutout")
GENERATOR_CONDITIONINGS = ("concat", "class_bn")
GENERATOR_UPSAMPLINGS = ("transpose", "resize")
DISCRIMINATOR_CONDITIONINGS = ("concat", "projection")
DISCRIMINATOR_NORMS = ("batch", "spectral")
LOSSES = ("bce", "hinge")
# What the generator minimises of the class guide.
CLASS_GUIDE_LOSSES = ("cross_entropy", "feature_matching")
# The guide's network: a small CNN trained from scratch, or frozen ImageNet ResNet50 features with a
# trained head. VGG16 is left out on purpose: it is the independent judge's network (evaluation.evidence).
CLASS_GUIDE_BACKBONES = ("cnn", "resnet50")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine_restarts")
DISCRIMINATOR_PADDINGS = ("auto", "valid", "same")
# "none": the discriminator is learnt from scratch (covid_keras.gan.networks); otherwise heads on a frozen
# pretrained network's features (covid_keras.gan.projected). Not VGG16 (the independent judge's network)
# nor ResNet50 (KID's feature space): the generator is never trained against what measures it.
DISCRIMINATOR_BACKBONES = ("none", "inception_v3")


@dataclasses.dataclass
class GanConfig:
    """One GAN run's hyperparameters. Tuples stay tuples through JSON (see `from_dict`)."""

    # Data and architecture.
    image_size: int = 150
    # The study's GAN data: every class cut to the smallest class's count (3616 COVID, first 3616 Normal).
    balanced: bool = True
    num_classes: int = 2
    noise_dim: int = 128
    # Channels of the noise map the generator starts from (study: Dense(128*8*8) -> 8x8x128).
    base_channels: int = 128
    embedding_dim: int = 50
    # One stride-2 "conv_layer_set" per entry; the final Tanh block is added on top.
    generator_filters: tuple[int, ...] = (256, 128, 64, 32)
    # First conv (stride 1), then stride-2 conv + BN sets, then the last conv (stride 1).
    discriminator_filters: tuple[int, ...] = (64, 64, 64, 64, 64)
    # "valid" is the study's; "auto" keeps "valid" where the image is big enough, else "same".
    discriminator_padding: str = "auto"
    leaky_relu_slope: float = 0.01  # PyTorch's default, which the study used
    dropout: float = 0.5
    # Beyond the study (see covid_keras.gan); the defaults are the study's model.
    generator_conditioning: str = "concat"  # "class_bn": class-conditional BatchNorm in every block
    generator_upsampling: str = "transpose"  # "resize": nearest-neighbour x2 + conv, no checkerboard
    discriminator_conditioning: str = "concat"  # "projection": <embed(label), features> added to the logit
    discriminator_norm: str = "batch"  # "spectral": spectral normalisation, no BatchNorm
    diff_augment: tuple[str, ...] = ()  # DiffAugment policies for every discriminator input
    ema_decay: float = 0.0  # > 0: sample from a moving average of the generator's weights
    aux_class_weight: float = 0.0  # > 0: an AC-GAN class head on D, weighted so in both losses
    minibatch_std: bool = False  # D sees the batch's feature spread (counters mode collapse)
    # Not "none": a projected discriminator, trained heads on this frozen pretrained network's features
    # at several scales (covid_keras.gan.projected), which sees the images resized to this side. Its
    # weights come from --weights-dir; discriminator_filters / padding are then unused.
    discriminator_backbone: str = "none"
    discriminator_backbone_size: int = 128
    # > 0: a classifier is trained on the real train split first, then frozen; G also minimises its
    # class cross-entropy on the fakes, times this weight (covid_keras.gan.guide).
    class_guide_weight: float = 0.0
    # What G minimises of the guide: "cross_entropy" of its labels on the fakes, or
    # "feature_matching": the per-class mean and spread of its features on fakes vs real images.
    class_guide_loss: str = "cross_entropy"
    # The guide's weight is 0 before this epoch, then rises linearly to full over class_guide_ramp_epochs.
    class_guide_from_epoch: int = 0
    class_guide_ramp_epochs: int = 0
    # The guide's network: "cnn" (trained from scratch) or "resnet50" (frozen exact ImageNet
    # features, local weights, and a trained head), which sees the images resized to this side.
    class_guide_backbone: str = "cnn"
    class_guide_input_size: int = 128
    # > 0: G also pays this weight / (image distance / noise distance) over pairs of fakes of one
    # class (MSGAN's mode-seeking term), against samples that ignore their noise.
    mode_seeking_weight: float = 0.0
    # True: one generator and one discriminator per class, each pair trained on that class's train
    # images alone (covid_keras.gan.class_separate), so a class's samples must look like that class.
    class_separate: bool = False

    # Optimisation.
    batch_size: int = 8
    # 0: an epoch is one pass over the train split. N > 0: an epoch is N // batch_size steps over the
    # split repeated as often as needed, so runs on train subsets of any size take the same steps.
    epoch_images: int = 0
    epochs: int = 750  # the report shows ~600-740 epochs; samples were taken from epoch 740
    optimizer: str = "adam"
    learning_rate: float = 2e-4
    d_lr_multiplier: float = 1.0  # D's learning rate = learning_rate x this (TTUR, Heusel et al. 2017)
    momentum: float = 0.0  # SGD only
    beta_1: float = 0.9  # Adam only
    beta_2: float = 0.999  # Adam only
    d_every: int = 10  # K: the discriminator steps once every K generator steps
    lr_schedule: str = "constant"
    restart_epochs: int = 10  # cosine warm restart period, in epochs (stepped per batch)
    loss: str = "bce"

    # Bookkeeping.
    sample_every: int = 10  # epochs between sample grids (the last epoch always gets one)
    samples_per_class: int = 8  # columns of the sample grid
    checkpoint_every: int = 10  # epochs between kept weight snapshots (the resume point is every epoch)
    seed: int = 0

    def __post_init__(self) -> None:
        self.generator_filters = tuple(int(f) for f in self.generator_filters)
        self.discriminator_filters = tuple(int(f) for f in self.discriminator_filters)
        self.diff_augment = tuple(str(p) for p in self.diff_augment)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"GanConfig.{field.name} must be a finite number, got {value}")
        for name in ("leaky_relu_slope", "momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"GanConfig.{name} must be >= 0, got {getattr(self, name)}")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("discriminator_padding", self.discriminator_padding, DISCRIMINATOR_PADDINGS)
        _check_choice("generator_conditioning", self.generator_conditioning, GENERATOR_CONDITIONINGS)
        _check_choice("generator_upsampling", self.generator_upsampling, GENERATOR_UPSAMPLINGS)
        _check_choice("discriminator_conditioning", self.discriminator_conditioning, DISCRIMINATOR_CONDITIONINGS)
        _check_choice("discriminator_norm", self.discriminator_norm, DISCRIMINATOR_NORMS)
        _check_choice("class_guide_loss", self.class_guide_loss, CLASS_GUIDE_LOSSES)
        _check_choice("class_guide_backbone", self.class_guide_backbone, CLASS_GUIDE_BACKBONES)
        _check_choice("discriminator_backbone", self.discriminator_backbone, DISCRIMINATOR_BACKBONES)
        if self.discriminator_backbone != "none" and (
            self.discriminator_conditioning != "projection" or self.discriminator_norm != "spectral"
        ):
            raise ValueError(
                f"GanConfig.discriminator_backbone {self.discriminator_backbone!r} builds spectrally normalised "
                "projection heads: discriminator_conditioning must be 'projection' and discriminator_norm "
                f"'spectral' (got {self.discriminator_conditioning!r}, {self.discriminator_norm!r})"
            )
        for policy in self.diff_augment:
            _check_choice("diff_augment", policy, DIFF_AUGMENT_POLICIES)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"GanConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.aux_class_weight < 0:
            raise ValueError(f"GanConfig.aux_class_weight must be >= 0, got {self.aux_class_weight}")
        if self.mode_seeking_weight < 0:
            raise ValueError(f"GanConfig.mode_seeking_weight must be >= 0, got {self.mode_seeking_weight}")
        if self.mode_seeking_weight > 0 and self.batch_size < 2:
            raise ValueError(
                f"GanConfig.mode_seeking_weight > 0 compares pairs of fakes: batch_size must be >= 2, got {self.batch_size}"
            )
        if self.epoch_images < 0 or 0 < self.epoch_images < self.batch_size:
            raise ValueError(f"GanConfig.epoch_images must be 0 or >= batch_size ({self.batch_size}), got {self.epoch_images}")
        if self.class_guide_weight < 0:
            raise ValueError(f"GanConfig.class_guide_weight must be >= 0, got {self.class_guide_weight}")
        if self.class_separate and (self.class_guide_weight > 0 or self.aux_class_weight > 0):
            # Both tell classes apart, and each network of a class-separate run sees one class only.
            raise ValueError(
                "GanConfig.class_separate trains each class's networks on that class alone: class_guide_weight "
                f"({self.class_guide_weight:g}) and aux_class_weight ({self.aux_class_weight:g}) must be 0"
            )
        for name in ("class_guide_from_epoch", "class_guide_ramp_epochs"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"GanConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        positive = (
            "image_size", "num_classes", "noise_dim", "base_channels", "embedding_dim", "batch_size",
            "epochs", "d_every", "restart_epochs", "sample_every", "samples_per_class", "checkpoint_every",
            "class_guide_input_size", "discriminator_backbone_size",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GanConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.num_classes < 2:
            raise ValueError(f"GanConfig.num_classes must be >= 2 for a conditional GAN, got {self.num_classes}")
        if not self.generator_filters or min(self.generator_filters) < 1:
            raise ValueError(f"GanConfig.generator_filters must be positive integers, got {self.generator_filters}")
        if len(self.discriminator_filters) < 2 or min(self.discriminator_filters) < 1:
            raise ValueError(
                "GanConfig.discriminator_filters needs >= 2 positive integers (first and last conv), "
                f"got {self.discriminator_filters}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"GanConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not self.d_lr_multiplier > 0:
            raise ValueError(f"GanConfig.d_lr_multiplier must be > 0, got {self.d_lr_multiplier}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GanConfig.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GanConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown GanConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GanConfig":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GanConfig":
        try:
            with open(path) as f:
                return cls.from_json(f.read())
        except (OSError, ValueError, TypeError) as e:
            raise ValueError(f"cannot read a GanConfig from {path}: {e}") from e


def beside_seed(run_config: dict) -> dict:
    """A run's config record (`GanConfig.to_dict()`, as config.json keeps it) without its training seed:
    what runs that differ only in their seed have in common."""
    return {key: value for key, value in run_config.items() if key != "seed"}


def _check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"GanConfig.{field} must be one of {choices}, got {value!r}")


def check_choice(name: str, value: str, choices) -> None:
    """ValueError unless `value` is one of `choices` (for builders' string options)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


@dataclasses.dataclass
class TranslationConfig:
    """The image-editing GAN's hyperparameters (covid_keras.gan.translation)."""

    image_size: int = 64
    num_classes: int = 2
    # Stem, then one stride-2 level per further entry. (32, 64, 128) x 3 blocks cost 5x more per step
    # on 2 CPU cores (6.8 against 1.3 s per batch of 32, measured under load).
    filters: tuple[int, ...] = (16, 32, 64)
    residual_blocks: int = 2
    discriminator_filters: tuple[int, ...] = (32, 64, 128, 256, 256)
    identity_weight: float = 10.0
    cycle_weight: float = 10.0
    aux_class_weight: float = 1.0
    diff_augment: tuple[str, ...] = ("color", "translation", "cutout")
    batch_size: int = 32
    learning_rate: float = 1e-4
    d_lr_multiplier: float = 4.0
    d_every: int = 1
    epochs: int = 100
    seed: int = 0

    def __post_init__(self):
        self.filters = tuple(int(f) for f in self.filters)
        self.discriminator_filters = tuple(int(f) for f in self.discriminator_filters)
        self.diff_augment = tuple(self.diff_augment)
        if self.image_size % 2 ** (len(self.filters) - 1):
            raise ValueError(f"image_size {self.image_size} must divide by 2^{len(self.filters) - 1} (filters {self.filters})")
        for name in ("identity_weight", "cycle_weight", "aux_class_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"TranslationConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("num_classes", "batch_size", "d_every", "epochs", "residual_blocks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TranslationConfig.{name} must be >= 1, got {getattr(self, name)}")
        for policy in self.diff_augment:
            _check_choice("diff_augment", policy, DIFF_AUGMENT_POLICIES)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

"""What an augmentation study runs (`StudyConfig`, the `--quick` profile) and its scarce subsets."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

from covid_keras import data
from covid_keras.choices import FILM_MODES
from covid_keras.classifier import ClassifierConfig
from covid_keras.gan import config as gan_config
from covid_keras.gan import presets as gan_presets

FORMAT_VERSION = 1
STUDY_FILE = "study.json"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
FIGURE = "test_accuracy_vs_n.png"
ALL = "all"  # the n of the whole train split
ARMS = ("real", "classic", "gan", "gan_filtered", "classic_gan", "real_full_resolution")
GAN_ARMS = ("gan", "gan_filtered", "classic_gan")
ARM_TITLES = {
    "real": "real only",
    "classic": "real + classic augmentation",
    "gan": "real + GAN",
    "gan_filtered": "real + GAN, guide-filtered",
    "classic_gan": "real + classic + GAN",
    "real_full_resolution": "real only, full resolution",
}
REPORTED = ("accuracy", "auc", "sensitivity", "specificity")


@dataclasses.dataclass
class StudyConfig:
    """What the study runs. `sizes`: real train images per class, "all" for the whole split.

    gan_preset / gan_overrides: the GAN (a `gan_config` preset and GanConfig fields); every n gets
    `gan_epochs` epochs of `epoch_images` images, hence the same generator steps. ratio: generated
    (or classic) rows added per real row in the main arms; ratio_sweep: the ratios tried at the
    smallest n. weights: the backbone's weights (file or folder; None: random, tests only).
    """

    data: data.DataSpec
    weights: str | None
    sizes: tuple = (50, 100, ALL)
    backbone: str = "vgg16"
    image_size: int = 224
    classifier_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    classifier_epochs: int = 12
    classifier_batch_size: int = 32
    learning_rate: float = 1e-4
    gan_preset: str = "guided"
    gan_overrides: dict = dataclasses.field(default_factory=dict)
    gan_epochs: int = 60
    epoch_images: int = 832
    gan_seeds: tuple[int, ...] = (0,)
    smallest_n_gan_seeds: tuple[int, ...] = (0, 1)
    gan_precision: str = "auto"
    ratio: int = 1
    ratio_sweep: tuple[int, ...] = (1, 4, 16)
    min_guide_confidence: float = 0.9
    subset_seed: int = 0
    augment_seed: int = 0
    sample_seed: int = 0
    weights_dir: str | None = None  # ImageNet weights for a pretrained class guide or discriminator backbone
    film: str = "raw"  # what of each film the classifiers see (`ClassifierConfig.film`)

    def __post_init__(self):
        self.sizes = tuple(ALL if s == ALL else int(s) for s in self.sizes)
        self.classifier_seeds = tuple(int(s) for s in self.classifier_seeds)
        self.gan_seeds = tuple(int(s) for s in self.gan_seeds)
        self.smallest_n_gan_seeds = tuple(int(s) for s in self.smallest_n_gan_seeds)
        self.ratio_sweep = tuple(int(r) for r in self.ratio_sweep)
        if not self.sizes or any(s != ALL and s < 1 for s in self.sizes):
            raise ValueError(f"sizes must be positive numbers of images per class or '{ALL}', got {self.sizes}")
        if self.film not in FILM_MODES:
            raise ValueError(f"film: unknown {self.film!r}; choose one of {', '.join(FILM_MODES)}")
        if len(self.classifier_seeds) < 2:
            raise ValueError("classifier_seeds: at least 2, for a paired interval")
        if self.ratio < 1 or any(r < 1 for r in self.ratio_sweep):
            raise ValueError("ratio and ratio_sweep must be >= 1")
        if self.ratio not in self.ratio_sweep:
            self.ratio_sweep = tuple(sorted({*self.ratio_sweep, self.ratio}))
        self.gan_config()  # a bad preset or override fails here, before any work

    def gan_config(self, seed: int = 0) -> gan_config.GanConfig:
        return gan_presets.from_preset(self.gan_preset, **{
            **self.gan_overrides, "epochs": self.gan_epochs, "epoch_images": self.epoch_images, "seed": seed})

    @property
    def filters_by_guide(self) -> bool:
        """Whether the GAN has a class guide to filter its samples with (the guide-filtered arm)."""
        return self.gan_config().class_guide_weight > 0

    @property
    def gan_image_size(self) -> int:
        return self.gan_config().image_size

    @property
    def smallest(self):
        numbers = [s for s in self.sizes if s != ALL]
        return min(numbers) if numbers else ALL

    def seeds_of_gan(self, n) -> tuple[int, ...]:
        return self.smallest_n_gan_seeds if n == self.smallest else self.gan_seeds

    def classifier_config(self, seed: int, degrade: bool = True) -> ClassifierConfig:
        return ClassifierConfig(
            self.backbone, weights=self.weights, image_size=self.image_size, epochs=self.classifier_epochs,
            batch_size=self.classifier_batch_size, learning_rate=self.learning_rate, keep_epoch="best_validation",
            degrade_to=self.gan_image_size if degrade else None, seed=seed, film=self.film,
        )

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["data"] = dataclasses.asdict(self.data)
        values["sizes"] = [str(s) for s in self.sizes]
        if self.film == "raw":  # absent, so that study folders from before the option still resume
            del values["film"]
        return values


def quick_config(weights: str | None = None, data_dir: str | None = None) -> StudyConfig:
    """A study that runs end to end on the built-in phantoms in a few minutes (CI's profile); `data_dir`:
    where TFDS keeps them (default: its own)."""
    return StudyConfig(
        data.DataSpec("phantom_small", data_dir=data_dir), weights=weights, sizes=(6, ALL), image_size=48,
        classifier_seeds=(0, 1), classifier_epochs=3, classifier_batch_size=8, gan_preset="guided",
        gan_overrides=dict(image_size=32, batch_size=8, generator_filters=(32, 16), discriminator_filters=(16, 32, 32),
                           base_channels=16, class_guide_from_epoch=1, class_guide_ramp_epochs=0,
                           sample_every=2, checkpoint_every=2),
        gan_epochs=2, epoch_images=16, gan_seeds=(0,), smallest_n_gan_seeds=(0,), ratio=1, ratio_sweep=(1, 2),
        min_guide_confidence=0.01,  # a tiny GAN's guide is unsure of everything; this only exercises the path
    )


def scarce_subset(pairs: Sequence[tuple[str, int]], n, seed: int) -> list[str]:
    """n file names per class from (file name, label) pairs of the train split, stable for a seed.

    Each class's names are ordered by a seeded hash and the first n kept, so the choice does not
    depend on the order of `pairs`, and the subset at a smaller n lies inside the one at a larger.
    """
    by_class: dict[int, list[str]] = {}
    for name, label in pairs:
        by_class.setdefault(int(label), []).append(name)
    chosen = []
    for label in sorted(by_class):
        names = sorted(by_class[label], key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())
        if n != ALL and len(names) < n:
            raise ValueError(f"n={n} per class, but class {label} has only {len(names)} train images")
        chosen += names if n == ALL else names[:n]
    return sorted(chosen)




def n_name(n) -> str:
    """How a subset size names its files and folders: n50, nall."""
    return f"n{n}"

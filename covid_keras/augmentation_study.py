"""The study's question, asked properly: does a GAN make a better COVID classifier, against classic
augmentation, when real images are scarce?

For each number n of real train images per class (drawn from the train split with a recorded
seed; validation and test stay the full real splits):

- a GAN is trained on exactly those 2n images (its class guide too), for the same number of
  generator steps at every n (`GanConfig.epoch_images`), at the smallest n for several seeds;
- frozen-backbone classifiers (the project's head recipe, several seeds) are trained in arms that
  add the same number of rows where they add any:

      real           the 2n real images
      classic        + offline Keras-augmented copies of them (`augment.ClassicAugmenter`)
      gan            + generated images, r x n per class
      gan_filtered   + generated images the GAN's own class guide gives P >= min_guide_confidence
      classic_gan    + half classic copies, half generated images
      real_full_resolution   the real arm without the degradation below, to show what it costs

  and, at the smallest n, the ratio sweep: classic and gan at every ratio r.

Every image a classifier sees, real or generated, goes the same way: resized to the backbone's
input, brought down to the GAN's resolution and back up (`classifier.DegradeResolution`, inside
the saved model), so sharpness cannot tell real from generated.

A study folder holds everything and resumes: subsets, GAN runs (resumable themselves), samples,
classic copies, a feature cache, one saved classifier per (cell, seed), then results.json,
results.md and test_accuracy_vs_n.png. Rerunning reuses every finished piece.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import platform
import shutil
import subprocess
import time
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import classifier, data, evaluation, gan_config, gan_training, plots, sampling
from covid_keras.augment import ClassicAugmenter
from covid_keras.classifier import ClassifierConfig, FeatureCache, FeatureExtractor, FeatureSet
from covid_keras.evaluation import intervals
from covid_keras.labels import BINARY_CLASSES

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
    weights_dir: str | None = None  # ImageNet weights for a pretrained class guide

    def __post_init__(self):
        self.sizes = tuple(ALL if s == ALL else int(s) for s in self.sizes)
        self.classifier_seeds = tuple(int(s) for s in self.classifier_seeds)
        self.gan_seeds = tuple(int(s) for s in self.gan_seeds)
        self.smallest_n_gan_seeds = tuple(int(s) for s in self.smallest_n_gan_seeds)
        self.ratio_sweep = tuple(int(r) for r in self.ratio_sweep)
        if not self.sizes or any(s != ALL and s < 1 for s in self.sizes):
            raise ValueError(f"sizes must be positive numbers of images per class or '{ALL}', got {self.sizes}")
        if len(self.classifier_seeds) < 2:
            raise ValueError("classifier_seeds: at least 2, for a paired interval")
        if self.ratio < 1 or any(r < 1 for r in self.ratio_sweep):
            raise ValueError("ratio and ratio_sweep must be >= 1")
        if self.ratio not in self.ratio_sweep:
            self.ratio_sweep = tuple(sorted({*self.ratio_sweep, self.ratio}))
        self.gan_config()  # a bad preset or override fails here, before any work

    def gan_config(self, seed: int = 0) -> gan_config.GanConfig:
        return gan_config.from_preset(self.gan_preset, **{
            **self.gan_overrides, "epochs": self.gan_epochs, "epoch_images": self.epoch_images, "seed": seed})

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
            degrade_to=self.gan_image_size if degrade else None, seed=seed,
        )

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["data"] = dataclasses.asdict(self.data)
        values["sizes"] = [str(s) for s in self.sizes]
        return values


def quick_config(weights: str | None = None) -> StudyConfig:
    """A study that runs end to end on the built-in phantoms in a few minutes (CI's profile)."""
    return StudyConfig(
        data.DataSpec("phantom_small"), weights=weights, sizes=(6, ALL), image_size=48,
        classifier_seeds=(0, 1), classifier_epochs=3, classifier_batch_size=8, gan_preset="guided",
        gan_overrides=dict(image_size=32, batch_size=8, generator_filters=(32, 16), discriminator_filters=(16, 32, 32),
                           base_channels=16, class_guide_from_epoch=1, class_guide_ramp_epochs=0,
                           sample_every=2, checkpoint_every=2),
        gan_epochs=2, epoch_images=16, gan_seeds=(0,), smallest_n_gan_seeds=(0, 1), ratio=1, ratio_sweep=(1, 2),
        min_guide_confidence=0.01,  # a tiny GAN's guide is unsure of everything; this only exercises the path
    )


# --- the scarce subsets ----------------------------------------------------------------------


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


# --- the study folder --------------------------------------------------------------------------


def _atomic_json(path: pathlib.Path, value: Any) -> None:
    gan_training.atomic_write_text(path, json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _atomic_npz(path: pathlib.Path, **arrays) -> None:
    partial = path.with_name(f".{path.name}.partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, path)


def claim_study_dir(out: pathlib.Path, config: StudyConfig) -> None:
    """Create `out` with study.json, or accept one holding the same study (it is then resumed)."""
    record = {"format_version": FORMAT_VERSION, "config": config.to_dict()}
    path = out / STUDY_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != json.loads(json.dumps(record, default=_json_default)):
            raise ValueError(f"{path} holds a study with another configuration: refusing to mix them; "
                             "choose another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no {STUDY_FILE}: refusing to write a study into it")
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(path, record)


def _n_name(n) -> str:
    return f"n{n}"


# --- images as examples ------------------------------------------------------------------------


def _examples(images: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> tf.data.Dataset:
    """TFDS-style examples from uint8 images [N, H, W, 1]."""
    return tf.data.Dataset.from_tensor_slices({
        "image": np.asarray(images, np.uint8), "label": np.asarray(labels, np.int64),
        "file_name": np.asarray(list(names), dtype=object).astype(str),
    })


def _split_arrays(ds: tf.data.Dataset, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 images [N, size, size, 1], labels, file names) of TFDS-style examples."""
    resized = ds.map(lambda e: (data.resized_uint8(e["image"], size), e["label"], e["file_name"]))
    images, labels, names = [], [], []
    for image, label, name in resized.as_numpy_iterator():
        images.append(image)
        labels.append(int(label))
        names.append(name.decode())
    return np.stack(images), np.asarray(labels, np.int64), names


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 1] -> uint8 [N, size, size, 1], as the data pipelines resize."""
    return np.stack([data.resized_uint8(image, size).numpy() for image in images]) if len(images) else images


# --- the runner --------------------------------------------------------------------------------


class AugmentationStudy:
    """Runs (or resumes) one study in `out` (module docstring); `run()` returns the results dict."""

    def __init__(self, config: StudyConfig, out: str | os.PathLike, verbose: int = 1,
                 log: Callable[[str], None] = print):
        self.config = config
        self.out = pathlib.Path(out)
        self.verbose = verbose
        self.log = log
        self.timings: dict[str, float] = {}
        self.cache = FeatureCache(self.out / "feature_cache")
        self._extractors: dict[bool, FeatureExtractor] = {}

    # Stages, each reusing what an earlier run of the same study left.

    def run(self) -> dict:
        claim_study_dir(self.out, self.config)
        data.prepare(self.config.data)
        class_names = data.class_names(self.config.data)
        if list(class_names) != list(BINARY_CLASSES):
            raise ValueError(f"the study needs the classes {BINARY_CLASSES}, {self.config.data.config} has {class_names}")
        subsets = self._timed("subsets", self.make_subsets)
        self.subset_files = subsets
        gan_runs = self._timed("gans", lambda: self.train_gans(subsets))
        samples = self._timed("samples", lambda: self.draw_samples(gan_runs))
        results = self._timed("classifiers", lambda: self.train_classifiers(subsets, samples))
        return self._timed("report", lambda: self.report(subsets, gan_runs, results))

    def _timed(self, stage: str, work):
        start = time.perf_counter()
        self.log(f"== {stage}")
        value = work()
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start
        return value

    def make_subsets(self) -> dict:
        """n -> sorted train file names (saved as subsets/n<N>.json with the seed)."""
        train = data.load_split(self.config.data, "train", balanced=True)
        pairs = data.file_names_and_labels(train)
        folder = self.out / "subsets"
        folder.mkdir(exist_ok=True)
        subsets = {}
        for n in self.config.sizes:
            files = scarce_subset(pairs, n, self.config.subset_seed)
            path = folder / f"{_n_name(n)}.json"
            if path.exists():
                saved = json.loads(path.read_text())["files"]
                if saved != files:
                    raise ValueError(f"{path} lists other files than seed {self.config.subset_seed} draws now")
            else:
                _atomic_json(path, {"n_per_class": str(n), "seed": self.config.subset_seed, "files": files})
            subsets[n] = files
            self.log(f"{_n_name(n)}: {len(files)} real train images")
        return subsets

    def train_gans(self, subsets: Mapping) -> dict:
        """(n, seed) -> GAN run folder, each trained on its subset only."""
        runs = {}
        for n in self.config.sizes:
            for seed in self.config.seeds_of_gan(n):
                run_dir = self.out / "gans" / f"{_n_name(n)}-seed{seed}"
                gan_config_ = self.config.gan_config(seed)
                if gan_training.completed_epochs(run_dir) < gan_config_.epochs:
                    self.log(f"GAN {run_dir.name}: {gan_config_.epochs * (gan_config_.epoch_images // gan_config_.batch_size)} "
                             f"generator steps on {len(subsets[n])} images")
                    gan_training.train_gan(gan_config_, self.config.data, run_dir, verbose=0 if not self.verbose else 2,
                                           precision=self.config.gan_precision, train_files=subsets[n],
                                           weights_dir=self.config.weights_dir)
                runs[(n, seed)] = run_dir
        return runs

    def _sample_count(self, n, kind: str) -> int:
        """Generated images per class a GAN of subset n must provide for its arms."""
        ratios = self.config.ratio_sweep if n == self.config.smallest and kind == "gan" else (self.config.ratio,)
        return max(ratios) * self._per_class(n)

    def _per_class(self, n) -> int:
        return len(self.subset_files[n]) // len(BINARY_CLASSES)

    def draw_samples(self, gan_runs: Mapping) -> dict:
        """(n, seed, kind) -> (uint8 images [N, S, S, 1], labels, images drawn per class); kind "gan" or
        "gan_filtered" (kept where the run's own class guide gives the class P >= min_guide_confidence)."""
        samples = {}
        for (n, seed), run_dir in gan_runs.items():
            for kind in ("gan", "gan_filtered"):
                path = self.out / "samples" / f"{run_dir.name}-{kind}.npz"
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    count = self._sample_count(n, kind)
                    generator, _, _ = gan_training.load_generator(run_dir)
                    image_filter = None
                    if kind == "gan_filtered":
                        image_filter = gan_training.class_guide_filter(run_dir, self.config.min_guide_confidence)
                    rng = np.random.default_rng([self.config.sample_seed, seed, 1 if image_filter else 0])
                    labels = np.repeat(np.arange(len(BINARY_CLASSES), dtype=np.int32), count)
                    images, drawn = sampling.draw(generator, labels, rng, 100, image_filter)
                    images = sampling.to_uint8(images)
                    _atomic_npz(path, images=images, labels=labels.astype(np.int64), drawn=drawn)
                    grid = images.reshape((len(BINARY_CLASSES), count) + images.shape[1:])[:, :8]
                    plots.save_image_grid(grid, path.with_suffix(".png"), row_labels=list(BINARY_CLASSES),
                                          title=f"{run_dir.name} {kind}")
                with np.load(path) as saved:
                    samples[(n, seed, kind)] = (saved["images"], saved["labels"], saved["drawn"])
        return samples

    # Features: each pool of images (the real splits, a subset's classic copies, a GAN's samples) is
    # passed through the frozen backbone once (and cached on disk); a cell's rows are picked from pools.

    def extractor(self, degrade: bool = True) -> FeatureExtractor:
        if degrade not in self._extractors:
            self._extractors[degrade] = FeatureExtractor(
                self.config.backbone, self.config.image_size, self.config.weights,
                self.config.gan_image_size if degrade else None)
        return self._extractors[degrade]

    def pool(self, key: tuple, make: Callable[[], tuple], degrade: bool = True) -> "Pool":
        """The pool `key` with features (computed once per run and degradation, cached on disk)."""
        if (key, degrade) not in self._pools:
            images, labels, names = make()
            features = self.extractor(degrade).features(_examples(images, labels, names), self.cache,
                                                        verbose=1 if self.verbose else 0)
            self._pools[(key, degrade)] = Pool(features.features, np.asarray(labels, np.int64), list(names))
        return self._pools[(key, degrade)]

    def _real_pool(self, split: str, degrade: bool = True) -> "Pool":
        return self.pool(("real", split), lambda: self._real[split], degrade)

    def _classic_pool(self, n, augmenter: ClassicAugmenter) -> "Pool":
        def make():
            rounds = self._sample_count(n, "gan") // self._per_class(n)
            images, labels, names = self._subset_arrays(n)
            copies = augmenter.copies(images, rounds)  # [rounds, N, ...]
            return (copies.reshape((-1,) + images.shape[1:]), np.tile(labels, rounds),
                    [f"classic/{r}/{name}" for r in range(rounds) for name in names])
        return self.pool(("classic", n), make)

    def _gan_pool(self, n, seed: int, kind: str, samples: Mapping) -> "Pool":
        def make():
            images, labels, _ = samples[(n, seed, kind)]
            names = [f"generated/{_n_name(n)}-seed{seed}-{kind}/{i:05d}" for i in range(len(labels))]
            return _resized(images, self.config.image_size), labels, names
        return self.pool(("gan", n, seed, kind), make)

    def _subset_arrays(self, n):
        images, labels, names = self._real["train"]
        index = {name: i for i, name in enumerate(names)}
        chosen = [index[name] for name in self.subset_files[n]]
        return images[chosen], labels[chosen], [names[i] for i in chosen]

    def train_classifiers(self, subsets: Mapping, samples: Mapping) -> dict:
        """cell name -> {"n", "arm", "gan_seed", "ratio", "rows", "seeds": {seed: metrics...}}."""
        self.subset_files = subsets
        self._pools: dict = {}
        # The real splits as arrays at the classifier's input size (every pool and cell shares them).
        self._real = {}
        for split in ("train", "validation", "test"):
            self._real[split] = _split_arrays(data.load_split(self.config.data, split, balanced=True),
                                              self.config.image_size)
        augmenter = ClassicAugmenter(seed=self.config.augment_seed)
        results = {}
        for cell in self.plan_cells():
            results[cell["name"]] = self.run_cell(cell, augmenter, samples)
        return results

    def plan_cells(self) -> list[dict]:
        """Every (n, arm, ratio, GAN seed) the study trains classifiers for."""
        config = self.config
        cells = []
        for n in config.sizes:
            ratios = config.ratio_sweep if n == config.smallest else (config.ratio,)
            cells.append(dict(n=n, arm="real", ratio=0, gan_seed=None))
            cells.append(dict(n=n, arm="real_full_resolution", ratio=0, gan_seed=None))
            for ratio in ratios:
                cells.append(dict(n=n, arm="classic", ratio=ratio, gan_seed=None))
                for seed in config.seeds_of_gan(n):
                    cells.append(dict(n=n, arm="gan", ratio=ratio, gan_seed=seed))
                    if ratio == config.ratio:
                        cells.append(dict(n=n, arm="gan_filtered", ratio=ratio, gan_seed=seed))
                        cells.append(dict(n=n, arm="classic_gan", ratio=ratio, gan_seed=seed))
        for cell in cells:
            cell["name"] = cell_name(cell)
        return cells

    def training_rows(self, cell: Mapping, augmenter: ClassicAugmenter, samples: Mapping) -> "Pool":
        """A cell's training rows: the subset's real images, then what its arm adds (ratio x n per
        class in every arm that adds any; classic_gan half classic copies, half generated images)."""
        n, arm = cell["n"], cell["arm"]
        degrade = arm != "real_full_resolution"
        real = self._real_pool("train", degrade).select_files(self.subset_files[n])
        added = cell["ratio"] * self._per_class(n)  # rows per class
        parts = [real]
        if arm in ("classic", "classic_gan"):
            parts.append(self._classic_pool(n, augmenter).first_per_class(added if arm == "classic" else (added + 1) // 2))
        if arm in GAN_ARMS:
            kind = "gan_filtered" if arm == "gan_filtered" else "gan"
            parts.append(self._gan_pool(n, cell["gan_seed"], kind, samples)
                         .first_per_class(added if arm != "classic_gan" else added // 2))
        return Pool.concatenate(parts)

    def run_cell(self, cell: dict, augmenter: ClassicAugmenter, samples: Mapping) -> dict:
        config = self.config
        degrade = cell["arm"] != "real_full_resolution"
        folder = self.out / "classifiers" / cell["name"]
        pending = [s for s in config.classifier_seeds if not (folder / f"seed{s}" / classifier.METADATA_FILE).exists()]
        train = self.training_rows(cell, augmenter, samples)
        record = {k: cell[k] for k in ("n", "arm", "ratio", "gan_seed")}
        record.update(rows=len(train.names), seeds={},
                      rows_per_class={c: int((train.labels == i).sum()) for i, c in enumerate(BINARY_CLASSES)})
        if pending:
            self.log(f"{cell['name']}: {len(train.names)} training rows")
            val, test = self._real_pool("validation", degrade), self._real_pool("test", degrade)
        for seed in config.classifier_seeds:
            seed_dir = folder / f"seed{seed}"
            if seed in pending:
                self._train_one(cell, seed, degrade, train, val, test, seed_dir)
            saved = json.loads((seed_dir / classifier.METADATA_FILE).read_text())
            record["seeds"][seed] = {"validation": saved["metrics"]["validation"], "test": saved["metrics"]["test"],
                                     "test_correct": saved["study"]["test_correct"]}
        return record

    def _train_one(self, cell, seed, degrade, train: "Pool", val: "Pool", test: "Pool", seed_dir):
        clf_config = self.config.classifier_config(seed, degrade)
        extractor = self.extractor(degrade)
        keras.utils.set_random_seed(seed)  # the same initial head for a seed in every arm: paired
        head = classifier.build_head(extractor.feature_shape)
        history = classifier.train_head(head, clf_config, train.feature_set(), val.feature_set(), verbose=0)
        predictions = {}
        for split, pool in (("train", train), ("validation", val), ("test", test)):
            probabilities = head.predict(pool.features, batch_size=classifier.PREDICT_BATCH_SIZE, verbose=0)
            predictions[split] = (pool.labels.astype(np.float32), probabilities.reshape(-1))
        metrics = {split: evaluation.classification_metrics(*p) for split, p in predictions.items()}
        trained = classifier.TrainedClassifier(clf_config, extractor, head,
                                               classifier.assemble_classifier(extractor, head), history,
                                               predictions, metrics)
        test_labels, test_p = predictions["test"]
        description = {"config": self.config.data.config, "study_cell": cell["name"], "train_rows": len(train.names),
                       "train_names_sha256": hashlib.sha256("\n".join(train.names).encode()).hexdigest()}
        partial = seed_dir.with_name(f".{seed_dir.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        classifier.save_classifier(trained, partial, description)
        metadata = json.loads((partial / classifier.METADATA_FILE).read_text())
        metadata["study"] = {"cell": cell["name"], "seed": seed,
                             "test_correct": ((test_p >= 0.5) == (test_labels >= 0.5)).astype(int).tolist()}
        (partial / classifier.METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        shutil.rmtree(seed_dir, ignore_errors=True)
        os.replace(partial, seed_dir)
        self.log(f"  {cell['name']} seed {seed}: test accuracy {metrics['test']['accuracy']:.3f}")

    # The report.

    def report(self, subsets: Mapping, gan_runs: Mapping, results: Mapping) -> dict:
        summary = summarise(results, self.config)
        record = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "subsets": {str(n): {"files": files, "file_list": f"subsets/{_n_name(n)}.json"} for n, files in subsets.items()},
            "gan_runs": {f"{_n_name(n)}-seed{s}": {"run_dir": str(d), "generator_steps": _generator_steps(d)}
                         for (n, s), d in gan_runs.items()},
            "cells": results,
            "summary": summary,
            "timings_s": self.timings,
            "provenance": provenance(),
        }
        _atomic_json(self.out / RESULTS_JSON, record)
        gan_training.atomic_write_text(self.out / RESULTS_MD, results_markdown(record))
        save_figure(summary, self.config, self.out / FIGURE)
        return record


@dataclasses.dataclass
class Pool:
    """Rows for a classifier: backbone features, labels (1 is COVID) and a name per row."""

    features: np.ndarray
    labels: np.ndarray
    names: list

    def select_files(self, names: Sequence[str]) -> "Pool":
        index = {name: i for i, name in enumerate(self.names)}
        return self._take([index[name] for name in names])

    def first_per_class(self, per_class: int) -> "Pool":
        """The first `per_class` rows of every class (all classes in label order)."""
        chosen = []
        for label in range(len(BINARY_CLASSES)):
            members = np.flatnonzero(self.labels == label)[:per_class]
            if len(members) < per_class:
                raise ValueError(f"a pool has {len(members)} rows of class {label}, {per_class} are needed")
            chosen += members.tolist()
        return self._take(chosen)

    def _take(self, rows: Sequence[int]) -> "Pool":
        rows = np.asarray(rows, np.int64)
        return Pool(self.features[rows], self.labels[rows], [self.names[i] for i in rows])

    def feature_set(self) -> FeatureSet:
        return FeatureSet(self.features, self.labels.astype(np.float32))

    @staticmethod
    def concatenate(pools: Sequence["Pool"]) -> "Pool":
        return Pool(np.concatenate([p.features for p in pools]), np.concatenate([p.labels for p in pools]),
                    [name for p in pools for name in p.names])


def cell_name(cell: Mapping) -> str:
    name = f"{_n_name(cell['n'])}-{cell['arm']}"
    if cell["arm"] not in ("real", "real_full_resolution"):
        name += f"-x{cell['ratio']}"
    if cell.get("gan_seed") is not None:
        name += f"-gan{cell['gan_seed']}"
    return name


def _generator_steps(run_dir: pathlib.Path) -> int | None:
    try:
        config, _ = gan_training.read_run_config(run_dir)
    except (OSError, ValueError):
        return None
    return gan_training.completed_epochs(run_dir) * (config.epoch_images // config.batch_size)


# --- statistics --------------------------------------------------------------------------------


def _seed_values(cell: Mapping, metric: str) -> dict[int, float]:
    return {int(s): v["test"][metric] for s, v in cell["seeds"].items() if v["test"][metric] is not None}


def _arm_groups(results: Mapping, config: StudyConfig) -> dict:
    """(n, arm, ratio) -> list of cells (one per GAN seed, or one)."""
    groups: dict = {}
    for cell in results.values():
        groups.setdefault((str(cell["n"]), cell["arm"], cell["ratio"]), []).append(cell)
    return groups


def _pooled_per_seed(cells: Sequence[Mapping], metric: str) -> dict[int, float]:
    """Per classifier seed, the mean over the GAN seeds' cells (one value per seed to pair)."""
    per_seed: dict[int, list[float]] = {}
    for cell in cells:
        for seed, value in _seed_values(cell, metric).items():
            per_seed.setdefault(seed, []).append(value)
    return {seed: float(np.mean(values)) for seed, values in sorted(per_seed.items())}


def summarise(results: Mapping, config: StudyConfig) -> list[dict]:
    """One row per (n, arm, ratio): mean ± sd per metric over classifier (x GAN) seeds, a 95 %
    interval for test accuracy over seeds and test images, and paired differences against real
    only and against classic at the same n and ratio."""
    groups = _arm_groups(results, config)
    rows = []
    for (n, arm, ratio), cells in groups.items():
        row = {"n": n, "arm": arm, "ratio": ratio, "gan_seeds": [c["gan_seed"] for c in cells if c["gan_seed"] is not None],
               "rows": cells[0]["rows"], "metrics": {}}
        for metric in REPORTED:
            values = [v for c in cells for v in _seed_values(c, metric).values()]
            row["metrics"][metric] = {"mean": float(np.mean(values)) if values else None,
                                      "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                                      "n": len(values)}
        correct = [v["test_correct"] for c in cells for v in c["seeds"].values()]
        row["test_accuracy_interval"] = intervals.mean_interval(correct, shared_items=True, num_resamples=1000)
        row["paired"] = {}
        for baseline_arm, baseline_ratio in (("real", 0), ("classic", ratio)):
            baseline = groups.get((n, baseline_arm, baseline_ratio))
            if baseline is None or (baseline_arm, baseline_ratio) == (arm, ratio) or arm == "real_full_resolution":
                continue
            row["paired"][baseline_arm] = {}
            for metric in REPORTED:
                mine, theirs = _pooled_per_seed(cells, metric), _pooled_per_seed(baseline, metric)
                seeds = sorted(set(mine) & set(theirs))
                if len(seeds) >= 2:
                    row["paired"][baseline_arm][metric] = intervals.paired_difference(
                        [mine[s] for s in seeds], [theirs[s] for s in seeds])
        rows.append(row)
    order = {arm: i for i, arm in enumerate(ARMS)}
    rows.sort(key=lambda r: (_n_order(r["n"]), order[r["arm"]], r["ratio"]))
    return rows


def _n_order(n: str) -> float:
    return float("inf") if n == ALL else float(n)


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _paired_text(paired: Mapping | None) -> str:
    if not paired:
        return "–"
    mark = {"better": " (better)", "worse": " (worse)"}.get(paired["verdict"], "")
    return f"{paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]{mark}"


def results_markdown(record: Mapping) -> str:
    config = record["config"]
    lines = [
        "# Does the GAN help? The augmentation study",
        "",
        f"Data `{config['data']['config']}`; frozen {config['backbone']} at {config['image_size']} px, every image "
        f"brought down to the GAN's resolution and back inside the model (but the full-resolution row); "
        f"head recipe: lr {config['learning_rate']:g}, {config['classifier_epochs']} epochs, batch "
        f"{config['classifier_batch_size']}, the epoch of lowest validation loss kept; classifier seeds "
        f"{config['classifier_seeds']}. GAN preset `{config['gan_preset']}`, {config['gan_epochs']} epochs of "
        f"{config['epoch_images']} images at every n. Test split scored once per classifier.",
        "",
        "Test figures: mean ± sd over classifier seeds (and GAN seeds where there are several); the 95 % interval "
        "of accuracy covers seeds and test images; Δ is the paired per-seed difference with its 95 % t interval, "
        "marked better/worse only when the interval excludes 0.",
        "",
        "| n per class | arm | × | rows | test accuracy | 95 % interval | AUC | sensitivity | specificity "
        "| Δ acc vs real | Δ acc vs classic |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["summary"]:
        m = row["metrics"]
        cell = lambda k: f"{_fmt(m[k]['mean'])} ± {_fmt(m[k]['sd'])}"  # noqa: E731
        interval = row["test_accuracy_interval"]
        seeds = f" (GAN seeds {row['gan_seeds']})" if len(row["gan_seeds"]) > 1 else ""
        lines.append(
            f"| {row['n']} | {ARM_TITLES[row['arm']]}{seeds} | {row['ratio'] or ''} | {row['rows']} | {cell('accuracy')} "
            f"| [{interval['low']:.3f}, {interval['high']:.3f}] | {cell('auc')} | {cell('sensitivity')} "
            f"| {cell('specificity')} | {_paired_text(row['paired'].get('real', {}).get('accuracy'))} "
            f"| {_paired_text(row['paired'].get('classic', {}).get('accuracy'))} |"
        )
    lines += ["", "Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in record["timings_s"].items()),
              "", f"Provenance: {json.dumps(record['provenance'])}", ""]
    return "\n".join(lines)


def save_figure(summary: Sequence[Mapping], config: StudyConfig, path: pathlib.Path) -> None:
    """Test accuracy against n for each arm at the main ratio, with 95 % bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [str(s) for s in config.sizes]
    x_of = {n: i for i, n in enumerate(sizes)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in ARMS:
        rows = [r for r in summary if r["arm"] == arm and r["ratio"] in (0, config.ratio)]
        if not rows:
            continue
        rows.sort(key=lambda r: x_of[r["n"]])
        xs = [x_of[r["n"]] for r in rows]
        ax.plot(xs, [r["test_accuracy_interval"]["mean"] for r in rows], marker="o", label=ARM_TITLES[arm])
        ax.fill_between(xs, [r["test_accuracy_interval"]["low"] for r in rows],
                        [r["test_accuracy_interval"]["high"] for r in rows], alpha=0.15)
    ax.set_xticks(range(len(sizes)), [s if s != ALL else "all" for s in sizes])
    ax.set_xlabel("real train images per class")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{config.backbone}, GAN preset {config.gan_preset}: mean and 95 % interval")
    ax.legend(fontsize=8)
    fig.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    fig.savefig(partial, dpi=120)
    plt.close(fig)
    os.replace(partial, path)


def provenance() -> dict:
    """Package versions, git commit, CPU and load: what a reader needs to place the timings."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=pathlib.Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__, "cpu": cpu,
            "cpus": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "git_commit": commit, "gpus": len(tf.config.list_physical_devices("GPU"))}

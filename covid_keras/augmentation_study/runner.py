"""`AugmentationStudy`: the stages of a study in its folder (subsets, GANs, samples, classifiers,
report), each reusing what an earlier run of the same study left.

Under a multi-worker strategy every worker runs the study up to its GANs, which train across the
workers (`train_gan` under the strategy) on a study folder they all share; "is this GAN done?" is
the chief's answer on every worker (`distribute.chief_value`), so no worker skips a training the
others join. The chief alone writes the folder and goes on to the samples, the classifiers and the
report; the others end after the GANs. The classifier heads stay on one process: a head is a few
thousand weights on cached features, so its steps are all communication across workers
(docs/distributed.md measures it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import time
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import classifier, data, distribute, evaluation, files, plots
from covid_keras.augment import ClassicAugmenter
from covid_keras.augmentation_study.config import (
    FIGURE,
    FORMAT_VERSION,
    GAN_ARMS,
    RESULTS_JSON,
    RESULTS_MD,
    STUDY_FILE,
    StudyConfig,
    n_name,
    scarce_subset,
)
from covid_keras.augmentation_study.report import results_markdown, save_figure, summarise
from covid_keras.classifier import FeatureCache, FeatureExtractor, FeatureSet
from covid_keras.gan import run_dir as gan_run_dir
from covid_keras.gan import sampling
from covid_keras.gan import training as gan_training
from covid_keras.labels import BINARY_CLASSES
from covid_keras.provenance import provenance

# --- the study folder --------------------------------------------------------------------------


def _atomic_json(path: pathlib.Path, value: Any) -> None:
    files.atomic_write_json(path, value, default=files.json_default)


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
        if saved != json.loads(json.dumps(record, default=files.json_default)):
            raise ValueError(f"{path} holds a study with another configuration: refusing to mix them; "
                             "choose another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no {STUDY_FILE}: refusing to write a study into it")
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(path, record)


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
                 log: Callable[[str], None] = print, report_only: bool = False,
                 strategy: tf.distribute.Strategy | None = None):
        self.config = config
        # strategy: what the GANs train under (default: the current one, i.e. one process).
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_chief = distribute.is_chief(self.strategy)
        # report_only: train nothing; report the cells whose every classifier is saved already.
        self.report_only = report_only
        self.unfinished: list[str] = []
        self.out = pathlib.Path(out)
        self.verbose = verbose
        self.log = log
        self.timings: dict[str, float] = {}
        self.cache = FeatureCache(self.out / "feature_cache")
        self._extractors: dict[bool, FeatureExtractor] = {}
        self._saved_forms: dict[bool, tuple[keras.Model, keras.Model]] = {}

    # Stages, each reusing what an earlier run of the same study left.

    def run(self) -> dict:
        gan_training.check_pretrained_weights(self.config.gan_config(), self.config.weights_dir)  # before the folder
        if self.is_chief:
            claim_study_dir(self.out, self.config)
        distribute.chief_first(self.strategy, lambda: data.prepare(self.config.data))
        class_names = data.class_names(self.config.data)
        if list(class_names) != list(BINARY_CLASSES):
            raise ValueError(f"the study needs the classes {BINARY_CLASSES}, {self.config.data.config} has {class_names}")
        subsets = self._timed("subsets", self.make_subsets)
        self.subset_files = subsets
        if self.report_only:
            gan_runs = {(n, seed): self.out / "gans" / f"{n_name(n)}-seed{seed}"
                        for n in self.config.sizes for seed in self.config.seeds_of_gan(n)}
        else:
            gan_runs = self._timed("gans", lambda: self.train_gans(subsets))
        if not self.is_chief:
            self.log("the GANs are trained; the chief goes on alone")
            return {}
        samples = {} if self.report_only else self._timed("samples", lambda: self.draw_samples(gan_runs))
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
        if self.is_chief:
            folder.mkdir(exist_ok=True)
        subsets = {}
        for n in self.config.sizes:
            files = scarce_subset(pairs, n, self.config.subset_seed)
            path = folder / f"{n_name(n)}.json"
            if path.exists():
                saved = json.loads(path.read_text())["files"]
                if saved != files:
                    raise ValueError(f"{path} lists other files than seed {self.config.subset_seed} draws now")
            elif self.is_chief:
                _atomic_json(path, {"n_per_class": str(n), "seed": self.config.subset_seed, "files": files})
            subsets[n] = files
            self.log(f"{n_name(n)}: {len(files)} real train images")
        return subsets

    def train_gans(self, subsets: Mapping) -> dict:
        """(n, seed) -> GAN run folder, each trained on its subset only."""
        runs = {}
        for n in self.config.sizes:
            for seed in self.config.seeds_of_gan(n):
                run_dir = self.out / "gans" / f"{n_name(n)}-seed{seed}"
                gan_config_ = self.config.gan_config(seed)
                if distribute.chief_value(self.strategy, gan_run_dir.completed_epochs(run_dir)) < gan_config_.epochs:
                    self.log(f"GAN {run_dir.name}: {gan_config_.epochs * (gan_config_.epoch_images // gan_config_.batch_size)} "
                             f"generator steps on {len(subsets[n])} images")
                    gan_training.train_gan(gan_config_, self.config.data, run_dir, verbose=0 if not self.verbose else 2,
                                           precision=self.config.gan_precision, train_files=subsets[n],
                                           weights_dir=self.config.weights_dir, strategy=self.strategy)
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
        "gan_filtered" (kept where the run's own class guide gives the class P >= min_guide_confidence;
        only for a GAN that has a guide)."""
        samples = {}
        kinds = ("gan", "gan_filtered") if self.config.filters_by_guide else ("gan",)
        for (n, seed), run_dir in gan_runs.items():
            for kind in kinds:
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

    def saved_form(self, degrade: bool = True) -> tuple[keras.Model, keras.Model]:
        """(head, whole classifier) to save every trained head through, one pair per extractor.

        A model built on the extractor stays reachable from the backbone's layers for as long as
        the extractor lives, so assembling one per classifier kept every head (and its optimizer)
        in memory: 135 of them ran the machine out of memory. Each trained head's weights are
        copied into this one instead.
        """
        if degrade not in self._saved_forms:
            extractor = self.extractor(degrade)
            head = classifier.build_head(extractor.feature_shape)
            self._saved_forms[degrade] = (head, classifier.assemble_classifier(extractor, head))
        return self._saved_forms[degrade]

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
            names = [f"generated/{n_name(n)}-seed{seed}-{kind}/{i:05d}" for i in range(len(labels))]
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
            if self.report_only and self._pending(cell):
                self.unfinished.append(cell["name"])
                continue
            results[cell["name"]] = self.run_cell(cell, augmenter, samples)
        return results

    def _pending(self, cell: Mapping) -> list[int]:
        folder = self.out / "classifiers" / cell["name"]
        return [s for s in self.config.classifier_seeds if not (folder / f"seed{s}" / classifier.METADATA_FILE).exists()]

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
                        if config.filters_by_guide:
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
        pending = self._pending(cell)
        record = {k: cell[k] for k in ("n", "arm", "ratio", "gan_seed")}
        record["seeds"] = {}
        if pending:  # the rows (and the backbone's features) are needed only to train
            train = self.training_rows(cell, augmenter, samples)
            record["rows"] = len(train.names)
            self.log(f"{cell['name']}: {len(train.names)} training rows")
            val, test = self._real_pool("validation", degrade), self._real_pool("test", degrade)
        for seed in config.classifier_seeds:
            seed_dir = folder / f"seed{seed}"
            if seed in pending:
                self._train_one(cell, seed, degrade, train, val, test, seed_dir)
            saved = json.loads((seed_dir / classifier.METADATA_FILE).read_text())
            record["rows"] = saved["data"]["train_rows"]
            record["seeds"][seed] = {"validation": saved["metrics"]["validation"], "test": saved["metrics"]["test"],
                                     "test_correct": saved["study"]["test_correct"]}
        return record

    def _train_one(self, cell, seed, degrade, train: "Pool", val: "Pool", test: "Pool", seed_dir):
        clf_config = self.config.classifier_config(seed, degrade)
        extractor = self.extractor(degrade)
        saved_head, saved_model = self.saved_form(degrade)  # built before the seed is set: it draws weights
        keras.utils.set_random_seed(seed)  # the same initial head for a seed in every arm: paired
        head = classifier.build_head(extractor.feature_shape)
        history = classifier.train_head(head, clf_config, train.feature_set(), val.feature_set(), verbose=0)
        predictions = {}
        for split, pool in (("train", train), ("validation", val), ("test", test)):
            probabilities = head.predict(pool.features, batch_size=classifier.PREDICT_BATCH_SIZE, verbose=0)
            predictions[split] = (pool.labels.astype(np.float32), probabilities.reshape(-1))
        metrics = {split: evaluation.classification_metrics(*p) for split, p in predictions.items()}
        saved_head.set_weights(head.get_weights())
        trained = classifier.TrainedClassifier(clf_config, extractor, saved_head, saved_model, history,
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
            "subsets": {str(n): {"files": files, "file_list": f"subsets/{n_name(n)}.json"} for n, files in subsets.items()},
            "gan_runs": {f"{n_name(n)}-seed{s}": {"run_dir": str(d), "generator_steps": _generator_steps(d)}
                         for (n, s), d in gan_runs.items()},
            "cells": results,
            "unfinished_cells": self.unfinished,
            "summary": summary,
            "timings_s": self.timings,
            "provenance": provenance(),
        }
        _atomic_json(self.out / RESULTS_JSON, record)
        files.atomic_write_text(self.out / RESULTS_MD, results_markdown(record))
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
    name = f"{n_name(cell['n'])}-{cell['arm']}"
    if cell["arm"] not in ("real", "real_full_resolution"):
        name += f"-x{cell['ratio']}"
    if cell.get("gan_seed") is not None:
        name += f"-gan{cell['gan_seed']}"
    return name


def _generator_steps(run_dir: pathlib.Path) -> int | None:
    try:
        config, _ = gan_run_dir.read_run_config(run_dir)
    except (OSError, ValueError):
        return None
    return gan_run_dir.completed_epochs(run_dir) * (config.epoch_images // config.batch_size)



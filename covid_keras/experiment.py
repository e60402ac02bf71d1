"""The augmentation experiment: frozen-backbone classifiers with and without GAN images, over seeds.

For each backbone:

- baseline: the head trained on the real train split;
- augmented: the head trained on the real train split plus the generated images (a
  `DIR/<class>/*.png` folder, added with `data.with_generated`, at most `per_class` per class).

Validation and test stay real-only in both settings (the study leaked synthetic images into
both); `check_split_contents` refuses to go on when a generated file reaches them. The backbone
is frozen, so its features are computed once per backbone for the real splits and for the
generated images (through a `classifier.FeatureCache`) and reused by every seed and both
settings: a seed changes only the head's initial weights and the shuffling. The same seed gives
both settings the same initial head, so the two are compared pair by pair.

    config = ExperimentConfig(data.DataSpec("phantom"), "generated/run3", weights="/work/weights")
    results = run_experiment(config, "runs/experiment")

Writes OUT/results.json (every per-seed figure, weights with sha256, data, timings),
OUT/results.md (the study's table as mean ± sd) and OUT/test_accuracy.png (bar chart).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import time
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import classifier, data, evaluation, generate, plots, tuning
from covid_keras.backbones import BACKBONES, get_backbone_spec
from covid_keras.classifier import (
    ClassifierConfig,
    FeatureCache,
    FeatureExtractor,
    FeatureSet,
)
from covid_keras.evaluation import intervals
from covid_keras.labels import BINARY_CLASSES

DEFAULT_BACKBONES = tuple(BACKBONES)
DEFAULT_SEEDS = (0, 1, 2)
SETTINGS = ("baseline", "augmented")
# The small CNN also gets classic augmentation, as many rows as the GAN adds, so the answer is
# "GAN vs real vs classic" (frozen backbones keep the two settings their cached features serve).
SMALL_CNN_SETTINGS = ("baseline", "classic", "augmented")
SETTING_LABELS = {"baseline": "baseline (real)", "classic": "real + classic augmentation",
                  "augmented": "augmented (+GAN)"}
# Not a frozen backbone: the small CNN of the GAN's judge and TRTR (`evaluation.judge`), trained from
# scratch on the images; what classifies when no ImageNet weights are at hand.
SMALL_CNN = "small_cnn"
# (split, metric) columns of the table, in the study's order plus the test metrics it lacked.
REPORTED = (
    ("train", "accuracy"),
    ("validation", "accuracy"),
    ("test", "accuracy"),
    ("test", "auc"),
    ("test", "sensitivity"),
    ("test", "specificity"),
)
COLUMN_TITLES = {
    "train_accuracy": "train acc",
    "validation_accuracy": "val acc",
    "test_accuracy": "test acc (real only)",
    "test_auc": "test AUC",
    "test_sensitivity": "test sensitivity",
    "test_specificity": "test specificity",
}
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
BAR_CHART = "test_accuracy.png"
ROC_CHART = "roc_test.png"
CONFUSION_CHART = "confusion_test.png"
FEATURE_CACHE_DIR = "feature_cache"
FORMAT_VERSION = 1
# A real split holding a name of `generate.GENERATED_FILE_NAME`'s form is a mixed folder like the
# study's, even without the "generated/" prefix.
GENERATED_FILE_NAME = generate.GENERATED_FILE_NAME


class SyntheticLeakError(ValueError):
    """A generated image sits in a split that must be real-only."""


# --- configuration ---------------------------------------------------------------------------


@dataclasses.dataclass
class ExperimentConfig:
    """What the experiment runs on; classifier defaults are the study's presets.

    weights: "imagenet", a local weights file or directory, None (random init, tests), or a
    mapping backbone -> one of those. per_class: at most this many generated images per class
    (the first by file name); None takes the whole folder. tuned_dir: KerasTuner results
    (`DIR/<backbone>/best_hyperparameters.json` or one `best_hyperparameters.json` naming its
    backbone); backbones without one use the study's rate. balanced: cut every class to the
    smallest one's count in each real split, as the study did. generated_data_dir: TFDS data dir
    for the generated folder's build (default: `data.data_dir`).
    """

    data: data.DataSpec
    generated_dir: str
    backbones: tuple[str, ...] = DEFAULT_BACKBONES
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    weights: str | None | Mapping[str, str | None] = "imagenet"
    per_class: int | None = None
    image_size: int = classifier.STUDY_IMAGE_SIZE
    epochs: int = classifier.STUDY_EPOCHS
    batch_size: int = classifier.STUDY_BATCH_SIZE
    balanced: bool = True
    tuned_dir: str | None = None
    generated_data_dir: str | None = None
    small_cnn_epochs: int = 40  # at most, early-stopped: the judge's recipe (`evaluation.judge.ClassifierRecipe`)

    def __post_init__(self):
        self.backbones = tuple(self.backbones)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.generated_dir = os.path.abspath(os.path.expanduser(self.generated_dir))
        if not self.backbones:
            raise ValueError("backbones: give at least one backbone")
        for name in self.backbones:
            if name != SMALL_CNN:
                classifier.check_image_size(get_backbone_spec(name), self.image_size)
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if self.per_class is not None and self.per_class < 1:
            raise ValueError(f"per_class must be >= 1 (or None for the whole folder), got {self.per_class}")
        if isinstance(self.weights, Mapping):
            missing = [b for b in self.backbones if b not in self.weights and b != SMALL_CNN]
            if missing:
                raise ValueError(f"weights: the mapping has no entry for {', '.join(missing)}")

    def weights_for(self, backbone: str) -> str | None:
        if backbone == SMALL_CNN:
            return None
        weights = self.weights[backbone] if isinstance(self.weights, Mapping) else self.weights
        return None if weights in (None, "none") else str(weights)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["data"] = dataclasses.asdict(self.data)
        values["backbones"] = list(self.backbones)
        values["seeds"] = list(self.seeds)
        values["weights"] = dict(self.weights) if isinstance(self.weights, Mapping) else self.weights
        return values


# --- splits ----------------------------------------------------------------------------------


def is_generated_name(file_name: str) -> bool:
    return file_name.startswith(data.GENERATED_PREFIX) or GENERATED_FILE_NAME.search(file_name) is not None


def check_split_contents(
    real: Mapping[str, tf.data.Dataset], generated: tf.data.Dataset | None = None
) -> dict[str, dict]:
    """Refuse any generated file in the real splits; return each split's counts.

    real: split name -> examples that must be real-only (train, validation, test).
    generated: the images added to train; every one must carry the "generated/" prefix, which
    is how `data.with_generated` marks them. Raises SyntheticLeakError naming the files.
    """
    contents = {}
    for split, ds in real.items():
        pairs = data.file_names_and_labels(ds)
        leaked = [name for name, _ in pairs if is_generated_name(name)]
        if leaked:
            raise SyntheticLeakError(
                f"{len(leaked)} generated image(s) in the {split} split, which must be real-only "
                f"(e.g. {', '.join(leaked[:5])}): add generated images to train only, with data.with_generated"
            )
        contents[split] = _counts(pairs)
    if generated is not None:
        pairs = data.file_names_and_labels(generated)
        unmarked = [name for name, _ in pairs if not name.startswith(data.GENERATED_PREFIX)]
        if unmarked:
            raise SyntheticLeakError(
                f"{len(unmarked)} added image(s) lack the {data.GENERATED_PREFIX!r} prefix "
                f"(e.g. {', '.join(unmarked[:5])}): they could not be told apart from real ones"
            )
        contents["generated"] = _counts(pairs)
    return contents


def _counts(pairs: Sequence[tuple[str, int]]) -> dict:
    per_class = {name: 0 for name in BINARY_CLASSES}
    for _, label in pairs:
        per_class[BINARY_CLASSES[label]] += 1
    return {"n": len(pairs), "per_class": per_class}


def first_per_class(pairs: Sequence[tuple[str, int]], per_class: int | None) -> list[str]:
    """File names of the first `per_class` images of each class, by file name (all when None)."""
    by_class: dict[int, list[str]] = {}
    for name, label in sorted(pairs):
        by_class.setdefault(label, []).append(name)
    return [name for names in by_class.values() for name in names[:per_class]]


@dataclasses.dataclass
class ExperimentSplits:
    """The real splits and the generated images the augmented setting adds to train."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    generated: tf.data.Dataset
    contents: dict[str, dict]  # split -> {"n", "per_class"}


def load_experiment_splits(config: ExperimentConfig) -> ExperimentSplits:
    """Real train/validation/test, and the generated images as `data.with_generated` adds them."""
    if not os.path.isdir(config.generated_dir):
        raise FileNotFoundError(
            f"generated folder {config.generated_dir} does not exist: write one with scripts/generate.py"
        )
    if config.data.path and os.path.abspath(config.data.path) == config.generated_dir:
        raise SyntheticLeakError(f"the real data and the generated images are the same folder {config.generated_dir}")
    train, validation, test = (
        data.load_split(config.data, split, balanced=config.balanced) for split in classifier.SPLITS
    )
    augmented = data.with_generated(train, config.generated_dir, config.generated_data_dir or config.data.data_dir)
    prefix = re.escape(data.GENERATED_PREFIX)
    generated = augmented.filter(lambda e: tf.strings.regex_full_match(e["file_name"], f"{prefix}.*"))
    if config.per_class is not None:
        generated = data.keep_files(generated, first_per_class(data.file_names_and_labels(generated), config.per_class))
    contents = check_split_contents({"train": train, "validation": validation, "test": test}, generated)
    if contents["generated"]["n"] == 0:
        raise ValueError(f"no generated image could be read from {config.generated_dir} (expected DIR/<class>/*.png)")
    return ExperimentSplits(train, validation, test, generated, contents)


# --- learning rates --------------------------------------------------------------------------


def head_hyperparameters(backbone: str, tuned_dir: str | os.PathLike | None = None) -> dict:
    """{"learning_rate", "optimizer", "source"}: a tuning result for `backbone` if found, else the study's."""
    study = {
        "learning_rate": get_backbone_spec(backbone).study_learning_rate,
        "optimizer": classifier.STUDY_OPTIMIZER,
        "source": "study",
    }
    if tuned_dir is None:
        return study
    tuned_dir = pathlib.Path(tuned_dir)
    if not tuned_dir.exists():
        raise FileNotFoundError(f"tuning results folder {tuned_dir} does not exist")
    for candidate in (tuned_dir / backbone, tuned_dir / f"tune_{backbone}", tuned_dir):
        path = candidate / tuning.BEST_FILE
        if not path.is_file():
            continue
        best = tuning.load_best_hyperparameters(path)
        if best.get("backbone", backbone) != backbone:
            continue  # a single-backbone result for another backbone
        return {"learning_rate": float(best["learning_rate"]), "optimizer": str(best["optimizer"]), "source": str(path)}
    print(f"warning: no tuning result for {backbone} under {tuned_dir}; using the study's learning rate")
    return {**study, "source": f"study (no tuning result for {backbone} under {tuned_dir})"}


# --- training --------------------------------------------------------------------------------


def backbone_features(
    backbone: str, config: ExperimentConfig, splits: ExperimentSplits, cache: FeatureCache | None, verbose: int = 1
) -> tuple[dict[str, FeatureSet], classifier.WeightsInfo]:
    """Features of the real splits and of the generated images, once; the backbone is then freed."""
    # Seeded so that a random-init backbone (weights none, tests) gives the same features every run.
    keras.utils.set_random_seed(config.seeds[0])
    extractor = FeatureExtractor(backbone, config.image_size, config.weights_for(backbone))
    features = {}
    for name in ("train", "validation", "test", "generated"):
        if verbose:
            print(f"{backbone}: features of {name}")
        features[name] = extractor.features(getattr(splits, name), cache, verbose=verbose)
    weights_info = extractor.weights_info
    del extractor
    keras.backend.clear_session()  # the backbone is not needed again: free it before the heads
    return features, weights_info


def fit_and_evaluate_head(
    config: ClassifierConfig, train: FeatureSet, evaluated: Mapping[str, FeatureSet]
) -> dict:
    """Train a fresh head (seeded by config.seed) on `train`; metrics on each of `evaluated`."""
    keras.utils.set_random_seed(config.seed)  # the head's initial weights and the shuffling
    head = classifier.build_head(train.features.shape[1:])
    history = classifier.train_head(head, config, train, evaluated.get("validation"), verbose=0)
    metrics, test_probabilities = {}, None
    for name, feature_set in evaluated.items():
        probabilities = head.predict(feature_set.features, batch_size=classifier.PREDICT_BATCH_SIZE, verbose=0)
        metrics[name] = evaluation.classification_metrics(feature_set.labels.astype(np.int64), probabilities)
        if name == "test":
            test_probabilities = [round(float(p), 6) for p in np.reshape(probabilities, -1)]
    del head
    keras.backend.clear_session()
    # The test probabilities: the report's ROC curves (the labels are the backbone's `test_labels`).
    return {"seed": config.seed, "metrics": metrics, "history": history, "test_probabilities": test_probabilities}


def summarize(values: Sequence[float | None]) -> dict:
    """Mean and sample sd (ddof 1; None with one value) of the defined values."""
    defined = [float(v) for v in values if v is not None]
    mean = float(np.mean(defined)) if defined else None
    sd = float(np.std(defined, ddof=1)) if len(defined) > 1 else None
    return {"mean": mean, "sd": sd, "n": len(defined), "values": list(values)}


def summarize_runs(runs: Sequence[dict]) -> dict[str, dict]:
    return {
        f"{split}_{metric}": summarize([run["metrics"][split][metric] for run in runs]) for split, metric in REPORTED
    }


def compare_settings(runs: Mapping[str, Sequence[dict]], reference: str = "baseline") -> dict:
    """Test-accuracy gain of augmented over `reference` (baseline, or classic), paired by seed (same
    seeds, same test images): the paired 95 % interval (`evaluation.intervals.paired_difference`)
    gives the verdict."""
    baseline = [run["metrics"]["test"]["accuracy"] for run in runs[reference]]
    augmented = [run["metrics"]["test"]["accuracy"] for run in runs["augmented"]]
    sd_baseline, sd_augmented = summarize(baseline)["sd"], summarize(augmented)["sd"]
    return {
        "test_accuracy_gain": float(np.mean(augmented) - np.mean(baseline)),
        "paired_gain": summarize([a - b for a, b in zip(augmented, baseline)]),
        "paired_interval": intervals.paired_difference(augmented, baseline) if len(baseline) > 1 else None,
        "run_to_run_sd": max((s for s in (sd_baseline, sd_augmented) if s is not None), default=None),
    }


def run_backbone(
    backbone: str, config: ExperimentConfig, splits: ExperimentSplits, cache: FeatureCache | None, verbose: int = 1
) -> dict:
    """Both settings over every seed for one backbone, on features computed once."""
    started = time.perf_counter()
    features, weights_info = backbone_features(backbone, config, splits, cache, verbose)
    features_s = time.perf_counter() - started
    hyper = head_hyperparameters(backbone, config.tuned_dir)
    training_sets = {
        "baseline": features["train"],
        "augmented": features["train"].concatenate(features["generated"]),
    }
    evaluated = {"validation": features["validation"], "test": features["test"]}
    runs: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    progress = keras.utils.Progbar(len(config.seeds) * len(SETTINGS), unit_name="head", verbose=verbose)
    heads_started = time.perf_counter()
    for seed in config.seeds:
        for setting in SETTINGS:
            head_config = ClassifierConfig(
                backbone=backbone,
                weights=config.weights_for(backbone),
                image_size=config.image_size,
                epochs=config.epochs,
                batch_size=config.batch_size,
                learning_rate=hyper["learning_rate"],
                optimizer=hyper["optimizer"],
                seed=seed,
            )
            train = training_sets[setting]
            runs[setting].append(fit_and_evaluate_head(head_config, train, {"train": train, **evaluated}))
            progress.add(1)
    return {
        "weights": weights_info.to_dict(),
        "learning_rate": hyper["learning_rate"],
        "optimizer": hyper["optimizer"],
        "hyperparameters_source": hyper["source"],
        "feature_shape": list(features["train"].features.shape[1:]),
        "n_train": {setting: int(fs.labels.size) for setting, fs in training_sets.items()},
        "test_labels": features["test"].labels.astype(int).tolist(),
        "runs": runs,
        "summary": {setting: summarize_runs(runs[setting]) for setting in SETTINGS},
        "comparison": compare_settings(runs),
        "timings_s": {"features": features_s, "heads": time.perf_counter() - heads_started},
    }


def grey_arrays(ds: tf.data.Dataset, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, S, S, 1], int64 labels [N]) of a split's examples, in its order."""
    images, labels = [], []
    for example in ds.map(lambda e: (data.resized_uint8(e["image"], image_size), e["label"])).as_numpy_iterator():
        images.append(example[0])
        labels.append(example[1])
    return np.stack(images), np.asarray(labels, np.int64)


def classic_copies(images: np.ndarray, labels: np.ndarray, wanted: Mapping[int, int], seed: int = 0):
    """`wanted[label]` classic-augmented copies per class (`augment.ClassicAugmenter`): as many rows
    as the GAN adds, cycling over the class's real images."""
    from covid_keras.augment import ClassicAugmenter

    augmenter = ClassicAugmenter(seed=seed)
    out_images, out_labels = [], []
    for label, count in sorted(wanted.items()):
        own = images[labels == label]
        if count <= 0 or not len(own):
            continue
        rounds = -(-count // len(own))
        out_images.append(augmenter.copies(own, rounds).reshape(-1, *own.shape[1:])[:count])
        out_labels.append(np.full(count, label, np.int64))
    return np.concatenate(out_images), np.concatenate(out_labels)


def run_small_cnn(config: ExperimentConfig, splits: ExperimentSplits, verbose: int = 1) -> dict:
    """The small CNN (`evaluation.judge`, the TRTR model's recipe) trained from scratch per seed on
    real train, + classic copies, + generated images (as many rows as the classic copies), at
    `config.image_size`; every setting early-stopped on the real validation split."""
    from covid_keras.evaluation.judge import ClassifierRecipe, judge_probabilities, train_small_cnn

    started = time.perf_counter()
    arrays = {name: grey_arrays(getattr(splits, name), config.image_size)
              for name in ("train", "validation", "test", "generated")}
    train_images, train_labels = arrays["train"]
    generated_images, generated_labels = arrays["generated"]
    wanted = {label: int((generated_labels == label).sum()) for label in range(len(BINARY_CLASSES))}
    classic = classic_copies(train_images, train_labels, wanted, seed=config.seeds[0])
    training_sets = {
        "baseline": arrays["train"],
        "classic": (np.concatenate([train_images, classic[0]]), np.concatenate([train_labels, classic[1]])),
        "augmented": (np.concatenate([train_images, generated_images]),
                      np.concatenate([train_labels, generated_labels])),
    }
    images_s = time.perf_counter() - started
    runs: dict[str, list[dict]] = {setting: [] for setting in SMALL_CNN_SETTINGS}
    progress = keras.utils.Progbar(len(config.seeds) * len(SMALL_CNN_SETTINGS), unit_name="classifier", verbose=verbose)
    recipe = ClassifierRecipe(image_size=config.image_size, epochs=config.small_cnn_epochs)
    for seed in config.seeds:
        for setting in SMALL_CNN_SETTINGS:
            model, fit = train_small_cnn(*training_sets[setting], *arrays["validation"], len(BINARY_CLASSES),
                                         dataclasses.replace(recipe, seed=seed))
            metrics, test_probabilities = {}, None
            for name, (images, labels) in (("train", training_sets[setting]), ("validation", arrays["validation"]),
                                           ("test", arrays["test"])):
                covid = judge_probabilities(model, images)[:, 1]
                metrics[name] = evaluation.classification_metrics(labels, covid)
                if name == "test":
                    test_probabilities = [round(float(p), 6) for p in covid]
            runs[setting].append({"seed": seed, "metrics": metrics, "history": fit,
                                  "test_probabilities": test_probabilities})
            del model
            keras.backend.clear_session()
            progress.add(1)
    return {
        "weights": {"name": "none", "trained_from_scratch": True},
        "model": "the small CNN of the GAN's judge and TRTR (evaluation.judge.build_small_cnn), from scratch",
        "learning_rate": recipe.learning_rate,
        "optimizer": "adam",
        "hyperparameters_source": "evaluation.judge.ClassifierRecipe",
        "recipe": dataclasses.asdict(recipe),
        "n_train": {setting: int(len(labels)) for setting, (_, labels) in training_sets.items()},
        "test_labels": arrays["test"][1].astype(int).tolist(),
        "runs": runs,
        "summary": {setting: summarize_runs(runs[setting]) for setting in SMALL_CNN_SETTINGS},
        "comparison": compare_settings(runs),
        "comparison_vs_classic": compare_settings(runs, reference="classic"),
        "timings_s": {"images": images_s, "classifiers": time.perf_counter() - started - images_s},
    }


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | os.PathLike,
    cache: FeatureCache | None = None,
    verbose: int = 1,
) -> dict:
    """Run every backbone, write results.json, results.md and the bar chart to out_dir; return the results.

    cache: defaults to OUT/feature_cache on disk, so a rerun after a crash skips the backbone passes.
    """
    started = time.perf_counter()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = cache if cache is not None else FeatureCache(out_dir / FEATURE_CACHE_DIR)
    splits = load_experiment_splits(config)
    generated_counts = splits.contents["generated"]["per_class"]
    short = {c: n for c, n in generated_counts.items() if config.per_class and n < config.per_class}
    if short:
        print(f"warning: fewer generated images than per_class={config.per_class} in {short} "
              "(the folder has fewer, or identical images were de-duplicated)")
    results = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "data": {**dataclasses.asdict(config.data), "balanced": config.balanced, "splits": splits.contents},
        "generated": {
            "dir": config.generated_dir,
            "per_class_requested": config.per_class,
            "per_class_used": generated_counts,
            "added_to": "train only; validation and test are real-only (checked on the file names)",
        },
        "backbones": {},
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }
    for backbone in config.backbones:
        if verbose:
            print(f"== {backbone}")
        results["backbones"][backbone] = (run_small_cnn(config, splits, verbose) if backbone == SMALL_CNN
                                          else run_backbone(backbone, config, splits, cache, verbose))
    results["timings_s"] = {"total": time.perf_counter() - started}
    write_results(results, out_dir)
    return results


# --- reports ---------------------------------------------------------------------------------


def write_results(results: dict, out_dir: str | os.PathLike) -> dict[str, str]:
    out_dir = pathlib.Path(out_dir)
    (out_dir / RESULTS_JSON).write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / RESULTS_MD).write_text(results_markdown(results))
    save_test_accuracy_chart(results, out_dir / BAR_CHART)
    save_test_roc_curves(results, out_dir / ROC_CHART)
    plots.save_confusion_matrices(confusion_matrices_on_test(results), out_dir / CONFUSION_CHART,
                                  class_names=BINARY_CLASSES, title="test split, summed over seeds")
    return {name: str(out_dir / name) for name in (RESULTS_JSON, RESULTS_MD, BAR_CHART, ROC_CHART, CONFUSION_CHART)}


def confusion_matrices_on_test(results: dict) -> dict[str, list[list[int]]]:
    """"backbone, setting" -> the test confusion matrix [[TN, FP], [FN, TP]] summed over seeds."""
    matrices = {}
    for backbone, result in results["backbones"].items():
        for setting in settings_of(result):
            runs = result["runs"][setting]
            matrices[f"{backbone}, {SETTING_LABELS[setting]}"] = np.sum(
                [run["metrics"]["test"]["confusion_matrix"] for run in runs], axis=0).astype(int).tolist()
    return matrices


def save_test_roc_curves(results: dict, path: str | os.PathLike) -> str:
    """Test ROC curves of the first seed's classifier, per backbone and setting."""
    predictions = {
        f"{backbone}, {SETTING_LABELS[setting]}": (np.asarray(result["test_labels"]),
                                                    np.asarray(result["runs"][setting][0]["test_probabilities"]))
        for backbone, result in results["backbones"].items() for setting in settings_of(result)
    }
    return classifier.save_roc_plot(predictions, path, title=f"test split, seed {results['config']['seeds'][0]}")


def format_mean_sd(stats: dict) -> str:
    if stats["mean"] is None:
        return "n/a"
    if stats["sd"] is None:
        return f"{stats['mean']:.4f}"
    return f"{stats['mean']:.4f} ± {stats['sd']:.4f}"


def settings_of(result: Mapping) -> list[str]:
    """The settings a backbone's result holds, in the report's order."""
    return [setting for setting in SMALL_CNN_SETTINGS if setting in result["runs"]]


def weights_description(weights: dict) -> str:
    if weights.get("trained_from_scratch"):
        return "trained from scratch (no pretrained weights needed)"
    if weights["name"] == "none":
        return "**RANDOM INIT (no pretrained weights)**"
    if weights["name"] == "file":
        return f"file `{weights['path']}` (sha256 {weights['sha256'][:12]}…)"
    return "ImageNet (Keras download)"


def comparison_sentence(backbone: str, comparison: dict, n_seeds: int, reference: str | None = None) -> str:
    gain, paired = comparison["test_accuracy_gain"], comparison["paired_interval"]
    against = f" against {reference}" if reference else ""
    text = f"{backbone}: the GAN images changed the mean test accuracy{against} by {gain:+.4f}"
    if paired is None:
        return text + f" over {n_seeds} seed: no paired interval (use at least 2 seeds)."
    verdict = {"better": "the GAN images helped", "worse": "the GAN images hurt",
               "no detectable difference": "not distinguishable from seed noise"}[paired["verdict"]]
    return (text + f"; paired over {n_seeds} seeds, 95 % interval [{paired['low']:+.4f}, {paired['high']:+.4f}]: "
            f"{verdict}.")


def _per_class_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def results_markdown(results: dict) -> str:
    config = results["config"]
    columns = [f"{split}_{metric}" for split, metric in REPORTED]
    lines = [
        "# Baseline vs GAN-augmented classifiers",
        "",
        f"Data `{config['data']['config']}`{' (' + config['data']['path'] + ')' if config['data']['path'] else ''}; "
        f"generated images from `{results['generated']['dir']}`, "
        f"{_per_class_text(results['generated']['per_class_used'])}, added to **train only**: validation and test "
        f"are real-only in both settings (the study mixed synthetic images into both).",
        f"Mean ± sd over seeds {config['seeds']}; {config['image_size']} px, {config['epochs']} epochs, "
        f"batch {config['batch_size']}. The backbone is frozen and its features are shared, so the sd "
        "measures the head's initialisation and shuffling only.",
        "",
        "| model | setting | " + " | ".join(COLUMN_TITLES[c] for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for backbone, result in results["backbones"].items():
        for setting in settings_of(result):
            cells = [format_mean_sd(result["summary"][setting][c]) for c in columns]
            lines.append(f"| {backbone} | {SETTING_LABELS[setting]} | " + " | ".join(cells) + " |")
    lines += ["", "Weights and head hyperparameters:", ""]
    for backbone, result in results["backbones"].items():
        lines.append(
            f"- {backbone}: {weights_description(result['weights'])}; {result['optimizer']} "
            f"lr {result['learning_rate']:g} ({result['hyperparameters_source']})"
        )
    lines += [""]
    for backbone, result in results["backbones"].items():
        lines.append(comparison_sentence(backbone, result["comparison"], len(config["seeds"])))
        if "comparison_vs_classic" in result:
            lines.append(comparison_sentence(backbone, result["comparison_vs_classic"], len(config["seeds"]),
                                             reference="classic augmentation"))
        lines.append("")
    return "\n".join(lines)


def save_test_accuracy_chart(results: dict, path: str | os.PathLike) -> str:
    """Test accuracy per backbone and setting (those every backbone has), with one-sd error bars."""
    backbones = list(results["backbones"])
    series = {}
    lowest = 1.0
    shared = [s for s in SMALL_CNN_SETTINGS if all(s in r["runs"] for r in results["backbones"].values())]
    for setting in shared:
        stats = [results["backbones"][b]["summary"][setting]["test_accuracy"] for b in backbones]
        means = [s["mean"] for s in stats]
        sds = [s["sd"] for s in stats]
        series[SETTING_LABELS[setting]] = (means, sds)
        lowest = min([lowest] + [m - (s or 0.0) for m, s in zip(means, sds)])
    bottom = max(0.0, math.floor((lowest - 0.05) * 20) / 20)  # zoom in on high accuracies
    return plots.save_grouped_bars(
        backbones, series, path, ylabel="test accuracy (real only)",
        title=f"mean ± sd over {len(results['config']['seeds'])} seed(s)", ylim=(bottom, 1.02),
    )

"""TSTR vs TRTR: the same small CNN recipe trained on synthetic images only and on real images, both tested on the real split; TSTR optionally over several classifiers, each on its own draw."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np

from covid_keras.evaluation.judge import (
    ClassifierRecipe,
    class_fidelity,
    judge_probabilities,
    one_vs_rest_auc,
    train_small_cnn,
)

# Seeds of TSTR classifier i > 0 (classifier 0 keeps the recipe's seed): far from the seeds
# that other evaluation seeds give classifier 0.
TSTR_SEED_STRIDE = 10_000


def tstr_classifier_seed(recipe_seed: int, index: int) -> int:
    return recipe_seed + TSTR_SEED_STRIDE * index


def tstr_trtr(
    synthetic_sets: Sequence[tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
    real_train: tuple[np.ndarray, np.ndarray],
    real_val: tuple[np.ndarray, np.ndarray],
    real_test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
    recipe: ClassifierRecipe = ClassifierRecipe(),
    trtr_model: keras.Model | None = None,
    verbose: int = 0,
) -> tuple[dict, keras.Model]:
    """Train on synthetic (early-stopped on held-out synthetic: no real image steers it) and on
    real; test both on the real test split. Each TSTR classifier is also scored on the real
    validation split, so that settings (a filter, a checkpoint, the recipe) can be chosen
    without looking at the test split.

    synthetic_sets: one ((train images, labels), (val images, labels)) per TSTR classifier;
        classifier i is seeded `tstr_classifier_seed(recipe.seed, i)`. TSTR figures are the
        mean over them, with their standard deviation (None for one) and each one's figures.
    trtr_model: an already trained real-data model of the same recipe (the judge) to reuse.
    -> (result dict, the TRTR model).
    """
    if not synthetic_sets:
        raise ValueError("tstr_trtr needs at least one synthetic (train, val) set")
    num_classes = len(class_names)
    tstr_runs = []
    for index, (synthetic_train, synthetic_val) in enumerate(synthetic_sets):
        seed = tstr_classifier_seed(recipe.seed, index)
        model, fit = train_small_cnn(*synthetic_train, *synthetic_val, num_classes,
                                      dataclasses.replace(recipe, seed=seed), verbose)
        recall = class_fidelity(model, *real_test, class_names)
        tstr_runs.append({
            "seed": seed,
            "n_synthetic_train": int(len(synthetic_train[1])),
            "accuracy": recall["overall"],
            # Threshold-free: a classifier fitted to well-separated synthetic classes may rank real
            # images right and still put its threshold in the wrong place.
            "auc": one_vs_rest_auc(real_test[1], judge_probabilities(model, real_test[0])),
            "recall_per_class": recall["per_class"],
            "real_validation": {
                "accuracy": class_fidelity(model, *real_val, class_names)["overall"],
                "auc": one_vs_rest_auc(real_val[1], judge_probabilities(model, real_val[0])),
            },
            "fit": fit,
        })
    trtr_fit = None
    if trtr_model is None:
        trtr_model, trtr_fit = train_small_cnn(*real_train, *real_val, num_classes, recipe, verbose)
    trtr = class_fidelity(trtr_model, *real_test, class_names)
    validation = [run["real_validation"] for run in tstr_runs]
    result = {
        "tstr_accuracy": _mean_of(tstr_runs, "accuracy"),
        "tstr_accuracy_sd": _sd_of(tstr_runs, "accuracy"),
        "trtr_accuracy": trtr["overall"],
        "tstr_auc": _mean_of(tstr_runs, "auc"),
        "tstr_auc_sd": _sd_of(tstr_runs, "auc"),
        "trtr_auc": one_vs_rest_auc(real_test[1], judge_probabilities(trtr_model, real_test[0])),
        "tstr_real_validation_accuracy": _mean_of(validation, "accuracy"),
        "tstr_real_validation_auc": _mean_of(validation, "auc"),
        "tstr_recall_per_class": {name: float(np.mean([run["recall_per_class"][name] for run in tstr_runs]))
                                  for name in tstr_runs[0]["recall_per_class"]},
        "trtr_recall_per_class": trtr["per_class"],
        "n_tstr_classifiers": len(tstr_runs),
        "recipe": dataclasses.asdict(recipe),
        "n_synthetic_train": tstr_runs[0]["n_synthetic_train"],
        "n_real_train": int(len(real_train[1])),
        "n_real_test": int(len(real_test[1])),
        "tstr_classifiers": tstr_runs,
        "trtr_fit": trtr_fit if trtr_fit is not None else "reused the judge (same recipe, real train)",
    }
    return result, trtr_model


def _mean_of(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in runs]
    return None if any(v is None for v in values) else float(np.mean(values))


def _sd_of(runs: list[dict], key: str) -> float | None:
    """Sample standard deviation over the runs; None for one run or a missing value."""
    values = [run[key] for run in runs]
    return None if len(values) < 2 or any(v is None for v in values) else float(np.std(values, ddof=1))

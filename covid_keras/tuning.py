"""KerasTuner search of the classifier head's learning rate and optimizer, on cached features.

The backbone is frozen, so every trial trains only the head on features computed once
(`classifier.FeatureExtractor.features`): a trial costs seconds, not a backbone pass per
epoch. Results go to OUT_DIR:

  best_hyperparameters.json   {"learning_rate", "optimizer", "objective", "score", ...}
  trials.json                 every trial: id, status, hyperparameters, score
  keras_tuner/                KerasTuner's own state
  tensorboard/                every trial's losses and hyperparameters, for TensorBoard's HParams view
                              (`tensorboard --logdir OUT_DIR/tensorboard`)

`load_best_hyperparameters(OUT_DIR)` and `apply_best_hyperparameters(config, best)` hand the
result to a classifier run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import pathlib
from typing import Mapping, Sequence

import keras
import keras_tuner
import tensorflow as tf

from covid_keras import classifier
from covid_keras.choices import CLASSIFIER_OPTIMIZERS, LEARNING_RATE_RANGE, OBJECTIVE_DIRECTIONS, TUNERS  # noqa: F401
from covid_keras.classifier import (
    ClassifierConfig,
    FeatureCache,
    FeatureExtractor,
    FeatureSet,
)

BEST_FILE = "best_hyperparameters.json"
TRIALS_FILE = "trials.json"
TUNER_DIR = "keras_tuner"
TENSORBOARD_DIR = "tensorboard"


class HeadHyperModel(keras_tuner.HyperModel):
    """The study's head with a log-scale learning rate and a choice of optimizer."""

    def __init__(
        self,
        feature_shape: Sequence[int],
        learning_rate_range: tuple[float, float] = LEARNING_RATE_RANGE,
        optimizers: Sequence[str] = CLASSIFIER_OPTIMIZERS,
        epochs: int = classifier.STUDY_EPOCHS,
        batch_size: int = classifier.STUDY_BATCH_SIZE,
        seed: int = 0,
    ):
        super().__init__(name="covid_head")
        low, high = learning_rate_range
        if not 0 < low < high:
            raise ValueError(f"learning_rate_range must be 0 < low < high, got {learning_rate_range}")
        for name in optimizers:
            classifier.make_optimizer(name, low)  # a clear error for an unknown name
        self.feature_shape = tuple(feature_shape)
        self.learning_rate_range = (float(low), float(high))
        self.optimizers = list(optimizers)
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        # Free the previous trial's model and graph (KerasTuner does so too; this does not
        # depend on it), then give every trial the same initial head weights.
        keras.backend.clear_session()
        keras.utils.set_random_seed(self.seed)
        low, high = self.learning_rate_range
        learning_rate = hp.Float("learning_rate", low, high, sampling="log")
        optimizer = hp.Choice("optimizer", self.optimizers)
        head = classifier.build_head(self.feature_shape)
        classifier.compile_for_training(head, optimizer, learning_rate)
        return head

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, epochs=self.epochs, batch_size=self.batch_size, shuffle=True, **kwargs)


def _check_tensorboard() -> None:
    # KerasTuner imports tensorboard in every trial on the TensorFlow backend and would
    # only mark each trial INVALID without it.
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError("KerasTuner needs the tensorboard package with TensorFlow: pip install tensorboard")


def make_tuner(
    kind: str,
    hypermodel: HeadHyperModel,
    objective: str,
    max_trials: int,
    directory: str | os.PathLike,
    seed: int = 0,
) -> keras_tuner.Tuner:
    _check_tensorboard()
    if objective not in OBJECTIVE_DIRECTIONS:
        raise ValueError(f"objective: unknown {objective!r}; choose one of {', '.join(OBJECTIVE_DIRECTIONS)}")
    if max_trials < 1:
        raise ValueError(f"the number of trials must be at least 1, got {max_trials}")
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(objective, direction=OBJECTIVE_DIRECTIONS[objective]),
        max_trials=max_trials,
        seed=seed,
        directory=str(directory),
        project_name=TUNER_DIR,
        overwrite=True,
    )
    if kind == "random":
        return keras_tuner.RandomSearch(**common)
    if kind == "bayesian":  # needs `pip install keras-tuner[bayesian]` (scikit-learn, scipy)
        return keras_tuner.BayesianOptimization(**common)
    raise ValueError(f"tuner: unknown {kind!r}; choose one of {', '.join(TUNERS)}")


def _json_number(value) -> float | None:
    """NaN or inf (a diverged trial) become None so the files stay valid JSON."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _trial_records(tuner: keras_tuner.Tuner) -> list[dict]:
    records = []
    # ids are "0", "1", ..., "10": order by length first so "10" follows "9"
    for trial_id, trial in sorted(tuner.oracle.trials.items(), key=lambda item: (len(item[0]), item[0])):
        records.append(
            {
                "trial_id": trial_id,
                "status": str(trial.status),
                "hyperparameters": dict(trial.hyperparameters.values),
                "score": _json_number(trial.score),
                "best_step": trial.best_step,
            }
        )
    return records


def tune_head(
    train: FeatureSet,
    validation: FeatureSet,
    out_dir: str | os.PathLike,
    trials: int = 10,
    tuner: str = "random",
    objective: str = "val_auc",
    epochs: int = classifier.STUDY_EPOCHS,
    batch_size: int = classifier.STUDY_BATCH_SIZE,
    learning_rate_range: tuple[float, float] = LEARNING_RATE_RANGE,
    optimizers: Sequence[str] = CLASSIFIER_OPTIMIZERS,
    seed: int = 0,
    extra_record: Mapping | None = None,
    verbose: int = 1,
) -> dict:
    """Search the head's hyperparameters on cached features; write and return the summary.

    extra_record (e.g. the backbone and its weights) is copied into both JSON files.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hypermodel = HeadHyperModel(train.features.shape[1:], learning_rate_range, optimizers, epochs, batch_size, seed)
    search = make_tuner(tuner, hypermodel, objective, trials, out_dir, seed)
    # Given a TensorBoard callback, KerasTuner gives each trial its own log folder with its hyperparameters.
    tensorboard = keras.callbacks.TensorBoard(str(out_dir / TENSORBOARD_DIR), write_graph=False)
    search.search(train.features, train.labels, validation_data=tuple(validation), verbose=verbose,
                  callbacks=[tensorboard])

    records = _trial_records(search)
    completed = [r for r in records if r["status"] == "COMPLETED" and r["score"] is not None]
    if not completed:
        raise RuntimeError(f"no tuning trial completed; see {out_dir / TUNER_DIR} (statuses: {[r['status'] for r in records]})")
    best_trial = search.oracle.get_best_trials(1)[0]
    search_space = {
        "learning_rate": {"min": hypermodel.learning_rate_range[0], "max": hypermodel.learning_rate_range[1], "sampling": "log"},
        "optimizer": hypermodel.optimizers,
    }
    common = {
        **dict(extra_record or {}),
        "objective": objective,
        "direction": OBJECTIVE_DIRECTIONS[objective],
        "tuner": tuner,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "search_space": search_space,
    }
    best = {
        **dict(best_trial.hyperparameters.values),
        "score": _json_number(best_trial.score),
        "trial_id": best_trial.trial_id,
        **common,
    }
    (out_dir / BEST_FILE).write_text(json.dumps(best, indent=2) + "\n")
    (out_dir / TRIALS_FILE).write_text(json.dumps({**common, "trials": records}, indent=2) + "\n")
    keras.backend.clear_session()
    return {"best": best, "trials": records}


def tune_classifier(
    config: ClassifierConfig,
    train_examples: tf.data.Dataset,
    validation_examples: tf.data.Dataset,
    out_dir: str | os.PathLike,
    trials: int = 10,
    tuner: str = "random",
    objective: str = "val_auc",
    cache: FeatureCache | None = None,
    verbose: int = 1,
    **search_options,
) -> dict:
    """Backbone features of both splits (once, through `cache`), then `tune_head` on them.

    The config gives the backbone, weights, image size, epochs, batch size and seed; its
    learning rate and optimizer are what is searched.
    """
    keras.utils.set_random_seed(config.seed)
    extractor = FeatureExtractor(config.backbone, config.image_size, config.weights,
                                 precision=config.feature_precision)
    train = extractor.features(train_examples, cache, verbose=verbose)
    validation = extractor.features(validation_examples, cache, verbose=verbose)
    record = {
        "backbone": config.backbone,
        "image_size": config.image_size,
        "weights": extractor.weights_info.to_dict(),
        "feature_precision": config.feature_precision,
        "n_train": int(train.labels.size),
        "n_validation": int(validation.labels.size),
    }
    return tune_head(
        train,
        validation,
        out_dir,
        trials=trials,
        tuner=tuner,
        objective=objective,
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        extra_record=record,
        verbose=verbose,
        **search_options,
    )


def load_best_hyperparameters(path: str | os.PathLike) -> dict:
    """The best values of a search: a `best_hyperparameters.json` file or the directory holding it."""
    path = pathlib.Path(path)
    if path.suffix != ".json":  # the search's output directory
        path = path / BEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run scripts/tune_classifier.py first")
    try:
        best = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    missing = [field for field in ("learning_rate", "optimizer") if field not in best]
    if missing:
        raise ValueError(f"{path} lacks the field(s) {', '.join(missing)}")
    return best


def apply_best_hyperparameters(config: ClassifierConfig, best: Mapping) -> ClassifierConfig:
    """A copy of `config` with the searched learning rate and optimizer."""
    return dataclasses.replace(config, learning_rate=float(best["learning_rate"]), optimizer=str(best["optimizer"]))

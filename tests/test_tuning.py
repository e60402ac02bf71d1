"""KerasTuner search of the head on cached features: a 2-trial run and its JSON files."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from covid_keras import tuning
from covid_keras.classifier import ClassifierConfig, FeatureSet


def separable_features(count: int, seed: int) -> FeatureSet:
    """Small backbone-like feature maps whose mean tells the class."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 2).astype(np.float32)
    features = rng.normal(0, 1, (count, 2, 2, 8)).astype(np.float32) + 2.0 * labels[:, None, None, None]
    return FeatureSet(features, labels)


def test_two_trial_search_writes_the_best_values(tmp_path, monkeypatch):
    clears = []
    original_clear = keras.backend.clear_session
    monkeypatch.setattr(keras.backend, "clear_session", lambda: (clears.append(1), original_clear())[1])

    result = tuning.tune_head(
        separable_features(32, 0),
        separable_features(16, 1),
        tmp_path,
        trials=2,
        tuner="random",  # "bayesian" needs keras-tuner[bayesian] (scikit-learn, scipy)
        epochs=1,
        batch_size=8,
        extra_record={"backbone": "synthetic"},
        verbose=0,
    )
    assert len(result["trials"]) == 2 and len(clears) >= 2  # memory cleared for every trial
    best = tuning.load_best_hyperparameters(tmp_path)
    assert best == result["best"]
    assert 1e-5 <= best["learning_rate"] <= 1e-2
    assert best["optimizer"] in ("adam", "sgd", "rmsprop")
    assert best["objective"] == "val_auc" and best["backbone"] == "synthetic"
    scores = [t["score"] for t in result["trials"] if t["score"] is not None]
    assert best["score"] == max(scores)

    trials = json.loads((tmp_path / tuning.TRIALS_FILE).read_text())
    assert [t["status"] for t in trials["trials"]] == ["COMPLETED", "COMPLETED"]
    assert {t["trial_id"] for t in trials["trials"]} >= {best["trial_id"]}

    config = tuning.apply_best_hyperparameters(ClassifierConfig("vgg16", weights=None), best)
    assert (config.head_learning_rate, config.optimizer) == (best["learning_rate"], best["optimizer"])

    # Every trial reaches TensorBoard's HParams view: its hyperparameters in an event file of its own.
    hparams_runs = set()
    for path in (tmp_path / tuning.TENSORBOARD_DIR).rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    hparams_runs.add(path.parent)
    assert len(hparams_runs) == 2


def test_bad_search_settings_are_rejected(tmp_path):
    train, validation = separable_features(8, 0), separable_features(8, 1)
    with pytest.raises(ValueError, match="objective"):
        tuning.tune_head(train, validation, tmp_path, trials=1, objective="auc")
    with pytest.raises(ValueError, match="tuner"):
        tuning.tune_head(train, validation, tmp_path, trials=1, tuner="grid")
    with pytest.raises(ValueError, match="optimizer"):
        tuning.tune_head(train, validation, tmp_path, trials=1, optimizers=("adam", "lbfgs"))
    with pytest.raises(FileNotFoundError, match="best_hyperparameters.json"):
        tuning.load_best_hyperparameters(tmp_path / "absent")

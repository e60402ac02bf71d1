"""A trained classifier on disk: model.keras, classifier.json and roc.png; loading and scoring it."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Iterable, Mapping

import keras
import numpy as np
import tensorflow as tf

from covid_keras import evaluation, plots
from covid_keras.backbones import get_backbone_spec

# The study's training presets (reference-facts.md, "Classifiers").
from covid_keras.classifier.config import METADATA_FILE, MODEL_FILE, ROC_FILE, SPLITS
from covid_keras.classifier.training import TrainedClassifier, predict_probabilities


def _ordered_splits(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda name: (SPLITS.index(name) if name in SPLITS else len(SPLITS), name))


def save_roc_plot(predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], path, title: str | None = None) -> str:
    """One ROC curve per split that has both classes."""
    curves = {}
    for name in _ordered_splits(predictions):
        labels, probabilities = predictions[name]
        auc = evaluation.roc_auc(labels, probabilities)
        if auc is None:
            continue  # one class only: no curve
        curve = evaluation.roc_curve(labels, probabilities)
        curves[name] = (curve["fpr"], curve["tpr"], auc)
    return plots.save_roc_curves(curves, path, title=title)


def save_classifier(
    trained: TrainedClassifier, out_dir: str | os.PathLike, data_description: Mapping | None = None
) -> pathlib.Path:
    """Write DIR/model.keras, DIR/classifier.json and DIR/roc.png; returns DIR."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trained.model.save(out_dir / MODEL_FILE)
    metadata = trained.metadata(data_description)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    save_roc_plot(trained.predictions, out_dir / ROC_FILE, title=f"{trained.config.backbone} COVID vs Normal")
    return out_dir


REQUIRED_METADATA = ("backbone", "image_size", "class_names", "weights")


def load_classifier_metadata(model_dir: str | os.PathLike) -> dict:
    if not pathlib.Path(model_dir).is_dir():
        raise FileNotFoundError(f"classifier directory {model_dir} does not exist")
    path = pathlib.Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a classifier directory written by save_classifier")
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} must hold a JSON object")
    missing = [field for field in REQUIRED_METADATA if field not in metadata]
    if missing:
        raise ValueError(f"{path} lacks the field(s) {', '.join(missing)}")
    get_backbone_spec(metadata["backbone"])  # a clear error for an unknown backbone
    return metadata


def load_classifier(model_dir: str | os.PathLike) -> tuple[keras.Model, dict]:
    """(model, metadata) of a directory written by `save_classifier`."""
    model_dir = pathlib.Path(model_dir)
    metadata = load_classifier_metadata(model_dir)
    model_path = model_dir / MODEL_FILE
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} is missing: not a classifier directory written by save_classifier")
    if model_path.stat().st_size == 0:  # Keras would call it "File not found"
        raise ValueError(f"{model_path} is empty (0 bytes): not a saved Keras model")
    try:
        model = keras.models.load_model(model_path)
    except Exception as error:
        raise ValueError(f"could not load the model {model_path}: {error}") from error
    return model, metadata


def evaluate_saved_classifier(
    model_dir: str | os.PathLike, examples: tf.data.Dataset, verbose: int = 1
) -> dict:
    """Metrics of a saved classifier on TFDS-style examples."""
    model, metadata = load_classifier(model_dir)
    labels, probabilities = predict_probabilities(
        model, examples, metadata["backbone"], int(metadata["image_size"]), verbose=verbose
    )
    return evaluation.classification_metrics(labels, probabilities)

"""Training a classifier: the head on cached features, `best_validation` epoch keeping, fine-tuning, predictions and metrics per split."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

from covid_keras import data, distribute, evaluation, film

# The study's training presets (reference-facts.md, "Classifiers").
from covid_keras.classifier.config import (
    FEATURE_BATCH_SIZE,
    METADATA_FORMAT_VERSION,
    PREDICT_BATCH_SIZE,
    ClassifierConfig,
)
from covid_keras.classifier.features import FeatureCache, FeatureExtractor, FeatureSet
from covid_keras.classifier.model import (
    assemble_classifier,
    build_head,
    compile_for_training,
    unfreeze_top_layers,
)
from covid_keras.classifier.operating_rule import METADATA_KEY as OPERATING_RULE_KEY
from covid_keras.classifier.operating_rule import OperatingRule
from covid_keras.files import atomic_save_weights, atomic_write_text
from covid_keras.labels import BINARY_CLASSES, POSITIVE_CLASS


@dataclasses.dataclass
class TrainedClassifier:
    """A trained classifier, its run record and its predictions on every split it was given."""

    config: ClassifierConfig
    extractor: FeatureExtractor
    head: keras.Model
    model: keras.Model
    history: dict[str, list[float]]
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (labels, P(COVID))
    metrics: dict[str, dict]
    unfrozen_layers: list[str] = dataclasses.field(default_factory=list)
    fine_tuned_on: str | None = None  # "images" or "cached <layer> features"
    # Temperature and threshold fitted on validation; the identity rule when there was none.
    operating_rule: OperatingRule = dataclasses.field(default_factory=OperatingRule)
    precision_reason: str | None = None  # why config.feature_precision (runtime.choose_precision)

    def metadata(self, data_description: Mapping | None = None) -> dict:
        """The JSON record saved next to the model (`classifier.json`)."""
        return {
            "format_version": METADATA_FORMAT_VERSION,
            "backbone": self.config.backbone,
            "cut_layer": self.extractor.spec.cut_layer,
            "image_size": self.config.image_size,
            "input": f"RGB image, {self.config.image_size}x{self.config.image_size}, after the backbone's preprocess_input"
                     + (f"; brought down to {self.config.degrade_to} px and back inside the model"
                        if self.config.degrade_to is not None else "")
                     + (f"; the film {self.config.film} inside the model (covid_keras.film)"
                        if self.config.film != "raw" else ""),
            **({"film_definition": film.definition()} if self.config.film != "raw" else {}),
            "output": f"P({POSITIVE_CLASS})",
            "class_names": list(BINARY_CLASSES),
            "weights": self.extractor.weights_info.to_dict(),
            "training": {
                **self.config.to_dict(),
                "fine_tuned_layers": self.unfrozen_layers,
                "fine_tuned_on": self.fine_tuned_on,
                "history": self.history,
            },
            "data": dict(data_description or {}),
            # The head trained on features of this precision; model.keras computes in float32 throughout.
            "precision": {"features": self.config.feature_precision, "head": "float32", "saved_model": "float32",
                          "reason": self.precision_reason or "ClassifierConfig.feature_precision"},
            "metrics": self.metrics,
            OPERATING_RULE_KEY: self.operating_rule.to_dict(),
            "metrics_with_operating_rule": {
                name: self.operating_rule.report(*prediction) for name, prediction in self.predictions.items()
            },
            "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
        }


def _history_dict(history: keras.callbacks.History, prefix: str = "") -> dict[str, list[float]]:
    return {f"{prefix}{name}": [float(v) for v in values] for name, values in history.history.items()}


def check_both_classes(labels: np.ndarray, split: str) -> None:
    """A binary classifier learns nothing from one class (and its test accuracy would mean nothing)."""
    present = {int(round(float(v))) for v in np.unique(labels)}
    missing = [BINARY_CLASSES[i] for i in (0, 1) if i not in present]
    if missing:
        raise ValueError(f"the {split} split has no {' and no '.join(missing)} images: a COVID-vs-Normal "
                         "classifier needs both classes in train and validation")


BACKUP_STATE = "state.json"


def _feature_batches(features: FeatureSet, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Batches of (features, labels), shuffled each epoch from `shuffle_seed` when given. The same
    order in every process; `batch_size` is the global batch, split by data across workers."""
    ds = tf.data.Dataset.from_tensor_slices(tuple(features))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(features.labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.shard_by_data(ds.batch(batch_size))


class EpochBackup(keras.callbacks.Callback):
    """The model's weights and optimizer after every epoch, written atomically into `directory`
    (weights first, then the state file that names them), so that a killed fit can resume."""

    def __init__(self, directory: str | os.PathLike):
        super().__init__()
        self.directory = pathlib.Path(directory)

    def on_epoch_end(self, epoch, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = f"head-epoch{epoch + 1:05d}.weights.h5"
        atomic_save_weights(self.model, self.directory / weights)
        atomic_write_text(self.directory / BACKUP_STATE, json.dumps({"epoch": epoch + 1, "weights": weights}) + "\n")
        for old in self.directory.glob("head-epoch*.weights.h5"):
            if old.name != weights:
                old.unlink()


def restore_backup(model: keras.Model, directory: str | os.PathLike | None) -> int:
    """Load `directory`'s last backup into `model` (compiled); -> the epochs it had completed (0: none)."""
    if directory is None or not (pathlib.Path(directory) / BACKUP_STATE).exists():
        return 0
    directory = pathlib.Path(directory)
    state = json.loads((directory / BACKUP_STATE).read_text())
    model.optimizer.build(model.trainable_variables)  # its slots must exist to be loaded
    model.load_weights(directory / state["weights"])
    return int(state["epoch"])


def train_head(
    head: keras.Model,
    config: ClassifierConfig,
    train: FeatureSet,
    validation: FeatureSet | None = None,
    verbose="auto",
    strategy: tf.distribute.Strategy | None = None,
    backup_dir: str | os.PathLike | None = None,
) -> dict[str, list[float]]:
    """Fit the head on cached features with the config's optimizer, rate, epochs and batch.

    With `config.keep_epoch` "best_validation" the head ends with the weights of its epoch of
    lowest validation loss (and `validation` is required). `strategy`: the one the head was built
    under (default: the current one); `config.batch_size` is the global batch. `backup_dir`: the
    head is backed up there every epoch and a rerun resumes from it (removed once the fit ends);
    under several workers only the chief writes it and all resume from it, so it must be on a file
    system they share. A resumed `best_validation` fit chooses among the epochs since the resume.
    """
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():  # the optimizer's variables too belong to the strategy
        compile_for_training(head, config.optimizer, config.head_learning_rate)
        initial_epoch = restore_backup(head, backup_dir)
    distribute.fit_ready(head, strategy)
    callbacks = _keep_epoch_callbacks(config, validation is not None)
    with contextlib.ExitStack() as stack:
        if backup_dir is not None:
            callbacks.append(EpochBackup(stack.enter_context(distribute.worker_scratch_dir(backup_dir, strategy))))
        history = head.fit(
            _feature_batches(train, config.batch_size, shuffle_seed=config.seed),
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            validation_data=_feature_batches(validation, config.batch_size) if validation is not None else None,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the batches come from their own seeded shuffle; Keras cannot reshuffle a dataset
        )
    if backup_dir is not None and distribute.is_chief(strategy):
        shutil.rmtree(backup_dir, ignore_errors=True)  # every worker has finished the epochs it was for
    # The updates over the whole fit, resumed or not: what a resumed run must share with an uninterrupted one.
    return {**_fit_record(history, callbacks), "optimizer_steps": int(head.optimizer.iterations.numpy())}


class KeepBestValidation(keras.callbacks.Callback):
    """At the end of a fit, restore the weights of the epoch with the lowest validation loss.

    `start_loss`, the validation loss of the weights the fit starts from, makes those weights a
    candidate too: a fine-tuning that only overfits then leaves the model as it was.
    """

    def __init__(self, start_loss: float = float("inf")):
        super().__init__()
        self.start_loss = start_loss
        self.best_loss = start_loss
        self.best_epoch = 0  # 0: the starting weights; n: after epoch n
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.best_loss = self.start_loss
        self.best_epoch = 0
        self.best_weights = self.model.get_weights() if np.isfinite(self.start_loss) else None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if loss is None:
            raise ValueError("keep_epoch 'best_validation' needs a validation split")
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.best_weights = float(loss), epoch + 1, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def _keep_epoch_callbacks(
    config: ClassifierConfig, has_validation: bool, start_loss: float = float("inf")
) -> list[keras.callbacks.Callback]:
    """What `config.keep_epoch` asks of a fit."""
    if config.keep_epoch != "best_validation":
        return []
    if not has_validation:
        raise ValueError("keep_epoch 'best_validation' needs a validation split")
    return [KeepBestValidation(start_loss)]


def _fit_record(
    history: keras.callbacks.History, callbacks: list[keras.callbacks.Callback], prefix: str = ""
) -> dict[str, list]:
    """A fit's history, plus the epoch `KeepBestValidation` kept (0: the starting weights) when it ran."""
    record = _history_dict(history, prefix)
    kept = [c.best_epoch for c in callbacks if isinstance(c, KeepBestValidation)]
    if kept:
        record[f"{prefix}kept_epoch"] = kept
    return record


def predict_probabilities(
    model: keras.Model,
    examples: tf.data.Dataset,
    backbone: str,
    image_size: int,
    batch_size: int = FEATURE_BATCH_SIZE,
    verbose: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(COVID)) of a full classifier on TFDS-style examples."""
    batches = data.classifier_dataset(examples, backbone, image_size, batch_size, shuffle=False)
    progress = keras.utils.Progbar(None, unit_name="batch", verbose=verbose)
    labels, probabilities = [], []
    for images, batch_labels in batches:
        probabilities.append(np.asarray(model.predict_on_batch(images)).reshape(-1))
        labels.append(np.asarray(batch_labels).reshape(-1))
        progress.add(1)
    if not labels:
        raise ValueError("the dataset is empty: nothing to evaluate")
    return np.concatenate(labels).astype(np.int64), np.concatenate(probabilities)


def split_above(backbone: keras.Model, count: int) -> tuple[str, keras.Model] | None:
    """(name of the layer below the top `count` layers, those layers as a model fed by its output),
    or None when no single tensor feeds them (a cut inside a residual block, or the whole backbone)."""
    if count >= len(backbone.layers) - 1:
        return None
    boundary = backbone.layers[len(backbone.layers) - count - 1]
    try:
        return boundary.name, keras.Model(boundary.output, backbone.output, name=f"{backbone.name}_top")
    except ValueError:  # Keras: the top layers also read a tensor from below the boundary
        return None


def _predictions_from_features(
    model: keras.Model, feature_sets: Mapping[str, FeatureSet], mirrored: Mapping[str, FeatureSet] | None = None
) -> dict:
    """split -> (labels, P(COVID)); with `mirrored` (features of the mirror images) the mean over both."""

    def predict(features: np.ndarray) -> np.ndarray:
        # Called directly, not through `predict`: the same in every process, with no strategy to distribute it.
        return np.concatenate([np.asarray(model(features[i : i + PREDICT_BATCH_SIZE], training=False)).reshape(-1)
                               for i in range(0, len(features), PREDICT_BATCH_SIZE)])

    predictions = {}
    for name, feature_set in feature_sets.items():
        probabilities = predict(feature_set.features)
        if mirrored is not None:
            probabilities = (probabilities + predict(mirrored[name].features)) / 2.0
        predictions[name] = (feature_set.labels.astype(np.int64), probabilities)
    return predictions


def _fine_tune(
    head: keras.Model,
    extractor: FeatureExtractor,
    config: ClassifierConfig,
    splits: Mapping[str, tf.data.Dataset],
    below: tuple[str, keras.Model, dict[str, FeatureSet]] | None,
    verbose,
) -> tuple[list[str], dict[str, list], dict | None, str]:
    """Train the top `config.fine_tune_layers` backbone layers together with the head.

    below: (boundary layer, the top as a model from its output, features at the boundary per
    split) when a single tensor feeds the top (VGG16's block5, a whole ResNet50 stage): each
    epoch then runs only the top. None: every epoch runs the whole backbone on images.
    -> (unfrozen layer names, history, predictions per split or None when they must come from
    images, what the top was trained on).
    """
    unfrozen = unfreeze_top_layers(extractor.model, config.fine_tune_layers)
    if below is None:
        model = assemble_classifier(extractor, head)

        def batches(name: str, shuffle: bool):
            return data.classifier_dataset(
                splits[name], config.backbone, config.image_size, config.batch_size, shuffle=shuffle, seed=config.seed
            )

        train, validation = batches("train", shuffle=True), None
        if "validation" in splits:
            validation = batches("validation", shuffle=False)
        trained_on = "images"
    else:
        boundary, top, features = below
        model = keras.Model(top.input, head(top.output), name="top_and_head")
        train = tf.data.Dataset.from_tensor_slices(tuple(features["train"])).shuffle(
            len(features["train"].labels), seed=config.seed).batch(config.batch_size)
        validation = tuple(features["validation"]) if "validation" in features else None
        trained_on = f"cached {boundary} features"

    compile_for_training(model, config.optimizer, config.fine_tune_rate)
    start_loss = float("inf")
    if config.keep_epoch == "best_validation" and validation is not None:
        # The model before fine-tuning competes too: fine-tuning that only overfits changes nothing.
        start_loss = _validation_loss(model, validation, config.batch_size)
    callbacks = _keep_epoch_callbacks(config, validation is not None, start_loss)
    history = model.fit(
        train,
        validation_data=validation,
        epochs=config.fine_tune_epochs or config.epochs,
        shuffle=False,  # both inputs are shuffled datasets already
        callbacks=callbacks,
        verbose=verbose,
    )
    predictions = _predictions_from_features(model, below[2]) if below is not None else None
    return unfrozen, _fit_record(history, callbacks, prefix="fine_tune_"), predictions, trained_on


def _validation_loss(model: keras.Model, validation, batch_size: int) -> float:
    if isinstance(validation, tuple):
        return float(model.evaluate(*validation, batch_size=batch_size, verbose=0, return_dict=True)["loss"])
    return float(model.evaluate(validation, verbose=0, return_dict=True)["loss"])


def train_classifier(
    config: ClassifierConfig,
    splits: Mapping[str, tf.data.Dataset],
    cache: FeatureCache | None = None,
    verbose="auto",
    precision_reason: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
    backup_dir: str | os.PathLike | None = None,
) -> TrainedClassifier:
    """Train a classifier on splits["train"] and evaluate it on every split given.

    splits: name -> TFDS-style examples (`data.load_split`); "train" is required,
    "validation" (if present) is reported every epoch. The head is trained on backbone
    features computed once per split (through `cache` when given); with
    `config.fine_tune_layers` the top of the backbone is then trained with the head
    (on cached features of the layer below it where the backbone allows, see `_fine_tune`).
    `precision_reason`: why `config.feature_precision` was chosen, for the record.
    `strategy`, `backup_dir`: how the head trains (see `train_head`); every worker computes the
    features itself (through `cache`, which they may share).
    """
    if "train" not in splits:
        raise ValueError(f"splits needs a 'train' entry, got {sorted(splits)}")
    strategy = strategy or tf.distribute.get_strategy()
    if config.fine_tune_layers and distribute.worker_count(strategy) > 1:
        raise ValueError("fine_tune_layers needs one worker: only the head on cached features trains on several")
    keras.utils.set_random_seed(config.seed)
    extractor = FeatureExtractor(config.backbone, config.image_size, config.weights, config.degrade_to,
                                 precision=config.feature_precision, film=config.film)
    progress_verbose = 0 if verbose == 0 else 1
    split = split_above(extractor.model, config.fine_tune_layers) if config.fine_tune_layers else None
    below = None
    if split is not None:
        # The backbone runs once per split, to the boundary; the (still frozen) top gives the head's features.
        boundary, top = split
        below_features = {name: extractor.features(examples, cache, verbose=progress_verbose, layer=boundary)
                          for name, examples in splits.items()}
        below = (boundary, top, below_features)
        features = {
            name: FeatureSet(top.predict(below_features[name].features, batch_size=PREDICT_BATCH_SIZE, verbose=0),
                             below_features[name].labels)
            for name in ("train", "validation") if name in below_features
        }
    else:
        # Fine-tuning on images predicts from images, so it needs the cut features only to train the head.
        feature_splits = [name for name in splits if not config.fine_tune_layers or name in ("train", "validation")]
        features = {name: extractor.features(splits[name], cache, verbose=progress_verbose) for name in feature_splits}
    for name in ("train", "validation"):
        if name in features:
            check_both_classes(features[name].labels, name)
    mirrored, train = None, features["train"]
    if config.mirror:
        mirrored = {name: extractor.features(data.mirrored(examples), cache, verbose=progress_verbose)
                    for name, examples in splits.items()}
        train = train.concatenate(mirrored["train"])

    with strategy.scope():
        head = build_head(extractor.feature_shape)
    history = train_head(head, config, train, features.get("validation"), verbose=verbose, strategy=strategy,
                         backup_dir=backup_dir)

    unfrozen, fine_tuned_on = [], None
    if config.fine_tune_layers:
        unfrozen, fine_tune_history, predictions, fine_tuned_on = _fine_tune(
            head, extractor, config, splits, below, verbose
        )
        history.update(fine_tune_history)
    else:
        predictions = _predictions_from_features(head, features, mirrored)
    model = assemble_classifier(extractor.in_float32(), head, mirror=config.mirror)
    if predictions is None:
        predictions = {
            name: predict_probabilities(model, examples, config.backbone, config.image_size, verbose=progress_verbose)
            for name, examples in splits.items()
        }
    metrics = {name: evaluation.classification_metrics(*prediction) for name, prediction in predictions.items()}
    rule = OperatingRule()
    if "validation" in predictions:
        rule = OperatingRule.fit(*predictions["validation"], target_sensitivity=config.target_sensitivity)
    return TrainedClassifier(config, extractor, head, model, history, predictions, metrics, unfrozen, fine_tuned_on,
                             operating_rule=rule, precision_reason=precision_reason)

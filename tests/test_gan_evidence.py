"""The evidence protocol: intervals against hand-computed cases, the memorisation flag, and that no
test-split image reaches a training or selection step."""

import dataclasses
import hashlib
import json
import math

import keras
import numpy as np
import pytest

from covid_keras.evaluation import evidence
from covid_keras.evaluation import embeddings as eval_embeddings
from covid_keras.evaluation import images as eval_images
from covid_keras.evaluation import intervals, memorisation
from covid_keras.evaluation import judge as eval_judge
from covid_keras.evaluation.imagenet_judge import ImagenetJudge
from tests.tiny import SIZE, TINY_RECIPE, blob_dataset, template_generator

CLASSES = ("left", "right")


# --- intervals -----------------------------------------------------------------------------------

def test_paired_difference_is_a_t_interval_over_seeds():
    result = intervals.paired_difference([0.8, 0.7, 0.9], [0.7, 0.7, 0.8])
    # d = (0.1, 0, 0.1): mean 1/15, sd 0.05774, se 0.03333, t(2) = 4.303
    assert result["mean"] == pytest.approx(1 / 15)
    assert result["sd"] == pytest.approx(0.057735, abs=1e-6)
    assert result["low"] == pytest.approx(1 / 15 - 4.303 * 0.057735 / math.sqrt(3), abs=1e-5)
    assert result["verdict"] == "no detectable difference"
    assert intervals.paired_difference([0.9, 0.91, 0.92], [0.8, 0.8, 0.81])["verdict"] == "better"
    assert intervals.paired_difference([0.7, 0.71, 0.72], [0.8, 0.8, 0.81])["verdict"] == "worse"
    with pytest.raises(ValueError, match="same seeds"):
        intervals.paired_difference([0.8, 0.7], [0.8])


def test_mean_interval_adds_the_seed_variance_to_the_image_variance():
    # Constant items within each seed: no image variance; seed means 0.6 and 0.8 -> se = 0.1.
    result = intervals.mean_interval([[0.6] * 10, [0.8] * 10], shared_items=True)
    assert result["se_items"] == pytest.approx(0.0, abs=1e-12)
    assert result["se_seeds"] == pytest.approx(0.1)
    assert (result["low"], result["high"]) == pytest.approx((0.7 - 1.96 * 0.1, 0.7 + 1.96 * 0.1), abs=1e-3)


def test_mean_interval_of_one_seed_is_the_binomial_standard_error():
    correct = [1] * 75 + [0] * 25  # p = 0.75, n = 100: se = sqrt(p (1 - p) / n) = 0.0433
    result = intervals.mean_interval([correct], shared_items=False, num_resamples=4000)
    assert result["se_items"] == pytest.approx(0.0433, rel=0.08)
    assert result["se_seeds"] is None and "one seed" in result["method"]
    assert result["low"] < 0.75 < result["high"]


# --- memorisation --------------------------------------------------------------------------------

def test_memorisation_flags_a_generator_that_returns_its_training_images():
    train, held_out = blob_dataset(40, seed=0), blob_dataset(60, seed=50)
    copies = memorisation.memorisation_check(train.images[:30], train.images, held_out.images)
    assert copies["flagged"] and copies["ratio"] == pytest.approx(0.0, abs=1e-6) and copies["near_copy_share"] == 1.0
    fresh = memorisation.memorisation_check(blob_dataset(30, seed=99).images, train.images, held_out.images)
    assert not fresh["flagged"] and 0.7 < fresh["ratio"] < 1.4
    nearest, index = memorisation.nearest_distances(train.images[[3, 7]], train.images)
    assert index.tolist() == [3, 7] and np.allclose(nearest, 0.0, atol=1e-6)


# --- the protocol --------------------------------------------------------------------------------

def _digests(images) -> set[bytes]:
    return {hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest() for image in eval_images.to_uint8_images(images)}


@pytest.fixture(scope="module")
def blobs():
    return {"train": blob_dataset(40, 0), "validation": blob_dataset(16, 10), "test": blob_dataset(20, 20)}


@pytest.fixture(scope="module")
def templates(blobs):
    train = blobs["train"]
    return np.stack([train.images[train.labels == k].mean(axis=0) for k in (0, 1)]).astype(np.uint8)


def _settings(split):
    return evidence.EvidenceSettings(split=split, per_class=16, classifiers=2, kid_subsets=5,
                                         min_guide_confidence=0.5, recipe=dataclasses.replace(TINY_RECIPE, epochs=2))


def side_guide():
    """A stand-in class guide (images in [-1, 1] -> logits): brighter left half -> left, right half -> right."""
    side = np.zeros((SIZE, SIZE, 2), np.float32)
    side[:, : SIZE // 2, 0] = side[:, SIZE // 2 :, 1] = 40.0 / (SIZE * SIZE)
    image = keras.Input((SIZE, SIZE, 1))
    logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant(side.reshape(-1, 2)))(
        keras.layers.Flatten()(image))
    return keras.Model(image, logits)


def _judge():
    return ImagenetJudge(eval_embeddings.build_extractor("random_conv", random_input_size=SIZE), num_classes=2,
                         max_epochs=40, patience=5)


@pytest.fixture(scope="module")
def fitted_judge(blobs):
    judge = _judge()
    train, validation = blobs["train"], blobs["validation"]
    judge.fit(train.images, train.labels, validation.images, validation.labels)
    return judge


def _recording(function, seen: set):
    """`function`, which first adds the digests of every image array it is given to `seen`."""
    def spy(*args, **kwargs):
        for value in (*args, *kwargs.values()):
            if isinstance(value, np.ndarray) and value.ndim == 4:
                seen.update(_digests(value))
        return function(*args, **kwargs)
    return spy


def test_no_test_image_reaches_a_training_step(blobs, templates, monkeypatch):
    """Everything that trains or stops early (judges, TRTR, TSTR) is spied on; test images may only be
    scored. (Scored on validation, they are not even looked at: see the next test.)"""
    split = "test"
    seen_in_training, seen_anywhere = set(), set()
    judge = _judge()
    monkeypatch.setattr(evidence, "train_small_cnn", _recording(evidence.train_small_cnn, seen_in_training))
    monkeypatch.setattr(judge, "fit", _recording(judge.fit, seen_in_training))
    monkeypatch.setattr(judge.extractor, "features", _recording(judge.extractor.features, seen_anywhere))
    guide = side_guide()
    report = evidence.evaluate_evidence(template_generator(templates), blobs, CLASSES, _settings(split),
                                            guide=guide, judge=judge, extractor=judge.extractor, log=lambda *a: None)

    test = _digests(blobs["test"].images)
    assert not seen_in_training & test
    assert seen_in_training & _digests(blobs["train"].images)
    assert seen_anywhere & test  # scored
    assert report["splits_scored"] == [split]
    assert set(report["fidelity"]["independent"]) == {"unfiltered", "filtered"}
    assert report["samples"]["filtered"]["acceptance_per_class"].keys() == set(CLASSES)


def test_label_faithful_and_swapped_generators_are_told_apart(blobs, templates, fitted_judge, tmp_path, monkeypatch):
    settings = _settings("validation")
    # Scored on validation, no step trains on or even looks at a test image.
    seen = set()
    monkeypatch.setattr(evidence, "train_small_cnn", _recording(evidence.train_small_cnn, seen))
    monkeypatch.setattr(fitted_judge.extractor, "features", _recording(fitted_judge.extractor.features, seen))
    faithful, swapped = (
        evidence.evaluate_evidence(template_generator(t), blobs, CLASSES, settings, judge=fitted_judge,
                                       extractor=fitted_judge.extractor, log=lambda *a: None)
        for t in (templates, templates[::-1])
    )
    assert faithful["judges"]["independent"]["validation_accuracy"]["mean"] > 0.8
    assert faithful["fidelity"]["independent"]["unfiltered"]["mean"] > 0.8
    assert swapped["fidelity"]["independent"]["unfiltered"]["mean"] < 0.2
    assert faithful["label_separation"]["independent"]["unfiltered"]["auc"] > 0.8
    assert swapped["label_separation"]["independent"]["unfiltered"]["auc"] < 0.2
    assert seen & _digests(blobs["train"].images) and not seen & _digests(blobs["test"].images)
    assert faithful["guide_agreement_with_independent_judge"] is None  # unguided
    assert set(faithful["tstr"]) >= {"trtr", "unfiltered", "unfiltered_minus_trtr"}
    # Per classifier seed and scored image, for pooling over training seeds (evidence_pooling).
    tstr_items = faithful["items"]["tstr_unfiltered_validation"]
    assert len(tstr_items) == settings.classifiers and len(tstr_items[0]) == len(blobs["validation"].labels)
    assert not faithful["memorisation"]["unfiltered"]["flagged"] or faithful["memorisation"]["unfiltered"]["ratio"] > 0

    out = evidence.write_evidence(faithful, blobs, tmp_path)
    saved = json.loads((out / "evidence.json").read_text())
    assert saved["fidelity"] == json.loads(json.dumps(faithful["fidelity"]))
    assert "| independent |" in (out / "evidence.md").read_text() and "Label separation" in (out / "evidence.md").read_text()
    assert (out / "grid_left_unfiltered.png").stat().st_size > 0 and (out / "closest_train_unfiltered.png").is_file()

    # Side by side: a row per report and sample kind; reports of different splits are refused.
    table = evidence.comparison_markdown({"faithful": evidence.read_evidence(out), "swapped": swapped})
    rows = [line for line in table.splitlines() if line.startswith("| faithful |") or line.startswith("| swapped |")]
    assert len(rows) == 4 and "| swapped | unfiltered |" in table
    on_test = {**swapped, "splits_scored": ["test"]}
    with pytest.raises(ValueError, match="different splits"):
        evidence.comparison_markdown({"a": saved, "b": on_test})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "evidence.json").write_text('{"fidelity": {}}')
    with pytest.raises(ValueError, match="not a gan_evidence report"):
        evidence.read_evidence(tmp_path / "other")


def test_label_separation_sees_the_label_where_accuracy_is_at_chance():
    """A judge that calls every sample class 1 scores 0.5 accuracy, yet ranks the class-1 samples higher."""
    labels = np.repeat([0, 1], 50)
    p_second = np.where(labels == 1, 0.9, 0.7) + np.random.default_rng(0).uniform(-0.05, 0.05, 100)
    probabilities = np.stack([1 - p_second, p_second], axis=1)
    assert np.mean(np.argmax(probabilities, axis=1) == labels) == 0.5
    separation = evidence.label_separation(labels, probabilities)
    assert separation["auc"] == 1.0 and separation["low"] == 1.0
    assert separation["mean_probability_per_label"] == pytest.approx([0.7, 0.9], abs=0.01)
    flat = evidence.label_separation(labels, np.full((100, 2), 0.5))
    assert flat["auc"] == 0.5
    assert evidence.label_separation(labels, np.full((100, 3), 1 / 3)) is None


def test_settings_refuse_what_the_protocol_forbids():
    with pytest.raises(ValueError, match="split"):
        evidence.EvidenceSettings(split="train")
    with pytest.raises(ValueError, match="plain"):
        evidence.EvidenceSettings(recipe=eval_judge.ClassifierRecipe(blur_sigma=1.0))
    with pytest.raises(ValueError, match="paired"):
        evidence.EvidenceSettings(classifiers=1)

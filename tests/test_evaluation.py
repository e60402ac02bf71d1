"""Classifier metrics on hand-made examples whose values were worked out by hand."""

import json

import pytest

from covid_keras import evaluation, plots

# 4 COVID (label 1) and 6 Normal images. At threshold 0.5 (P > 0.5 is COVID):
# COVID 0.9 0.8 0.6 -> TP=3, COVID 0.4 -> FN=1; Normal 0.7 -> FP=1, Normal 0.3 0.1 0.2 0.5 0.05 -> TN=5
# (0.5 is not above the threshold). AUC: pairs (COVID > Normal) = 6 + 6 + 5 (0.6 loses to 0.7)
# + 4 (0.4 beats 0.3 0.1 0.2 0.05) = 21 of 24.
LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
PROBABILITIES = [0.9, 0.8, 0.4, 0.6, 0.3, 0.7, 0.1, 0.2, 0.5, 0.05]


def test_metrics_on_a_hand_made_example():
    metrics = evaluation.classification_metrics(LABELS, PROBABILITIES)
    assert metrics["confusion_matrix"] == [[5, 1], [1, 3]]  # [[TN, FP], [FN, TP]]
    assert metrics["accuracy"] == pytest.approx(8 / 10)
    assert metrics["sensitivity"] == pytest.approx(3 / 4)
    assert metrics["specificity"] == pytest.approx(5 / 6)
    assert metrics["auc"] == pytest.approx(21 / 24)
    assert (metrics["n"], metrics["n_covid"], metrics["n_normal"]) == (10, 4, 6)
    assert metrics["class_names"] == ["Normal", "COVID"]
    json.dumps(metrics, allow_nan=False)  # plain JSON


def test_threshold_moves_the_counts_but_not_the_auc():
    metrics = evaluation.classification_metrics(LABELS, PROBABILITIES, threshold=0.35)
    # COVID 0.4 becomes TP; Normal 0.5 becomes FP.
    assert metrics["confusion_matrix"] == [[4, 2], [0, 4]]
    assert metrics["auc"] == pytest.approx(21 / 24)


def test_auc_counts_ties_as_half():
    # pairs: (0.5, 0.5) tie -> 0.5; (0.5, 0.1), (0.9, 0.5), (0.9, 0.1) -> 1 each: 3.5 / 4
    assert evaluation.roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1]) == pytest.approx(0.875)
    assert evaluation.roc_auc([1, 0], [0.2, 0.8]) == 0.0


def test_roc_curve_points():
    curve = evaluation.roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert curve["fpr"] == pytest.approx([0, 0, 0.5, 0.5, 1])
    assert curve["tpr"] == pytest.approx([0, 0.5, 0.5, 1, 1])
    assert curve["thresholds"] == [None, 0.8, 0.4, 0.35, 0.1]
    # equal scores move the curve once, diagonally
    tied = evaluation.roc_curve([1, 0], [0.5, 0.5])
    assert tied["fpr"] == [0.0, 1.0] and tied["tpr"] == [0.0, 1.0]
    json.dumps(curve, allow_nan=False)


def test_undefined_metrics_are_none():
    metrics = evaluation.classification_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert metrics["auc"] is None and metrics["specificity"] is None
    assert metrics["sensitivity"] == pytest.approx(2 / 3)
    assert json.loads(json.dumps(metrics))["auc"] is None


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="differ in length"):
        evaluation.classification_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 \\(Normal\\) or 1 \\(COVID\\)"):
        evaluation.classification_metrics([0, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="no examples"):
        evaluation.classification_metrics([], [])


def test_roc_plot_is_a_png(tmp_path):
    curve = evaluation.roc_curve(LABELS, PROBABILITIES)
    path = plots.save_roc_curves({"test": (curve["fpr"], curve["tpr"], 0.875)}, tmp_path / "roc.png", title="t")
    with open(path, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"

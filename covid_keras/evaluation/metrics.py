"""Classifier metrics from labels and P(COVID): plain numpy, JSON-able results.

Label 1 is COVID (`labels.BINARY_CLASSES`), so sensitivity is the COVID recall and
specificity the Normal recall. A metric that is undefined for the given labels (AUC or
sensitivity with no COVID image, ...) is `None`, which JSON writes as `null`.
"""

from __future__ import annotations

import numpy as np

from covid_keras.labels import BINARY_CLASSES

DEFAULT_THRESHOLD = 0.5


def _as_binary_arrays(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if labels.shape != probabilities.shape:
        raise ValueError(
            f"labels ({labels.shape[0]}) and probabilities ({probabilities.shape[0]}) differ in length"
        )
    if labels.size == 0:
        raise ValueError("no examples to evaluate")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 (Normal) or 1 (COVID), got {sorted(set(labels.tolist()))}")
    return labels.astype(np.int64), probabilities


def _ratio(numerator: int, denominator: int) -> float | None:
    return float(numerator) / denominator if denominator else None


def confusion_counts(labels, probabilities, threshold: float = DEFAULT_THRESHOLD) -> dict[str, int]:
    """True/false positives/negatives, COVID being the positive class (predicted: P > threshold)."""
    labels, probabilities = _as_binary_arrays(labels, probabilities)
    predicted = probabilities > threshold  # as keras.metrics.BinaryAccuracy, so logs agree
    positive = labels == 1
    return {
        "tp": int(np.sum(predicted & positive)),
        "fn": int(np.sum(~predicted & positive)),
        "tn": int(np.sum(~predicted & ~positive)),
        "fp": int(np.sum(predicted & ~positive)),
    }


def roc_auc(labels, probabilities) -> float | None:
    """Exact ROC AUC: P(score of a COVID image > score of a Normal image), ties count half."""
    labels, probabilities = _as_binary_arrays(labels, probabilities)
    positives, negatives = probabilities[labels == 1], probabilities[labels == 0]
    if positives.size == 0 or negatives.size == 0:
        return None
    # Mann-Whitney U via average ranks over the pooled scores (ties share their mean rank).
    pooled = np.concatenate([positives, negatives])
    order = np.argsort(pooled, kind="mergesort")
    sorted_scores = pooled[order]
    ranks = np.empty(pooled.size, dtype=np.float64)
    _, first_index, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mean_ranks = first_index + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(mean_ranks, counts)
    rank_sum = ranks[: positives.size].sum()
    u_statistic = rank_sum - positives.size * (positives.size + 1) / 2.0
    return float(u_statistic / (positives.size * negatives.size))


def roc_curve(labels, probabilities) -> dict[str, list[float]]:
    """ROC points, from (0, 0) to (1, 1): one point per distinct score, thresholds descending.

    A point's threshold t means "predict COVID when P(COVID) >= t"; the first point's
    threshold is None (above every score: nothing predicted COVID), which keeps the result
    JSON-able. Undefined rates (no COVID or no Normal image) are 0.
    """
    labels, probabilities = _as_binary_arrays(labels, probabilities)
    order = np.argsort(-probabilities, kind="mergesort")
    scores, sorted_labels = probabilities[order], labels[order]
    # Last index of each group of equal scores: the curve moves once per distinct threshold.
    group_ends = np.flatnonzero(np.diff(scores) != 0)
    group_ends = np.append(group_ends, scores.size - 1)
    true_positives = np.cumsum(sorted_labels)[group_ends]
    false_positives = (group_ends + 1) - true_positives
    n_positive, n_negative = int(labels.sum()), int(labels.size - labels.sum())
    tpr = true_positives / n_positive if n_positive else np.zeros_like(true_positives, dtype=float)
    fpr = false_positives / n_negative if n_negative else np.zeros_like(false_positives, dtype=float)
    return {
        "fpr": [0.0] + [float(v) for v in fpr],
        "tpr": [0.0] + [float(v) for v in tpr],
        "thresholds": [None] + [float(v) for v in scores[group_ends]],
    }


def classification_metrics(
    labels, probabilities, threshold: float = DEFAULT_THRESHOLD
) -> dict:
    """Accuracy, AUC, COVID sensitivity, specificity and the confusion matrix, as a JSON-able dict.

    An image is predicted COVID when P(COVID) > threshold.
    `confusion_matrix` is [[TN, FP], [FN, TP]]: rows are the true class and columns the
    predicted class, both in `class_names` order (Normal, COVID).
    """
    labels, probabilities = _as_binary_arrays(labels, probabilities)
    counts = confusion_counts(labels, probabilities, threshold)
    tp, fn, tn, fp = counts["tp"], counts["fn"], counts["tn"], counts["fp"]
    return {
        "n": int(labels.size),
        "n_covid": tp + fn,
        "n_normal": tn + fp,
        "threshold": float(threshold),
        "accuracy": _ratio(tp + tn, labels.size),
        "auc": roc_auc(labels, probabilities),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "class_names": list(BINARY_CLASSES),
    }


def _auc_against_sorted(positives: np.ndarray, sorted_negatives: np.ndarray) -> float:
    """AUC = P(p > n) + P(p == n) / 2, from sorted negatives (no rank table per resample)."""
    below = np.searchsorted(sorted_negatives, positives, side="left")
    ties = np.searchsorted(sorted_negatives, positives, side="right") - below
    return float((below.sum() + ties.sum() / 2.0) / (positives.size * sorted_negatives.size))


def _stratified_resamples(labels: np.ndarray, resamples: int, seed: int):
    """Index arrays of bootstrap resamples that draw COVID and Normal images separately, so every
    resample keeps both classes at their counts."""
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    for _ in range(resamples):
        yield (positives[rng.integers(0, positives.size, positives.size)],
               negatives[rng.integers(0, negatives.size, negatives.size)])


def roc_auc_interval(labels, probabilities, resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile-bootstrap interval of the AUC, resampling COVID and Normal images separately
    (so every resample has both classes); None when one class is missing."""
    labels, probabilities = _as_binary_arrays(labels, probabilities)
    if labels.min(initial=1) == labels.max(initial=0):
        return None
    values = [_auc_against_sorted(probabilities[p], np.sort(probabilities[n]))
              for p, n in _stratified_resamples(labels, resamples, seed)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def paired_differences(labels, baseline, other, threshold: float = DEFAULT_THRESHOLD, resamples: int = 2000,
                       seed: int = 0) -> dict:
    """How `other` scores differ from `baseline` scores of the SAME images: AUC and accuracy (at
    `threshold`) differences, other minus baseline, each with a 95 % paired bootstrap interval (one
    stratified resample of images serves both, so what the images share cancels)."""
    labels, baseline = _as_binary_arrays(labels, baseline)
    other = np.asarray(other, dtype=np.float64).reshape(-1)
    if other.shape != baseline.shape:
        raise ValueError(f"{baseline.size} baseline scores but {other.size} other scores")
    if labels.min(initial=1) == labels.max(initial=0):
        raise ValueError("paired differences need both classes")
    right_base = (baseline > threshold).astype(np.int64) == labels
    right_other = (other > threshold).astype(np.int64) == labels
    auc_diffs, accuracy_diffs = [], []
    for p, n in _stratified_resamples(labels, resamples, seed):
        auc_diffs.append(_auc_against_sorted(other[p], np.sort(other[n]))
                         - _auc_against_sorted(baseline[p], np.sort(baseline[n])))
        both = np.concatenate([p, n])
        accuracy_diffs.append(right_other[both].mean() - right_base[both].mean())
    return {
        "auc_difference": roc_auc(labels, other) - roc_auc(labels, baseline),
        "auc_difference_interval": tuple(float(v) for v in np.percentile(auc_diffs, [2.5, 97.5])),
        "accuracy_difference": float(right_other.mean() - right_base.mean()),
        "accuracy_difference_interval": tuple(float(v) for v in np.percentile(accuracy_diffs, [2.5, 97.5])),
    }

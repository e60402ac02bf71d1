"""Choosing the decision threshold on validation for a target COVID sensitivity, and rates with
Wilson intervals at a threshold.

A screening classifier is used at an operating point, not at 0.5: "catch at least 95 % of COVID
images" fixes the threshold, and specificity is what that costs. The threshold is chosen on the
validation split and then applied unchanged to test, whose sensitivity (with its interval) is the
honest figure; the validation sensitivity meets the target by construction.

The rule matches `metrics.classification_metrics`: an image is predicted COVID when
P(COVID) > threshold (strictly). Plain numpy, JSON-able results.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from covid_keras.evaluation.metrics import _as_binary_arrays, confusion_counts

Z_95 = 1.959963984540054


def normal_quantile_two_sided(confidence: float) -> float:
    """z with P(|Z| <= z) = confidence for a standard normal Z (1.95996... for 0.95).

    0.95 returns the exact constant; other levels are found by bisection on math.erf (exact to
    double precision, no scipy).
    """
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if confidence == 0.95:
        return Z_95
    low, high = 0.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if math.erf(middle / math.sqrt(2.0)) < confidence:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval for a proportion successes / n; (None, None) when n == 0.

    Unlike the normal (Wald) interval it stays inside [0, 1] and is not zero-width at 0/n or n/n,
    which matters for sensitivities near 1 on small splits. Any confidence in (0, 1) is supported
    (`normal_quantile_two_sided`).
    """
    successes, n = int(successes), int(n)
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return None, None
    z = normal_quantile_two_sided(confidence)
    proportion = successes / n
    denominator = 1.0 + z * z / n
    centre = (proportion + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(proportion * (1.0 - proportion) / n + z * z / (4.0 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, not 0.9999999999999999
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _checked(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    labels, probabilities = _as_binary_arrays(labels, probabilities)
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("probabilities must be finite (found NaN or inf)")
    return labels, probabilities


def threshold_for_sensitivity(labels, probabilities, target: float = 0.95) -> float:
    """The largest threshold whose rule "COVID when P > t" reaches sensitivity >= target here.

    With m COVID images, k is the fewest with k / m >= target, and s_k the k-th highest COVID
    score. Every t < s_k reaches the target and none >= s_k does, so the sought thresholds are the
    gap [s', s_k) below s_k, where s' is the next lower distinct score among all images (COVID or
    Normal): any t in it gives the same predictions. The midpoint of the gap is returned, so the
    rule is not on a tie with any score. With nothing below s_k the gap is taken down to 0
    (P(COVID) >= 0), and if s_k is itself 0 a threshold just below 0 is returned.
    """
    target = float(target)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must lie in (0, 1], got {target}")
    labels, probabilities = _checked(labels, probabilities)
    covid_scores = np.sort(probabilities[labels == 1])[::-1]
    m = covid_scores.size
    if m == 0:
        raise ValueError("choosing a threshold for a sensitivity needs at least one COVID image (label 1)")
    k = min(m, math.ceil(target * m))
    while k > 1 and (k - 1) / m >= target:  # float rounding of target * m (0.7 * 10 = 7.000000000000001)
        k -= 1
    while k < m and k / m < target:
        k += 1
    score = float(covid_scores[k - 1])
    below = probabilities[probabilities < score]
    if below.size:
        lower = float(below.max())
    elif score > 0.0:
        lower = 0.0
    else:
        return -1e-12
    threshold = (score + lower) / 2.0
    if not threshold < score:  # adjacent doubles: the midpoint rounded up onto the score
        threshold = lower
    return float(threshold)


def rates_with_intervals(labels, probabilities, threshold: float, confidence: float = 0.95) -> dict:
    """Sensitivity, specificity and accuracy at `threshold` (COVID when P > threshold), each with a
    Wilson interval, and the counts. A rate with no images to count is None, as its interval."""
    labels, probabilities = _checked(labels, probabilities)
    counts = confusion_counts(labels, probabilities, threshold)
    tp, fn, tn, fp = counts["tp"], counts["fn"], counts["tn"], counts["fp"]

    def rate(successes: int, n: int) -> tuple[float | None, list[float | None] | None]:
        if n == 0:
            return None, None
        return successes / n, list(wilson_interval(successes, n, confidence))

    sensitivity, sensitivity_interval = rate(tp, tp + fn)
    specificity, specificity_interval = rate(tn, tn + fp)
    accuracy, accuracy_interval = rate(tp + tn, tp + fn + tn + fp)
    return {
        "threshold": float(threshold),
        "confidence": float(confidence),
        "sensitivity": sensitivity,
        "sensitivity_interval": sensitivity_interval,
        "specificity": specificity,
        "specificity_interval": specificity_interval,
        "accuracy": accuracy,
        "accuracy_interval": accuracy_interval,
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
    }


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """A threshold chosen on one split (validation) for a target sensitivity, and the rates it gave
    there. Apply `threshold` unchanged to test; `to_dict` / `from_dict` round-trip through JSON."""

    threshold: float
    target_sensitivity: float
    chosen_on: str
    validation_sensitivity: float
    validation_specificity: float | None

    @classmethod
    def choose(cls, labels, probabilities, target: float = 0.95,
               chosen_on: str = "validation") -> OperatingPoint:
        """`threshold_for_sensitivity` on these data, with the sensitivity and specificity there
        (specificity None when there is no Normal image)."""
        threshold = threshold_for_sensitivity(labels, probabilities, target)
        rates = rates_with_intervals(labels, probabilities, threshold)
        return cls(
            threshold=threshold,
            target_sensitivity=float(target),
            chosen_on=str(chosen_on),
            validation_sensitivity=rates["sensitivity"],
            validation_specificity=rates["specificity"],
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OperatingPoint:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in d.items() if key in names})

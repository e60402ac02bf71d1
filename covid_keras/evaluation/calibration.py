"""Temperature scaling of a binary sigmoid classifier's P(COVID), and how well P(COVID) is calibrated.

A frozen-backbone head trained to low loss is often over-confident: its P(COVID) says 0.99 where
COVID is found less often. Temperature scaling (Guo et al. 2017, "On calibration of modern neural
networks") divides the logit by one number T fitted on held-out data (validation, never test):

    P_calibrated = sigmoid(logit(P) / T)

T > 1 softens over-confident outputs, T < 1 sharpens under-confident ones. Dividing by a positive
number keeps the order of the scores, so AUC (and any ranking) is unchanged; only the threshold that
a given P(COVID) corresponds to moves.

`expected_calibration_error` measures the reliability of P(COVID) itself: in each bin of P(COVID),
how far the mean P(COVID) is from the fraction of COVID images. This is not the "confidence" ECE of
multi-class papers (max-class probability against accuracy); for two classes the two differ.

Plain numpy, JSON-able results (label 1 is COVID, `labels.BINARY_CLASSES`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from covid_keras.evaluation.metrics import _as_binary_arrays

LOGIT_EPSILON = 1e-7
TEMPERATURE_RANGE = (0.05, 20.0)
DEFAULT_BINS = 10
_GRID_POINTS = 81
_GOLDEN_ITERATIONS = 80


def _as_probabilities(probabilities) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("probabilities must be finite (found NaN or inf)")
    if probabilities.size and (probabilities.min() < 0.0 or probabilities.max() > 1.0):
        raise ValueError(
            f"probabilities must lie in [0, 1], got [{probabilities.min():g}, {probabilities.max():g}]"
        )
    return probabilities


def _checked_pair(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    labels, probabilities = _as_binary_arrays(labels, probabilities)
    return labels, _as_probabilities(probabilities)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def probability_to_logit(probabilities) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [LOGIT_EPSILON, 1 - LOGIT_EPSILON] so 0 and 1 stay finite."""
    p = np.clip(_as_probabilities(probabilities), LOGIT_EPSILON, 1.0 - LOGIT_EPSILON)
    return np.log(p) - np.log1p(-p)


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): the calibrated P(COVID), same shape as `probabilities`.

    T = 1 returns p (up to rounding; p outside [1e-7, 1 - 1e-7] comes back clipped to it).
    """
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0.0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return _sigmoid(probability_to_logit(probabilities) / temperature)


def binary_nll(labels, probabilities) -> float:
    """Mean binary cross-entropy (natural log) of P(COVID) against the labels; p clipped as in
    `probability_to_logit`, so a confident mistake costs at most -log(1e-7) ~ 16.1."""
    labels, probabilities = _checked_pair(labels, probabilities)
    p = np.clip(probabilities, LOGIT_EPSILON, 1.0 - LOGIT_EPSILON)
    return float(-np.mean(np.where(labels == 1, np.log(p), np.log1p(-p))))


def fit_temperature(labels, probabilities) -> float:
    """The T in [0.05, 20] that minimises `binary_nll` of `apply_temperature(probabilities, T)`.

    Deterministic and scipy-free: a grid of 81 points evenly spaced in log T (T = 1 added, so the
    result never does worse than leaving P alone), then golden-section search on log T between the
    best grid point's neighbours. The loss is unimodal in T (convex in 1/T), so this finds the
    minimum to ~1e-9 in log T. Needs both classes: with one class the loss falls towards T -> 0
    or infinity and says nothing about calibration.
    """
    labels, probabilities = _checked_pair(labels, probabilities)
    if labels.min() == labels.max():
        raise ValueError(
            "fitting a temperature needs both classes (COVID and Normal images), "
            f"got only label {int(labels[0])}"
        )
    logits = probability_to_logit(probabilities)

    def loss(log_t: float) -> float:
        p = np.clip(_sigmoid(logits / math.exp(log_t)), LOGIT_EPSILON, 1.0 - LOGIT_EPSILON)
        return float(-np.mean(np.where(labels == 1, np.log(p), np.log1p(-p))))

    low, high = math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1])
    grid = np.unique(np.append(np.linspace(low, high, _GRID_POINTS), 0.0))
    losses = np.array([loss(u) for u in grid])
    best = int(np.argmin(losses))  # first minimum: deterministic on ties
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(_GOLDEN_ITERATIONS):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    candidate = (a + b) / 2.0
    if loss(candidate) <= losses[best]:
        return float(math.exp(candidate))
    return float(math.exp(grid[best]))


def reliability_bins(labels, probabilities, bins: int = DEFAULT_BINS) -> list[dict]:
    """Equal-width bins of P(COVID) over [0, 1]: bin i holds i/bins <= P < (i+1)/bins, the last
    one also P = 1. Per bin {lower, upper, count, mean_probability, fraction_covid}; the two means
    are None for an empty bin (JSON null)."""
    labels, probabilities = _checked_pair(labels, probabilities)
    bins = int(bins)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    index = np.clip(np.floor(probabilities * bins).astype(np.int64), 0, bins - 1)
    result = []
    for i in range(bins):
        members = index == i
        count = int(members.sum())
        result.append({
            "lower": i / bins,
            "upper": (i + 1) / bins,
            "count": count,
            "mean_probability": float(probabilities[members].mean()) if count else None,
            "fraction_covid": float(labels[members].mean()) if count else None,
        })
    return result


def expected_calibration_error(labels, probabilities, bins: int = DEFAULT_BINS) -> float:
    """Sum over `reliability_bins` of count / N * |mean P(COVID) - fraction COVID|.

    This is the reliability of P(COVID) itself (module docstring), not the max-class confidence
    ECE; 0 is perfect, and with few images per bin even a calibrated model scores above 0.
    """
    labels, probabilities = _checked_pair(labels, probabilities)
    total = 0.0
    for b in reliability_bins(labels, probabilities, bins):
        if b["count"]:
            total += b["count"] / labels.size * abs(b["mean_probability"] - b["fraction_covid"])
    return float(total)


@dataclasses.dataclass(frozen=True)
class TemperatureCalibration:
    """A fitted temperature and what it did on the split it was fitted on (validation, not test).

    `fit` fits T and records NLL and ECE before and after; `apply` calibrates new P(COVID);
    `to_dict` / `from_dict` round-trip through JSON (unknown keys are ignored on reading).
    """

    temperature: float
    fitted_on: str
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    ece_bins: int = DEFAULT_BINS

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature > 0.0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")

    @classmethod
    def fit(cls, labels, probabilities, fitted_on: str = "validation",
            bins: int = DEFAULT_BINS) -> TemperatureCalibration:
        """Fit T on these labels and P(COVID) (the split named `fitted_on`)."""
        labels, probabilities = _checked_pair(labels, probabilities)
        temperature = fit_temperature(labels, probabilities)
        calibrated = apply_temperature(probabilities, temperature)
        return cls(
            temperature=temperature,
            fitted_on=str(fitted_on),
            n=int(labels.size),
            nll_before=binary_nll(labels, probabilities),
            nll_after=binary_nll(labels, calibrated),
            ece_before=expected_calibration_error(labels, probabilities, bins),
            ece_after=expected_calibration_error(labels, calibrated, bins),
            ece_bins=int(bins),
        )

    def apply(self, probabilities) -> np.ndarray:
        """The calibrated P(COVID) of `probabilities` (any shape)."""
        return apply_temperature(probabilities, self.temperature)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TemperatureCalibration:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in d.items() if key in names})

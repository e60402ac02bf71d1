"""How a classifier's P(COVID) becomes a probability a reader can take at its word and a label:
temperature scaling and an operating threshold, both fitted on the validation split.

The saved `model.keras` keeps the raw P(COVID) (so the study's figures, all at 0.5 on raw
probabilities, stay comparable); `classifier.json` holds the rule, and the exports, `predict`
and `evaluate_classifier` apply it. A classifier saved before the rule existed gets the
identity rule: temperature 1, threshold 0.5.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from covid_keras.evaluation.calibration import (
    TemperatureCalibration,
    apply_temperature,
    expected_calibration_error,
    reliability_bins,
)
from covid_keras.evaluation.metrics import DEFAULT_THRESHOLD
from covid_keras.evaluation.operating_point import OperatingPoint, rates_with_intervals

DEFAULT_TARGET_SENSITIVITY = 0.95
METADATA_KEY = "operating_rule"


@dataclasses.dataclass(frozen=True)
class OperatingRule:
    """Temperature scaling, then "COVID when calibrated P(COVID) > threshold"."""

    calibration: TemperatureCalibration | None = None
    operating_point: OperatingPoint | None = None

    @classmethod
    def fit(cls, labels, probabilities, target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
            split: str = "validation") -> "OperatingRule":
        """Temperature, then the threshold for `target_sensitivity`, both on one split (never test)."""
        if split == "test":
            raise ValueError("the operating rule is chosen on validation, never on the test split")
        calibration = TemperatureCalibration.fit(labels, probabilities, fitted_on=split)
        point = OperatingPoint.choose(labels, calibration.apply(probabilities), target=target_sensitivity,
                                      chosen_on=split)
        return cls(calibration, point)

    @property
    def temperature(self) -> float:
        return self.calibration.temperature if self.calibration is not None else 1.0

    @property
    def threshold(self) -> float:
        return self.operating_point.threshold if self.operating_point is not None else DEFAULT_THRESHOLD

    @property
    def raw_threshold(self) -> float:
        """The same rule on the raw P(COVID): calibrated P > threshold exactly when raw P > this."""
        if self.calibration is None:
            return self.threshold
        return float(apply_temperature(np.array([self.threshold]), 1.0 / self.temperature)[0])

    def probabilities(self, raw) -> np.ndarray:
        """Calibrated P(COVID) of raw model outputs."""
        raw = np.asarray(raw, dtype=np.float64)
        return self.calibration.apply(raw) if self.calibration is not None else raw

    def labels(self, raw) -> np.ndarray:
        """1 (COVID) where the calibrated P(COVID) is above the threshold."""
        return (self.probabilities(raw) > self.threshold).astype(np.int64)

    def report(self, labels, raw, bins: int = 10) -> dict:
        """ECE and reliability before/after calibration, and the rates (95 % Wilson intervals) at the threshold."""
        labels = np.asarray(labels).reshape(-1)
        calibrated = self.probabilities(raw)
        both_classes = len(np.unique(labels)) == 2
        return {
            "temperature": self.temperature,
            "threshold": self.threshold,
            "ece_before": expected_calibration_error(labels, raw, bins) if both_classes else None,
            "ece_after": expected_calibration_error(labels, calibrated, bins) if both_classes else None,
            "reliability_before": reliability_bins(labels, raw, bins),
            "reliability_after": reliability_bins(labels, calibrated, bins),
            "at_threshold": rates_with_intervals(labels, calibrated, self.threshold),
        }

    def to_dict(self) -> dict:
        return {
            "temperature": self.temperature,
            "threshold": self.threshold,
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "operating_point": self.operating_point.to_dict() if self.operating_point is not None else None,
        }

    @classmethod
    def from_dict(cls, values: Mapping | None) -> "OperatingRule":
        if not values:
            return cls()
        calibration = values.get("calibration")
        point = values.get("operating_point")
        return cls(TemperatureCalibration.from_dict(calibration) if calibration else None,
                   OperatingPoint.from_dict(point) if point else None)

    @classmethod
    def of_metadata(cls, metadata: Mapping) -> "OperatingRule":
        """The rule in a `classifier.json` (the identity rule when it has none)."""
        return cls.from_dict(metadata.get(METADATA_KEY))

"""Temperature scaling, calibration error and the validation-chosen operating point, on data whose
answers are known: logits scaled by a known factor, and hand-made examples worked out by hand."""

import json
import math

import numpy as np
import pytest

from covid_keras.evaluation import calibration, metrics, operating_point


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _scaled_logits(scale, n=20_000, seed=0):
    """True logits z, labels ~ Bernoulli(sigmoid(z)), and a model that outputs sigmoid(scale * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    labels = (rng.random(n) < _sigmoid(z)).astype(int)
    return labels, _sigmoid(scale * z)


def test_an_over_confident_model_gets_its_scale_back():
    labels, probabilities = _scaled_logits(3.0)
    temperature = calibration.fit_temperature(labels, probabilities)
    assert temperature == pytest.approx(3.0, rel=0.15)


def test_a_calibrated_model_keeps_temperature_one():
    labels, probabilities = _scaled_logits(1.0, seed=1)
    assert calibration.fit_temperature(labels, probabilities) == pytest.approx(1.0, rel=0.1)


def test_an_under_confident_model_is_sharpened():
    labels, probabilities = _scaled_logits(0.5, seed=2)
    assert calibration.fit_temperature(labels, probabilities) == pytest.approx(0.5, rel=0.15)


def test_fitting_lowers_nll_and_ece_and_keeps_the_order():
    labels, probabilities = _scaled_logits(3.0, n=5_000, seed=3)
    fitted = calibration.TemperatureCalibration.fit(labels, probabilities, fitted_on="validation")
    assert fitted.nll_after <= fitted.nll_before
    assert fitted.ece_after < fitted.ece_before
    assert fitted.nll_before == pytest.approx(calibration.binary_nll(labels, probabilities))
    calibrated = fitted.apply(probabilities)
    assert calibrated.shape == probabilities.shape
    assert metrics.roc_auc(labels, calibrated) == pytest.approx(metrics.roc_auc(labels, probabilities))
    assert (fitted.n, fitted.fitted_on) == (5_000, "validation")


def test_temperature_one_changes_nothing_and_bad_temperatures_are_refused():
    p = np.array([0.001, 0.2, 0.5, 0.7, 0.999])
    np.testing.assert_allclose(calibration.apply_temperature(p, 1.0), p, rtol=1e-12, atol=1e-15)
    # Extreme probabilities stay finite (clipped logits), and higher T pulls towards 0.5.
    softened = calibration.apply_temperature([0.0, 1.0, 0.9], 2.0)
    assert np.all(np.isfinite(softened)) and 0.5 < softened[2] < 0.9
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            calibration.apply_temperature(p, bad)


def test_logit_is_the_inverse_of_the_sigmoid_and_clipped():
    logits = calibration.probability_to_logit([0.5, 0.75, 0.0, 1.0])
    assert logits[0] == 0.0
    assert logits[1] == pytest.approx(math.log(3.0))
    assert logits[2] == pytest.approx(math.log(1e-7), rel=1e-6)
    assert logits[3] == pytest.approx(-logits[2])


def test_one_class_cannot_be_fitted():
    with pytest.raises(ValueError, match="both classes"):
        calibration.fit_temperature([1, 1, 1], [0.9, 0.8, 0.7])
    with pytest.raises(ValueError, match="both classes"):
        calibration.TemperatureCalibration.fit([0, 0], [0.1, 0.3])


def test_binary_nll_by_hand():
    # -(log 0.8 + log(1 - 0.4)) / 2
    assert calibration.binary_nll([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)


# Bins of width 0.1. Bin [0.1, 0.2): P 0.15 x3, labels 0 0 1 -> |0.15 - 1/3| = 0.18333, weight 3/6;
# bin [0.8, 0.9): 0.85, label 1 -> 0.15, weight 1/6; last bin holds 0.95 and 1.0, labels 1 0 ->
# |0.975 - 0.5| = 0.475, weight 2/6. ECE = 0.091667 + 0.025 + 0.158333 = 0.275.
ECE_LABELS = [0, 0, 1, 1, 1, 0]
ECE_PROBABILITIES = [0.15, 0.15, 0.15, 0.85, 0.95, 1.0]


def test_reliability_bins_and_ece_by_hand():
    bins = calibration.reliability_bins(ECE_LABELS, ECE_PROBABILITIES, bins=10)
    assert len(bins) == 10
    assert [b["count"] for b in bins] == [0, 3, 0, 0, 0, 0, 0, 0, 1, 2]
    assert bins[1]["mean_probability"] == pytest.approx(0.15)
    assert bins[1]["fraction_covid"] == pytest.approx(1 / 3)
    assert bins[9] == {"lower": 0.9, "upper": 1.0, "count": 2, "mean_probability": pytest.approx(0.975),
                       "fraction_covid": 0.5}
    assert bins[0]["mean_probability"] is None and bins[0]["fraction_covid"] is None
    json.dumps(bins, allow_nan=False)
    assert calibration.expected_calibration_error(ECE_LABELS, ECE_PROBABILITIES) == pytest.approx(0.275)
    # Zero lands in the first bin; a perfectly reliable set scores 0.
    assert calibration.reliability_bins([0], [0.0], bins=4)[0]["count"] == 1
    assert calibration.expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)


def test_probabilities_outside_0_1_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration.expected_calibration_error([0, 1], [0.2, 1.2])


def test_calibration_round_trips_through_json():
    fitted = calibration.TemperatureCalibration.fit(*_scaled_logits(2.0, n=2_000, seed=4), fitted_on="val")
    text = json.dumps(fitted.to_dict(), allow_nan=False)
    again = calibration.TemperatureCalibration.from_dict({**json.loads(text), "written_by": "a newer version"})
    assert again == fitted


# Operating point. COVID scores 0.9 0.8 0.7 0.2, Normal 0.6 0.5 0.1.
OP_LABELS = [1, 1, 1, 1, 0, 0, 0]
OP_PROBABILITIES = [0.9, 0.8, 0.7, 0.2, 0.6, 0.5, 0.1]


def test_threshold_for_three_of_four_covid_images():
    # 3 of 4 COVID images must score above t: t < 0.7; the next lower score is the Normal 0.6.
    threshold = operating_point.threshold_for_sensitivity(OP_LABELS, OP_PROBABILITIES, target=0.75)
    assert threshold == pytest.approx(0.65)
    at = metrics.classification_metrics(OP_LABELS, OP_PROBABILITIES, threshold)
    assert at["sensitivity"] == 0.75
    assert at["specificity"] == 1.0
    # Any larger threshold on the far side of 0.7 falls below the target.
    above = metrics.classification_metrics(OP_LABELS, OP_PROBABILITIES, 0.7)
    assert above["sensitivity"] < 0.75


def test_target_one_includes_every_covid_image():
    threshold = operating_point.threshold_for_sensitivity(OP_LABELS, OP_PROBABILITIES, target=1.0)
    assert threshold == pytest.approx(0.15)  # between the COVID 0.2 and the Normal 0.1
    assert metrics.classification_metrics(OP_LABELS, OP_PROBABILITIES, threshold)["sensitivity"] == 1.0


def test_threshold_edge_cases():
    # Nothing below the needed score: the gap runs down to 0.
    assert operating_point.threshold_for_sensitivity([1, 0], [0.3, 0.5], target=1.0) == pytest.approx(0.15)
    # A score of exactly 0 still gets predicted COVID.
    threshold = operating_point.threshold_for_sensitivity([1, 0], [0.0, 0.5], target=1.0)
    assert 0.0 > threshold
    # 0.7 * 10 is 7.000000000000001 in floats: still 7 of 10 COVID images, not 8.
    scores = np.linspace(0.95, 0.05, 10)
    threshold = operating_point.threshold_for_sensitivity([1] * 10, scores, target=0.7)
    assert threshold == pytest.approx((scores[6] + scores[7]) / 2)
    # A COVID score tied with a Normal one: the threshold stays off the tie.
    threshold = operating_point.threshold_for_sensitivity([1, 1, 0], [0.9, 0.4, 0.4], target=1.0)
    assert threshold < 0.4 and threshold == pytest.approx(0.2)


def test_threshold_needs_covid_images_and_a_valid_target():
    with pytest.raises(ValueError, match="COVID"):
        operating_point.threshold_for_sensitivity([0, 0], [0.1, 0.2])
    for target in (0.0, 1.01):
        with pytest.raises(ValueError, match="target"):
            operating_point.threshold_for_sensitivity(OP_LABELS, OP_PROBABILITIES, target=target)


def test_wilson_interval_by_hand():
    # p = 0.8, z^2 = 3.8415: centre (0.8 + 0.19207) / 1.38415 = 0.71674,
    # half 1.96 * sqrt(0.016 + 0.0096) / 1.38415 = 0.22657.
    low, high = operating_point.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=5e-4)
    assert high == pytest.approx(0.9433, abs=5e-4)
    assert operating_point.wilson_interval(0, 0) == (None, None)
    low, high = operating_point.wilson_interval(10, 10)
    assert high == 1.0 and 0.69 < low < 0.73  # not zero-width at n / n
    assert operating_point.normal_quantile_two_sided(0.90) == pytest.approx(1.644854, abs=1e-6)
    wide = operating_point.wilson_interval(8, 10, confidence=0.99)
    assert wide[0] < 0.4902 and wide[1] > 0.9433
    with pytest.raises(ValueError):
        operating_point.wilson_interval(11, 10)


def test_rates_with_intervals_and_the_chosen_operating_point():
    rates = operating_point.rates_with_intervals(OP_LABELS, OP_PROBABILITIES, 0.65)
    assert (rates["tp"], rates["fn"], rates["tn"], rates["fp"]) == (3, 1, 3, 0)
    assert rates["sensitivity"] == 0.75 and rates["accuracy"] == pytest.approx(6 / 7)
    assert rates["sensitivity_interval"] == pytest.approx(list(operating_point.wilson_interval(3, 4)))
    json.dumps(rates, allow_nan=False)
    no_covid = operating_point.rates_with_intervals([0, 0], [0.1, 0.9], 0.5)
    assert no_covid["sensitivity"] is None and no_covid["sensitivity_interval"] is None
    assert no_covid["specificity"] == 0.5

    point = operating_point.OperatingPoint.choose(OP_LABELS, OP_PROBABILITIES, target=0.75)
    assert point.threshold == pytest.approx(0.65)
    assert (point.validation_sensitivity, point.validation_specificity) == (0.75, 1.0)
    assert point.chosen_on == "validation"
    again = operating_point.OperatingPoint.from_dict({**json.loads(json.dumps(point.to_dict())), "extra": 1})
    assert again == point

"""The Grad-CAM shortcut report's regions and shares on hand-made maps, and the heatmap and
reliability figures."""

import json

import numpy as np
import pytest
from PIL import Image

from covid_keras import plots
from covid_keras.evaluation import calibration, shortcuts

SIZE = 20  # border: 2 pixels on every edge (0.36 of the area); top corners: two 4 x 4 squares (0.08)


def _map(rows, cols):
    heatmap = np.zeros((SIZE, SIZE))
    heatmap[rows, cols] = 1.0
    return heatmap


def test_regions_cover_the_documented_area():
    masks = shortcuts.region_masks(SIZE, SIZE)
    assert masks["border"].sum() == SIZE * SIZE - 16 * 16
    assert masks["top_corners"].sum() == 2 * 4 * 4
    assert masks["top_corners"][:4, :4].all() and masks["top_corners"][:4, -4:].all()
    assert not masks["top_corners"][4:].any()  # bottom corners are not part of it
    assert shortcuts.uniform_share(SIZE, SIZE) == {"border": pytest.approx(0.36), "top_corners": pytest.approx(0.08)}
    share = shortcuts.uniform_share(224, 224)
    assert share["border"] == pytest.approx(0.36, abs=0.01) and share["top_corners"] == pytest.approx(0.08, abs=0.005)


def test_mass_in_a_corner_the_centre_and_a_flat_map():
    heatmaps = np.stack([
        _map(slice(0, 2), slice(0, 2)),  # top-left corner, inside the border band
        _map(slice(9, 11), slice(9, 11)),  # centre
        np.full((SIZE, SIZE), 0.3),  # flat
        np.zeros((SIZE, SIZE)),  # empty: counted as flat
        _map(slice(5, 15), slice(0, 2)) + 3 * _map(slice(9, 11), slice(9, 11)),  # 20 in border, 12 in centre
    ])
    shares = shortcuts.mass_shares(heatmaps)
    np.testing.assert_allclose(shares["border"], [1.0, 0.0, 0.36, 0.36, 20 / 32])
    np.testing.assert_allclose(shares["top_corners"], [1.0, 0.0, 0.08, 0.08, 0.0])


def test_negative_or_misshapen_heatmaps_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        shortcuts.mass_shares(-np.ones((1, SIZE, SIZE)))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        shortcuts.mass_shares(np.ones((SIZE, SIZE)))


def test_shortcut_report_per_true_class():
    corner, centre = _map(slice(0, 2), slice(0, 2)), _map(slice(9, 11), slice(9, 11))
    heatmaps = np.stack([corner, corner, centre, centre, corner])
    labels = [1, 1, 0, 0, 0]
    probabilities = [0.9, 0.4, 0.1, 0.2, 0.8]  # COVID: one right, one wrong; Normal: two right, one wrong
    report = shortcuts.shortcut_report(heatmaps, labels, probabilities)
    json.dumps(report, allow_nan=False)
    covid, normal = report["COVID"], report["Normal"]
    assert covid["n"] == 2 and covid["border_mass_mean"] == 1.0 and covid["border_mass_sd"] == 0.0
    assert covid["share_of_maps_mostly_border"] == 1.0 and covid["n_correct"] == 1
    assert normal["n"] == 3
    assert normal["border_mass_mean"] == pytest.approx(1 / 3)
    assert normal["top_corner_mass_mean"] == pytest.approx(1 / 3)
    assert normal["share_of_maps_mostly_border"] == pytest.approx(1 / 3)
    assert normal["border_mass_mean_correct"] == 0.0 and normal["border_mass_mean_wrong"] == 1.0
    assert normal["border_mass_uniform"] == pytest.approx(0.36)
    assert normal["top_corner_mass_uniform"] == pytest.approx(0.08)
    only_normal = shortcuts.shortcut_report(heatmaps[2:], [0, 0, 0], [0.1, 0.2, 0.8])
    assert only_normal["COVID"]["n"] == 0 and only_normal["COVID"]["border_mass_mean"] is None


def test_most_confident_orders_each_class_by_its_own_probability():
    labels = [1, 0, 1, 0, 1, 0]
    probabilities = [0.6, 0.2, 0.9, 0.05, 0.6, 0.5]
    assert shortcuts.most_confident(labels, probabilities) == {"Normal": [3, 1, 5], "COVID": [2, 0, 4]}
    assert shortcuts.most_confident(labels, probabilities, per_class=2) == {"Normal": [3, 1], "COVID": [2, 0]}


def test_heatmap_overlay_leaves_cold_pixels_grey():
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (32, 1))[:, :32]  # 32 x 32
    cold = plots.heatmap_overlay(grey, np.zeros((7, 7)))
    assert cold.shape == (32, 32, 3) and cold.dtype == np.uint8
    assert (cold[..., 0] == grey).all() and (cold[..., 1] == grey).all() and (cold[..., 2] == grey).all()
    hot = np.zeros((7, 7))
    hot[0, 0] = 1.0  # resized up: the top-left is tinted, the far corner still grey
    overlay = plots.heatmap_overlay(grey[..., None], hot, colormap="inferno")
    assert not (overlay[0, 0, 0] == overlay[0, 0, 1] == overlay[0, 0, 2])
    assert overlay[-1, -1, 0] == overlay[-1, -1, 1] == overlay[-1, -1, 2] == grey[-1, -1]
    with pytest.raises(ValueError, match="uint8"):
        plots.heatmap_overlay(grey.astype(float), hot)


def test_heatmap_grid_and_reliability_diagram_are_readable_pngs(tmp_path):
    grey = np.full((16, 16), 100, dtype=np.uint8)
    overlays = [plots.heatmap_overlay(grey, np.random.default_rng(i).random((4, 4))) for i in range(5)]
    path = plots.save_heatmap_grid(overlays, [f"COVID {i}" for i in range(5)], tmp_path / "grid" / "cams.png",
                                   columns=3, title="most confident")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]  # 3 columns, 2 rows

    labels = [0, 0, 1, 1, 1, 0, 1, 0]
    probabilities = [0.05, 0.3, 0.9, 0.99, 0.6, 0.55, 0.8, 0.01]
    curves = {
        "before": (calibration.reliability_bins(labels, probabilities), calibration.expected_calibration_error(labels, probabilities)),
        "after": (calibration.reliability_bins(labels, calibration.apply_temperature(probabilities, 2.0)), None),
    }
    path = plots.save_reliability_diagram(curves, tmp_path / "reliability.png", title="validation")
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
    with pytest.raises(ValueError, match="titles"):
        plots.save_heatmap_grid(overlays, ["one"], tmp_path / "bad.png")

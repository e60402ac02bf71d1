"""Where Grad-CAM heatmaps put their mass: a shortcut report.

DeGrave et al. 2021 ("AI for radiographic COVID-19 detection selects shortcuts over signal",
Nature Machine Intelligence) showed COVID classifiers reading what differs between the source
hospitals rather than the lungs: laterality markers and text near the image border and top corners,
collimation edges. A first check is how much of each heatmap's mass lies in those regions,
against what a flat map would put there (the regions' share of the area):

- border: the outer `BORDER_FRACTION` (10 %) of the side along every edge (about 36 % of the area);
- top corners: the top-left and top-right squares of `CORNER_FRACTION` (20 %) of the side (8 %).

Far more mass than the area share, especially for one class, is a warning; it is not proof (a
lesion can lie at the edge of the lungs). The heatmaps should be at image resolution (upsample
Grad-CAM's coarse map first); on a coarse map the regions are rounded to whole cells, which is why
the flat-map reference is computed from the same masks rather than quoted.

Plain numpy, JSON-able results (label 1 is COVID, `labels.BINARY_CLASSES`).
"""

from __future__ import annotations

import math

import numpy as np

from covid_keras.evaluation.metrics import _as_binary_arrays
from covid_keras.labels import BINARY_CLASSES

BORDER_FRACTION = 0.10
CORNER_FRACTION = 0.20
REGIONS = ("border", "top_corners")


def _cells(fraction: float, side: int) -> int:
    """fraction * side rounded half up, at least one cell."""
    return max(1, math.floor(fraction * side + 0.5))


def region_masks(height: int, width: int) -> dict[str, np.ndarray]:
    """Boolean [height, width] masks of the regions (module docstring), by name in `REGIONS`.

    Band and square sizes are fractions of each side, rounded half up, at least one pixel (on a
    non-square image the "squares" are rectangles of 20 % of each side).
    """
    height, width = int(height), int(width)
    if height < 3 or width < 3:
        raise ValueError(f"region masks need at least 3 x 3 pixels, got {height} x {width}")
    border = np.zeros((height, width), dtype=bool)
    rows, cols = _cells(BORDER_FRACTION, height), _cells(BORDER_FRACTION, width)
    border[:rows, :] = border[-rows:, :] = True
    border[:, :cols] = border[:, -cols:] = True
    corners = np.zeros((height, width), dtype=bool)
    rows, cols = _cells(CORNER_FRACTION, height), _cells(CORNER_FRACTION, width)
    corners[:rows, :cols] = corners[:rows, -cols:] = True
    return {"border": border, "top_corners": corners}


def uniform_share(height: int, width: int) -> dict[str, float]:
    """Each region's share of the area: the mass a flat heatmap puts there (border ~0.36, top
    corners ~0.08)."""
    return {name: float(mask.mean()) for name, mask in region_masks(height, width).items()}


def _as_heatmaps(heatmaps) -> np.ndarray:
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    if heatmaps.ndim == 4 and heatmaps.shape[-1] == 1:
        heatmaps = heatmaps[..., 0]
    if heatmaps.ndim != 3:
        raise ValueError(f"expected heatmaps of shape [N, H, W], got {heatmaps.shape}")
    if not np.all(np.isfinite(heatmaps)):
        raise ValueError("heatmaps must be finite (found NaN or inf)")
    if heatmaps.size and heatmaps.min() < 0.0:
        raise ValueError(f"heatmaps must be non-negative (Grad-CAM after ReLU), minimum {heatmaps.min():g}")
    return heatmaps


def mass_shares(heatmaps) -> dict[str, np.ndarray]:
    """Each map's share of its total mass in each region: {"border": [N], "top_corners": [N]}.

    heatmaps: [N, H, W] (or [N, H, W, 1]) non-negative floats. An all-zero map (Grad-CAM found no
    positive evidence) has no mass to share: it is counted as flat, i.e. gets `uniform_share`, so
    it neither raises nor lowers a mean away from the reference. `shortcut_report` counts them.
    """
    heatmaps = _as_heatmaps(heatmaps)
    n, height, width = heatmaps.shape
    masks = region_masks(height, width)
    totals = heatmaps.reshape(n, -1).sum(axis=1)
    empty = totals <= 0.0
    safe_totals = np.where(empty, 1.0, totals)
    flat = uniform_share(height, width)
    return {
        name: np.where(empty, flat[name], (heatmaps * mask).reshape(n, -1).sum(axis=1) / safe_totals)
        for name, mask in masks.items()
    }


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _sd(values: np.ndarray) -> float | None:
    return float(values.std(ddof=1)) if values.size > 1 else None


def shortcut_report(heatmaps, labels, probabilities, predicted_threshold: float = 0.5) -> dict:
    """Per true class (by name, `BINARY_CLASSES`) the heatmaps' mass in the border and top corners.

    Each class gets {n, border_mass_mean, border_mass_sd, top_corner_mass_mean, top_corner_mass_sd,
    border_mass_uniform, top_corner_mass_uniform, share_of_maps_mostly_border (border share > 0.5)},
    plus n_empty_maps (all-zero maps, counted as flat), n_correct (images predicted as their class:
    COVID when P > predicted_threshold) and the border / top-corner means over the correctly and
    wrongly predicted images (a shortcut shows most where the model is right for the wrong reason).
    Means are None with no image, sds with fewer than two.
    """
    heatmaps = _as_heatmaps(heatmaps)
    labels, probabilities = _as_binary_arrays(labels, probabilities)
    if heatmaps.shape[0] != labels.size:
        raise ValueError(f"{heatmaps.shape[0]} heatmaps but {labels.size} labels")
    shares = mass_shares(heatmaps)
    flat = uniform_share(*heatmaps.shape[1:])
    empty = heatmaps.reshape(labels.size, -1).sum(axis=1) <= 0.0
    correct = (probabilities > predicted_threshold).astype(np.int64) == labels
    report = {}
    for label, name in enumerate(BINARY_CLASSES):
        members = labels == label
        border, corners = shares["border"][members], shares["top_corners"][members]
        right, wrong = members & correct, members & ~correct
        report[name] = {
            "n": int(members.sum()),
            "border_mass_mean": _mean(border),
            "border_mass_sd": _sd(border),
            "top_corner_mass_mean": _mean(corners),
            "top_corner_mass_sd": _sd(corners),
            "border_mass_uniform": flat["border"],
            "top_corner_mass_uniform": flat["top_corners"],
            "share_of_maps_mostly_border": _mean((border > 0.5).astype(np.float64)),
            "n_empty_maps": int((empty & members).sum()),
            "predicted_threshold": float(predicted_threshold),
            "n_correct": int(right.sum()),
            "border_mass_mean_correct": _mean(shares["border"][right]),
            "border_mass_mean_wrong": _mean(shares["border"][wrong]),
            "top_corner_mass_mean_correct": _mean(shares["top_corners"][right]),
            "top_corner_mass_mean_wrong": _mean(shares["top_corners"][wrong]),
        }
    return report


def most_confident(labels, probabilities, per_class: int = 16) -> dict[str, list[int]]:
    """{class name: indices of up to `per_class` images of that true class with the highest
    P(that class)}, most confident first: highest P(COVID) for COVID, lowest for Normal. Ties keep
    the input order, so the choice is deterministic."""
    per_class = int(per_class)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    labels, probabilities = _as_binary_arrays(labels, probabilities)
    result = {}
    for label, name in enumerate(BINARY_CLASSES):
        indices = np.flatnonzero(labels == label)
        # Sorting by -P(COVID) for Normal orders as by 1 - P(COVID), without rounding ties into it.
        confidence = probabilities[indices] if label == 1 else -probabilities[indices]
        order = np.argsort(-confidence, kind="stable")
        result[name] = [int(i) for i in indices[order[:per_class]]]
    return result

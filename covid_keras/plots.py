"""Figures: image grids, loss curves, ROC curves and bar charts. Grey images stay grey (no colour map)."""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_image_grid(
    images: np.ndarray,
    path: str | os.PathLike,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> str:
    """Save a grid of grey images as a PNG.

    images: [rows, cols, H, W] or [rows, cols, H, W, 1], uint8 in [0, 255] or float in [-1, 1].
    """
    images = np.asarray(images)
    if images.ndim == 5:
        images = images[..., 0]
    if images.ndim != 4:
        raise ValueError(f"expected [rows, cols, H, W] images, got shape {images.shape}")
    if images.dtype != np.uint8:
        images = np.clip((images.astype(np.float32) + 1.0) * 127.5, 0, 255).astype(np.uint8)
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols + 0.8, 1.6 * rows), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(images[r, c], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        if row_labels is not None:
            axes[r][0].set_ylabel(row_labels[r], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def save_metric_curves(
    x: Sequence[float],
    series: dict[str, tuple[Sequence[float], Sequence[float] | None]],
    path: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> str:
    """Save line plots of metrics over x as a PNG: `series` maps a label to (values, stds or None);
    a std draws a shaded band of one standard deviation."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (values, stds) in series.items():
        values = np.asarray(values, dtype=float)
        ax.plot(x, values, marker="o", markersize=3, linewidth=1.5, label=name)
        if stds is not None:
            stds = np.asarray(stds, dtype=float)
            ax.fill_between(x, values - stds, values + stds, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def save_roc_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float], float | None]],
    path: str | os.PathLike,
    title: str | None = None,
) -> str:
    """Save ROC curves as a PNG: `curves` maps a label (e.g. a split) to (fpr, tpr, auc)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="chance")
    for name, (fpr, tpr, auc) in curves.items():
        label = name if auc is None else f"{name} (AUC {auc:.3f})"
        ax.plot(fpr, tpr, linewidth=1.5, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (COVID sensitivity)")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def save_confusion_matrices(
    matrices: dict[str, Sequence[Sequence[int]]], path: str | os.PathLike, class_names: Sequence[str],
    title: str | None = None,
) -> str:
    """One 2 x 2 panel per entry of `matrices` (a name -> [[TN, FP], [FN, TP]]: rows the true
    class, columns the predicted), counts written in each cell."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(2.8 * len(matrices), 3.0), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        counts = np.asarray(matrix)
        ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
        for (row, column), value in np.ndenumerate(counts):
            ax.text(column, row, str(int(value)), ha="center", va="center",
                    color="white" if value > counts.max() / 2 else "black")
        ax.set_xticks(range(len(class_names)), class_names, fontsize=8)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def smooth(values: Sequence[float], weight: float = 0.6) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased so the first points are not pulled to 0."""
    values = np.asarray(values, dtype=float)
    smoothed, average = np.empty_like(values), 0.0
    for i, value in enumerate(values):
        average = weight * average + (1.0 - weight) * value
        smoothed[i] = average / (1.0 - weight ** (i + 1))
    return smoothed


def save_loss_curves(
    series: dict[str, Sequence[float]],
    path: str | os.PathLike,
    xlabel: str = "epoch",
    smoothing: float = 0.6,
    title: str | None = None,
    x: Sequence[float] | None = None,
) -> str:
    """Save loss curves as a PNG, one panel per series (e.g. G and D): raw values faint, smoothed bold."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items()):
        values = np.asarray(values, dtype=float)
        steps = np.arange(1, len(values) + 1) if x is None else np.asarray(x)
        line = ax.plot(steps, values, alpha=0.3, linewidth=1)[0]
        ax.plot(steps, smooth(values, smoothing), color=line.get_color(), linewidth=2, label=f"{name} (smoothed)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def save_grouped_bars(
    groups: Sequence[str],
    series: dict[str, tuple[Sequence[float], Sequence[float | None] | None]],
    path: str | os.PathLike,
    ylabel: str,
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
) -> str:
    """Save a grouped bar chart as a PNG: one group per entry of `groups` (e.g. a backbone), one bar
    per series (e.g. baseline / augmented); `series` maps a label to (means, sds or None), and an
    sd draws an error bar of one standard deviation. Each bar is annotated with its mean."""
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(groups), 4))
    positions = np.arange(len(groups), dtype=float)
    width = 0.8 / max(len(series), 1)
    for index, (name, (means, sds)) in enumerate(series.items()):
        means = np.asarray(means, dtype=float)
        errors = None if sds is None else np.asarray([np.nan if s is None else s for s in sds], dtype=float)
        x = positions - 0.4 + width * (index + 0.5)
        bars = ax.bar(x, means, width, yerr=errors, capsize=4, label=name)
        ax.bar_label(bars, labels=[f"{m:.3f}" for m in means], fontsize=7, padding=2)
    ax.set_xticks(positions)
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    # Below the axes, so it never hides a bar.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(series), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _save(fig: "plt.Figure", path: str | os.PathLike) -> str:
    """Lay out, write as a PNG (creating its folder) and free the figure; every plot ends here."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def heatmap_overlay(grey: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """A heatmap (e.g. Grad-CAM) coloured and blended over a grey image: uint8 RGB [H, W, 3].

    grey: uint8 [H, W] or [H, W, 1]. heatmap: float [h, w] in [0, 1] (clipped), any size: resized
    bilinearly to H x W. Each pixel mixes in the colour with weight alpha * heat, so where the map
    is 0 the X-ray shows unchanged (still grey) and only the hot regions are tinted.
    """
    from PIL import Image

    grey = np.asarray(grey)
    if grey.ndim == 3 and grey.shape[-1] == 1:
        grey = grey[..., 0]
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [H, W] grey image, got {grey.dtype} {grey.shape}")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim == 3 and heatmap.shape[-1] == 1:
        heatmap = heatmap[..., 0]
    if heatmap.ndim != 2:
        raise ValueError(f"expected a [h, w] heatmap, got shape {heatmap.shape}")
    if not np.all(np.isfinite(heatmap)):
        raise ValueError("heatmap must be finite (found NaN or inf)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    height, width = grey.shape
    if heatmap.shape != (height, width):
        image = Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32))  # mode "F"
        heatmap = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
    heatmap = np.clip(heatmap, 0.0, 1.0).astype(np.float64)
    colour = matplotlib.colormaps[colormap](heatmap)[..., :3] * 255.0
    weight = (alpha * heatmap)[..., None]
    blended = (1.0 - weight) * grey[..., None].astype(np.float64) + weight * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def save_heatmap_grid(
    overlays: Sequence[np.ndarray] | np.ndarray,
    titles: Sequence[str],
    path: str | os.PathLike,
    columns: int = 8,
    title: str | None = None,
) -> str:
    """Save RGB uint8 images (e.g. `heatmap_overlay`s) as a PNG grid, `columns` wide, each with a
    small title (e.g. its class and P(COVID)); unused cells of the last row stay blank."""
    overlays = [np.asarray(image) for image in overlays]
    if not overlays:
        raise ValueError("no images to draw")
    if len(titles) != len(overlays):
        raise ValueError(f"{len(overlays)} images but {len(titles)} titles")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    columns = min(columns, len(overlays))
    rows = -(-len(overlays) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.8 * columns, 1.9 * rows + (0.3 if title else 0)), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= len(overlays):
            ax.axis("off")
            continue
        ax.imshow(overlays[index], interpolation="nearest")
        ax.set_title(titles[index], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def save_reliability_diagram(
    curves: dict[str, tuple[Sequence[dict], float | None]],
    path: str | os.PathLike,
    title: str | None = None,
) -> str:
    """Save a reliability diagram of P(COVID) as a PNG: `curves` maps a label (e.g. "before",
    "after temperature") to (bins, ece or None), bins being `evaluation.calibration.reliability_bins`
    (dicts with mean_probability, fraction_covid, count). One line with markers per curve over its
    non-empty bins (marker area grows with the bin's count), the diagonal of perfect calibration,
    and the ECE in the legend when given."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, (bins, ece) in curves.items():
        filled = [b for b in bins if b["count"]]
        x = [b["mean_probability"] for b in filled]
        y = [b["fraction_covid"] for b in filled]
        total = max(sum(b["count"] for b in filled), 1)
        label = name if ece is None else f"{name} (ECE {ece:.3f})"
        line = ax.plot(x, y, linewidth=1.5, label=label)[0]
        ax.scatter(x, y, s=[12 + 150 * b["count"] / total for b in filled], color=line.get_color(), zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("mean predicted P(COVID)")
    ax.set_ylabel("fraction COVID")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)

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
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)

"""Does a generator copy its training images? Nearest-training-image distances, generated vs real.

For every generated image, the distance to its nearest training image; for every real held-out
image (never trained on), the same. A generator that draws new images sits about as far from the
training set as fresh real images do (ratio ~1); one that returns its training images sits at ~0.
Distances are root-mean-square pixel differences on [0, 1] images, so 0.1 means 10 % of full
grey scale per pixel.

The flag rests on near copies, not on the ratio: smooth (blurry) images are close in pixel
distance to many images without copying any, which lowers the ratio. A near copy is a generated
image closer to a training image than all but `near_quantile` of real held-out images are;
without copying about `near_quantile` of the generated images fall there by chance, and a
generator is flagged when `FLAG_SHARE` of its samples (five times that chance share) are near copies.
"""

from __future__ import annotations

import numpy as np

# The share of near copies that flags a generator: 5x the chance share of the default quantile, far
# above what the threshold's own sampling noise gives with a few hundred held-out images.
FLAG_SHARE = 0.25


def _flat_unit(images: np.ndarray) -> np.ndarray:
    """uint8 (or float in [-1, 1]) grey images [N, H, W, 1] -> float64 [N, H*W*1] in [0, 1]."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        flat = images.astype(np.float64) / 255.0
    else:
        flat = (np.clip(images.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0
    return flat.reshape(len(flat), -1)


def nearest_distances(queries: np.ndarray, references: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(RMS pixel distance of each query to its nearest reference [N], that reference's index [N])."""
    q, r = _flat_unit(queries), _flat_unit(references)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries and references differ in size: {q.shape[1]} vs {r.shape[1]} pixels")
    r_norms = np.einsum("ij,ij->i", r, r)
    distances, indices = np.empty(len(q)), np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), batch_size):
        block = q[start : start + batch_size]
        squared = np.einsum("ij,ij->i", block, block)[:, None] + r_norms[None, :] - 2.0 * block @ r.T
        best = np.argmin(squared, axis=1)
        indices[start : start + len(block)] = best
        distances[start : start + len(block)] = np.sqrt(np.maximum(squared[np.arange(len(block)), best], 0.0) / q.shape[1])
    return distances, indices


def memorisation_check(
    generated: np.ndarray,
    train: np.ndarray,
    held_out: np.ndarray,
    near_quantile: float = 0.05,
) -> dict:
    """Nearest-train distances of generated vs held-out real images (see the module docstring).

    -> {"ratio": median generated / median held-out distance, "near_copy_share", "chance_share",
        "flagged", the distance summaries, and "closest": the generated and train indices of
        the 8 closest pairs (for a grid)}.
    """
    if not 0 < near_quantile < FLAG_SHARE:
        raise ValueError(f"near_quantile must be in (0, {FLAG_SHARE}), got {near_quantile}")
    generated_distance, generated_nearest = nearest_distances(generated, train)
    held_out_distance, _ = nearest_distances(held_out, train)
    threshold = float(np.quantile(held_out_distance, near_quantile))
    near_copy_share = float(np.mean(generated_distance < threshold))
    order = np.argsort(generated_distance)[:8]
    return {
        "distance": "RMS pixel difference on [0, 1] images, to the nearest training image",
        "generated_median": float(np.median(generated_distance)),
        "held_out_median": float(np.median(held_out_distance)),
        "ratio": float(np.median(generated_distance) / max(np.median(held_out_distance), 1e-12)),
        "near_copy_threshold": threshold,
        "near_copy_share": near_copy_share,
        "chance_share": near_quantile,
        "flagged": bool(near_copy_share >= FLAG_SHARE),
        "closest": [{"generated": int(g), "train": int(generated_nearest[g]), "distance": float(generated_distance[g])}
                    for g in order],
    }

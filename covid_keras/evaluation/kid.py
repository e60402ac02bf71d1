"""KID (Binkowski et al. 2018: unbiased MMD^2 with the cubic polynomial kernel, per class, over random subsets) and diversity (mean pairwise feature distance, 1 - SSIM) of generated against real images."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from covid_keras.evaluation.images import to_uint8_images


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for every pair of rows."""
    dim = x.shape[1]
    return (x @ y.T / dim + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate between samples x [m, d] and y [n, d] (diagonals left out)."""
    return _mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


def _mmd2_from_kernels(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    m, n = k_xy.shape
    if m < 2 or n < 2:
        raise ValueError(f"MMD needs at least 2 samples on each side, got {m} and {n}")
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


# Up to this many samples a side, the kernel matrices are computed once and each subset indexes
# them (n^2 memory, 100x less compute); beyond it, each subset computes its own.
_PRECOMPUTE_KERNELS_UP_TO = 5000


def kernel_inception_distance(
    real_features: np.ndarray,
    generated_features: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> dict:
    """KID: mean and standard deviation of unbiased MMD^2 over random subsets (drawn without
    replacement within a subset), each of min(subset_size, n_real, n_generated) samples."""
    real = np.asarray(real_features, np.float64)
    fake = np.asarray(generated_features, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature arrays must be [N, D] with equal D, got {real.shape} and {fake.shape}")
    size = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    subsets = [
        (rng.choice(len(real), size, replace=False), rng.choice(len(fake), size, replace=False))
        for _ in range(num_subsets)
    ]
    if max(len(real), len(fake)) <= _PRECOMPUTE_KERNELS_UP_TO:
        k_rr, k_ff, k_rf = polynomial_kernel(real, real), polynomial_kernel(fake, fake), polynomial_kernel(real, fake)
        values = [_mmd2_from_kernels(k_rr[np.ix_(r, r)], k_ff[np.ix_(f, f)], k_rf[np.ix_(r, f)]) for r, f in subsets]
    else:
        values = [mmd2_unbiased(real[r], fake[f]) for r, f in subsets]
    values = np.asarray(values)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if num_subsets > 1 else 0.0,
        "subset_size": int(size),
        "num_subsets": int(num_subsets),
        "n_real": int(len(real)),
        "n_generated": int(len(fake)),
    }


def kid_per_class(
    real_features: np.ndarray,
    real_labels: np.ndarray,
    generated_features: np.ndarray,
    generated_labels: np.ndarray,
    class_names: Sequence[str],
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> dict:
    """{"per_class": {name: KID dict}, "mean_over_classes": float}; classes absent on a side are skipped."""
    per_class = {}
    for label, name in enumerate(class_names):
        real = real_features[real_labels == label]
        fake = generated_features[generated_labels == label]
        if len(real) >= 2 and len(fake) >= 2:
            per_class[name] = kernel_inception_distance(real, fake, num_subsets, subset_size, seed + label)
    means = [v["mean"] for v in per_class.values()]
    return {"per_class": per_class, "mean_over_classes": float(np.mean(means)) if means else None}




def mean_pairwise_distance(features: np.ndarray, max_samples: int = 500, seed: int = 0) -> float:
    """Mean Euclidean distance over all distinct pairs (of at most `max_samples` rows, seeded).

    Differences are taken row by row, not through a Gram matrix, so identical rows give exactly 0.
    """
    features = np.asarray(features, np.float64)
    if len(features) > max_samples:
        features = features[np.random.default_rng(seed).choice(len(features), max_samples, replace=False)]
    n = len(features)
    if n < 2:
        raise ValueError(f"pairwise distance needs at least 2 samples, got {n}")
    total = sum(np.linalg.norm(features[i + 1 :] - features[i], axis=1).sum() for i in range(n - 1))
    return float(total / (n * (n - 1) / 2))


def mean_pairwise_ssim_distance(images: np.ndarray, num_pairs: int = 200, seed: int = 0) -> float:
    """1 - mean SSIM over random pairs of distinct images (pixels, grey, max value 255).

    Single-scale SSIM: MS-SSIM's five scales need images of at least 176 px.
    """
    images = to_uint8_images(images)
    n = len(images)
    if n < 2:
        raise ValueError(f"pairwise SSIM needs at least 2 images, got {n}")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, num_pairs)
    second = (first + rng.integers(1, n, num_pairs)) % n  # never the same index
    ssim = tf.image.ssim(
        tf.cast(images[first], tf.float32), tf.cast(images[second], tf.float32), max_val=255.0
    )
    return float(1.0 - np.mean(ssim.numpy()))


def diversity_per_class(
    features: np.ndarray, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], seed: int = 0
) -> dict:
    """{name: {"feature_distance", "pixel_1_minus_ssim", "n"}} for classes with at least 2 images."""
    out = {}
    for label, name in enumerate(class_names):
        mask = labels == label
        if mask.sum() >= 2:
            out[name] = {
                "feature_distance": mean_pairwise_distance(features[mask], seed=seed),
                "pixel_1_minus_ssim": mean_pairwise_ssim_distance(images[mask], seed=seed),
                "n": int(mask.sum()),
            }
    return out

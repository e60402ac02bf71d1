"""95 % intervals for accuracies measured over seeds and images, and paired differences.

A figure such as TSTR accuracy varies for two reasons: the classifier (or GAN) seed, and the
finite set of test images it is scored on. Over 3 seeds and 280 shared test images the second
is about as large as the first (a binomial SE of ~2.5 points), so an interval over seeds alone
understates the uncertainty. `mean_interval` combines both:

    var(mean) = var_items + var_seeds
    var_items : the variance of the figure under a bootstrap of the images (one shared resample
                when every seed is scored on the same images, e.g. the test split; one resample
                per seed when each seed has its own images, e.g. its generated samples)
    var_seeds : s^2 / k over the k per-seed means (0, and said so, for one seed)

and reports mean +- 1.96 sqrt(var). `paired_difference` compares two arms measured on the same
seeds (and the same test images) by their per-seed differences: a t interval over seeds.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z_95 = 1.959964
# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (no scipy here).
_T_95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def t_quantile_95(degrees_of_freedom: int) -> float:
    """The two-sided 95 % quantile of Student's t (the normal's 1.96 beyond 30 degrees)."""
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {degrees_of_freedom}")
    return _T_95[degrees_of_freedom - 1] if degrees_of_freedom <= len(_T_95) else Z_95


def _as_score_arrays(scores: Sequence[Sequence[float]]) -> list[np.ndarray]:
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("need at least one seed, each with at least one scored item")
    return arrays


def mean_interval(
    scores: Sequence[Sequence[float]],
    *,
    shared_items: bool,
    num_resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """Mean over seeds of each seed's mean item score, with a 95 % interval (module docstring).

    scores: per seed, one score per item (1/0 for right/wrong, or any real score).
    shared_items: every seed scored the same items in the same order (crossed design).
    """
    arrays = _as_score_arrays(scores)
    if shared_items and len({a.size for a in arrays}) != 1:
        raise ValueError("shared_items: every seed must score the same number of items")
    rng = np.random.default_rng(seed)
    seed_means = np.array([a.mean() for a in arrays])
    resampled = np.empty(num_resamples)
    if shared_items:
        matrix = np.stack(arrays)  # [seeds, items]
        n = matrix.shape[1]
        for r in range(num_resamples):
            resampled[r] = matrix[:, rng.integers(0, n, n)].mean()
    else:
        for r in range(num_resamples):
            resampled[r] = np.mean([a[rng.integers(0, a.size, a.size)].mean() for a in arrays])
    var_items = float(resampled.var(ddof=1)) if num_resamples > 1 else 0.0
    k = len(arrays)
    var_seeds = float(seed_means.var(ddof=1) / k) if k > 1 else 0.0
    mean = float(seed_means.mean())
    half = Z_95 * math.sqrt(var_items + var_seeds)
    return {
        "mean": mean,
        "low": mean - half,
        "high": mean + half,
        "se_items": math.sqrt(var_items),
        "se_seeds": math.sqrt(var_seeds) if k > 1 else None,
        "n_seeds": k,
        "n_items": [int(a.size) for a in arrays] if not shared_items else int(arrays[0].size),
        "method": ("bootstrap over " + ("shared" if shared_items else "per-seed") + f" items ({num_resamples}x)"
                   + (" + seed variance" if k > 1 else "; one seed: seed variance not included")),
    }


def paired_difference(arm: Sequence[float], baseline: Sequence[float]) -> dict:
    """Per-seed differences arm - baseline (same seeds, same test images): mean, sd and a 95 % t
    interval over seeds; `verdict` is "better" / "worse" only when the interval excludes 0."""
    arm = np.asarray(arm, dtype=np.float64).reshape(-1)
    baseline = np.asarray(baseline, dtype=np.float64).reshape(-1)
    if arm.shape != baseline.shape:
        raise ValueError(f"paired figures need the same seeds: {arm.size} vs {baseline.size} values")
    if arm.size < 2:
        raise ValueError("a paired interval needs at least 2 seeds")
    differences = arm - baseline
    mean = float(differences.mean())
    sd = float(differences.std(ddof=1))
    half = t_quantile_95(arm.size - 1) * sd / math.sqrt(arm.size)
    low, high = mean - half, mean + half
    verdict = "better" if low > 0 else "worse" if high < 0 else "no detectable difference"
    return {"mean": mean, "sd": sd, "low": low, "high": high, "n_seeds": int(arm.size),
            "differences": differences.tolist(), "verdict": verdict}

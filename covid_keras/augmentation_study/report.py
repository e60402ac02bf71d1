"""A study's numbers: per-arm summaries with intervals and paired differences, the Markdown table,
and the accuracy-against-n figure."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Mapping, Sequence

import numpy as np

from covid_keras.augmentation_study.config import (
    ALL,
    ARM_TITLES,
    ARMS,
    REPORTED,
    StudyConfig,
)
from covid_keras.evaluation import intervals
from covid_keras.plots import plt  # the Agg backend, set in one place

# --- statistics --------------------------------------------------------------------------------


def _seed_values(cell: Mapping, metric: str) -> dict[int, float]:
    return {int(s): v["test"][metric] for s, v in cell["seeds"].items() if v["test"][metric] is not None}


def _arm_groups(results: Mapping, config: StudyConfig) -> dict:
    """(n, arm, ratio) -> list of cells (one per GAN seed, or one)."""
    groups: dict = {}
    for cell in results.values():
        groups.setdefault((str(cell["n"]), cell["arm"], cell["ratio"]), []).append(cell)
    return groups


def _pooled_per_seed(cells: Sequence[Mapping], metric: str) -> dict[int, float]:
    """Per classifier seed, the mean over the GAN seeds' cells (one value per seed to pair)."""
    per_seed: dict[int, list[float]] = {}
    for cell in cells:
        for seed, value in _seed_values(cell, metric).items():
            per_seed.setdefault(seed, []).append(value)
    return {seed: float(np.mean(values)) for seed, values in sorted(per_seed.items())}


def summarise(results: Mapping, config: StudyConfig) -> list[dict]:
    """One row per (n, arm, ratio): mean ± sd per metric over classifier (x GAN) seeds, a 95 %
    interval for test accuracy over seeds and test images, and paired differences against real
    only and against classic at the same n and ratio."""
    groups = _arm_groups(results, config)
    rows = []
    for (n, arm, ratio), cells in groups.items():
        row = {"n": n, "arm": arm, "ratio": ratio, "gan_seeds": [c["gan_seed"] for c in cells if c["gan_seed"] is not None],
               "rows": cells[0]["rows"], "metrics": {}}
        for metric in REPORTED:
            values = [v for c in cells for v in _seed_values(c, metric).values()]
            row["metrics"][metric] = {"mean": float(np.mean(values)) if values else None,
                                      "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                                      "n": len(values)}
        correct = [v["test_correct"] for c in cells for v in c["seeds"].values()]
        row["test_accuracy_interval"] = intervals.mean_interval(correct, shared_items=True, num_resamples=1000)
        row["paired"] = {}
        for baseline_arm, baseline_ratio in (("real", 0), ("classic", ratio)):
            baseline = groups.get((n, baseline_arm, baseline_ratio))
            if baseline is None or (baseline_arm, baseline_ratio) == (arm, ratio) or arm == "real_full_resolution":
                continue
            row["paired"][baseline_arm] = {}
            for metric in REPORTED:
                mine, theirs = _pooled_per_seed(cells, metric), _pooled_per_seed(baseline, metric)
                seeds = sorted(set(mine) & set(theirs))
                if len(seeds) >= 2:
                    row["paired"][baseline_arm][metric] = intervals.paired_difference(
                        [mine[s] for s in seeds], [theirs[s] for s in seeds])
        rows.append(row)
    order = {arm: i for i, arm in enumerate(ARMS)}
    rows.sort(key=lambda r: (_n_order(r["n"]), order[r["arm"]], r["ratio"]))
    return rows


def _n_order(n: str) -> float:
    return float("inf") if n == ALL else float(n)


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _paired_text(paired: Mapping | None) -> str:
    if not paired:
        return "–"
    mark = {"better": " (better)", "worse": " (worse)"}.get(paired["verdict"], "")
    return f"{paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]{mark}"


def results_markdown(record: Mapping) -> str:
    config = record["config"]
    lines = [
        "# Does the GAN help? The augmentation study",
        "",
        f"Data `{config['data']['config']}`; frozen {config['backbone']} at {config['image_size']} px, every image "
        f"brought down to the GAN's resolution and back inside the model (but the full-resolution row); "
        f"head recipe: lr {config['learning_rate']:g}, {config['classifier_epochs']} epochs, batch "
        f"{config['classifier_batch_size']}, the epoch of lowest validation loss kept; classifier seeds "
        f"{config['classifier_seeds']}. GAN preset `{config['gan_preset']}`, {config['gan_epochs']} epochs of "
        f"{config['epoch_images']} images at every n. Test split scored once per classifier.",
        "",
        "Test figures: mean ± sd over classifier seeds (and GAN seeds where there are several); the 95 % interval "
        "of accuracy covers seeds and test images; Δ is the paired per-seed difference with its 95 % t interval, "
        "marked better/worse only when the interval excludes 0.",
        "",
        "| n per class | arm | × | rows | test accuracy | 95 % interval | AUC | sensitivity | specificity "
        "| Δ acc vs real | Δ acc vs classic |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["summary"]:
        m = row["metrics"]
        cell = lambda k: f"{_fmt(m[k]['mean'])} ± {_fmt(m[k]['sd'])}"  # noqa: E731
        interval = row["test_accuracy_interval"]
        seeds = f" (GAN seeds {row['gan_seeds']})" if len(row["gan_seeds"]) > 1 else ""
        lines.append(
            f"| {row['n']} | {ARM_TITLES[row['arm']]}{seeds} | {row['ratio'] or ''} | {row['rows']} | {cell('accuracy')} "
            f"| [{interval['low']:.3f}, {interval['high']:.3f}] | {cell('auc')} | {cell('sensitivity')} "
            f"| {cell('specificity')} | {_paired_text(row['paired'].get('real', {}).get('accuracy'))} "
            f"| {_paired_text(row['paired'].get('classic', {}).get('accuracy'))} |"
        )
    if record.get("unfinished_cells"):
        lines += ["", f"**Not finished yet** (reported from the classifiers saved so far; the same command "
                      f"resumes): {', '.join(record['unfinished_cells'])}."]
    lines += ["", "Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in record["timings_s"].items()),
              "", f"Provenance: {json.dumps(record['provenance'])}", ""]
    return "\n".join(lines)


def save_figure(summary: Sequence[Mapping], config: StudyConfig, path: pathlib.Path) -> None:
    """Test accuracy against n for each arm at the main ratio, with 95 % bands."""
    sizes = [str(s) for s in config.sizes]
    x_of = {n: i for i, n in enumerate(sizes)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    arms = [arm for arm in ARMS if any(r["arm"] == arm for r in summary)]
    for k, arm in enumerate(arms):
        rows = sorted((r for r in summary if r["arm"] == arm and r["ratio"] in (0, config.ratio)),
                      key=lambda r: x_of[r["n"]])
        if not rows:
            continue
        # Arms side by side at each n, so their 95 % intervals do not hide each other.
        xs = [x_of[r["n"]] + 0.06 * (k - (len(arms) - 1) / 2) for r in rows]
        means = np.array([r["test_accuracy_interval"]["mean"] for r in rows])
        low = means - np.array([r["test_accuracy_interval"]["low"] for r in rows])
        high = np.array([r["test_accuracy_interval"]["high"] for r in rows]) - means
        ax.errorbar(xs, means, yerr=[low, high], marker="o", capsize=3, label=ARM_TITLES[arm])
    ax.set_xticks(range(len(sizes)), [s if s != ALL else "all" for s in sizes])
    ax.set_xlabel("real train images per class")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{config.backbone}, GAN preset {config.gan_preset}: mean and 95 % interval")
    ax.legend(fontsize=8)
    fig.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    fig.savefig(partial, dpi=120)
    plt.close(fig)
    os.replace(partial, path)

"""Evidence over GAN training seeds: one configuration's reports pooled, seed variance included.

One `gan_evidence` report scores one generator, so its intervals cover the images (samples and
held-out images) and the classifier seeds, not the training seed: a second run of the same
preset can land elsewhere. `pool_training_seeds` takes the reports of runs that differ only in
their training seed (same preset, epoch, split and protocol settings) and gives each figure
with `intervals.mean_interval`:

- fidelity (a judge's accuracy on samples): each seed has its own samples, so the images are
  resampled per seed, and the spread of the seed means is added (s^2 / k over k seeds);
- TSTR, TRTR and TSTR - TRTR: every classifier of every seed scored the same held-out images, so
  per seed the classifiers are first averaged image by image; then one shared bootstrap over
  the images plus the spread of the seed means. The difference is paired image by image within
  each seed (the same classifier seeds for both arms);
- KID and the memorisation ratio: per seed, and their mean (no interval: a handful of seeds).

With 2 seeds the seed term rests on one degree of freedom; the per-seed figures are shown beside
every pooled one so that the spread is visible. Reads evidence.json files only (no TensorFlow).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from covid_keras.evaluation import intervals
from covid_keras.formatting import interval, significant
from covid_keras.gan.config import beside_seed


def _split(report: Mapping) -> str:
    return report["splits_scored"][0]


def _same(reports: Sequence[Mapping], what: str, value) -> None:
    values = [value(r) for r in reports]
    if any(v != values[0] for v in values[1:]):
        raise ValueError(f"the reports differ in {what} ({', '.join(map(str, values))}): pool only the training "
                         "seeds of one configuration")


def check_poolable(reports: Sequence[Mapping]) -> None:
    """Refuses reports that are not training seeds of one configuration, scored alike."""
    if len(reports) < 2:
        raise ValueError(f"pooling needs the reports of at least 2 training seeds, got {len(reports)}")
    _same(reports, "the scored split", _split)
    _same(reports, "class names", lambda r: r["class_names"])
    _same(reports, "protocol settings", lambda r: {k: v for k, v in r["settings"].items() if k != "seed"})
    _same(reports, "the GAN configuration (beside its seed)", lambda r: beside_seed(r.get("run_config") or {}))
    _same(reports, "the epoch scored", lambda r: r.get("epoch"))
    if any(r.get("epoch") is None for r in reports):
        raise ValueError("a report does not record the epoch it scored (made before it was recorded): "
                         "re-run gan_evidence.py for it")
    seeds = [(r.get("run_config") or {}).get("seed") for r in reports]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"two reports share a training seed ({seeds}): pool different training seeds")
    split = _split(reports[0])
    for r in reports:
        if not any(key.startswith("tstr_") and key.endswith(f"_{split}") for key in r["items"]):
            raise ValueError(f"the report of {r.get('run_dir')} has no per-image TSTR items (made before they were "
                             "recorded): re-run gan_evidence.py for it")


def _per_image_mean(runs: Sequence[Sequence[int]]) -> np.ndarray:
    """Classifier seeds averaged image by image: one score per held-out image."""
    return np.mean(np.asarray(runs, dtype=np.float64), axis=0)


def pool_training_seeds(reports: Sequence[Mapping], seed: int = 0) -> dict:
    """The pooled figures of one configuration's training seeds (module docstring); JSON-able."""
    check_poolable(reports)
    first = reports[0]
    split, class_names = _split(first), first["class_names"]
    kinds = [k for k in first["samples"] if all(k in r["samples"] for r in reports)]
    pooled: dict = {
        "split": split, "epoch": first["epoch"], "class_names": class_names, "kinds": kinds,
        "training_seeds": [r["run_config"]["seed"] for r in reports],
        "run_dirs": [r.get("run_dir") for r in reports],
        "fidelity": {}, "real_accuracy": {}, "tstr": {}, "kid": {}, "memorisation": {},
    }
    for judge in first["fidelity"]:
        pooled["real_accuracy"][judge] = intervals.mean_interval(
            [r["items"][f"judge_{judge}_{split}"] for r in reports], shared_items=True, seed=seed)
        pooled["fidelity"][judge] = {}
        for kind in kinds:
            section = intervals.mean_interval([r["items"][f"fidelity_{judge}_{kind}"] for r in reports],
                                              shared_items=False, seed=seed)
            section["per_seed"] = [r["fidelity"][judge][kind]["mean"] for r in reports]
            section["per_class"] = {name: float(np.mean([r["fidelity"][judge][kind]["per_class"][name] for r in reports]))
                                    for name in class_names}
            pooled["fidelity"][judge][kind] = section
    trtr = [_per_image_mean(r["items"][f"tstr_trtr_{split}"]) for r in reports]
    pooled["tstr"]["trtr"] = intervals.mean_interval(trtr, shared_items=True, seed=seed)
    for kind in kinds:
        tstr = [_per_image_mean(r["items"][f"tstr_{kind}_{split}"]) for r in reports]
        pooled["tstr"][kind] = intervals.mean_interval(tstr, shared_items=True, seed=seed)
        difference = intervals.mean_interval([a - b for a, b in zip(tstr, trtr)], shared_items=True, seed=seed)
        difference["per_seed"] = [float(np.mean(a - b)) for a, b in zip(tstr, trtr)]
        pooled["tstr"][f"{kind}_minus_trtr"] = difference
        pooled["kid"][kind] = {
            name: {"per_seed": [r["kid"][f"vs_{split}"][kind]["per_class"][name]["mean"] for r in reports]}
            for name in class_names}
        for section in pooled["kid"][kind].values():
            section["mean"] = float(np.mean(section["per_seed"]))
        ratios = [r["memorisation"][kind]["ratio"] for r in reports]
        pooled["memorisation"][kind] = {"per_seed": ratios, "mean": float(np.mean(ratios)),
                                        "flagged": any(r["memorisation"][kind]["flagged"] for r in reports)}
    return pooled


def _seeds(values: Sequence[float], signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return " / ".join(f.format(v) for v in values)


def pooled_markdown(pooled: Mapping, label: str = "pooled") -> str:
    """The pooled figures as one table: a row per sample kind, the per-seed values beside each."""
    split, (first, second) = pooled["split"], pooled["class_names"][:2]
    seeds = ", ".join(map(str, pooled["training_seeds"]))
    lines = [f"{label}: GAN training seeds {seeds} at epoch {pooled['epoch']}, scored on the {split} split. "
             "95 % intervals over images and training seeds (per-seed values in brackets after them).", "",
             f"| samples | independent judge ({first} / {second}) | small-CNN judge | TSTR | TSTR minus TRTR | "
             f"KID vs {split} ({first} / {second}) | memorisation ratio |",
             "|---|---|---|---|---|---|---|"]
    real = pooled["real_accuracy"]
    lines.append(f"| real {split} | {interval(real['independent'])} | {interval(real['small_cnn'])} | "
                 f"TRTR {interval(pooled['tstr']['trtr'])} | | | |")
    for kind in pooled["kinds"]:
        independent, small = pooled["fidelity"]["independent"][kind], pooled["fidelity"]["small_cnn"][kind]
        per_class = f"{independent['per_class'][first]:.2f} / {independent['per_class'][second]:.2f}"
        difference, kid = pooled["tstr"][f"{kind}_minus_trtr"], pooled["kid"][kind]
        memo = pooled["memorisation"][kind]
        lines.append(
            f"| {kind} | {interval(independent)} ({per_class}) ({_seeds(independent['per_seed'])}) | "
            f"{interval(small)} ({_seeds(small['per_seed'])}) | {interval(pooled['tstr'][kind])} | "
            f"{interval(difference, signed=True)} ({_seeds(difference['per_seed'], True)}) | "
            f"{significant(kid[first]['mean'])} / {significant(kid[second]['mean'])} "
            f"({' / '.join(significant(v) for v in kid[first]['per_seed'])}; "
            f"{' / '.join(significant(v) for v in kid[second]['per_seed'])}) | "
            f"{memo['mean']:.2f} ({_seeds(memo['per_seed'])}){' flagged' if memo['flagged'] else ''} |")
    if len(pooled["training_seeds"]) == 2:
        lines += ["", "Two training seeds: the seed term of each interval rests on one degree of freedom."]
    return "\n".join(lines) + "\n"

"""A GAN run's kept generator snapshots, and loading a run's generator for evaluation."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    epoch: int
    path: pathlib.Path


# gan_training keeps generator snapshots as weights/generator-epoch00010.weights.h5.
SNAPSHOT_GLOB = "weights/generator-epoch*.weights.h5"
# Elsewhere: an epoch number after "epoch", "ckpt" or "checkpoint" in a file or folder name.
_EPOCH_PATTERN = re.compile(r"(?:epoch|ckpt|checkpoint)[-_]?(\d+)", re.IGNORECASE)
_NOT_WEIGHTS = (".png", ".csv", ".json", ".md", ".txt", ".log")


def list_checkpoints(run_dir: str | os.PathLike) -> list[Checkpoint]:
    """Kept generator snapshots of a GAN run, oldest first, one per epoch.

    The gan_training layout first (`weights/generator-epoch<N>.weights.h5`). Failing that, any
    name in the run folder or two levels below with an epoch number after "epoch", "ckpt" or
    "checkpoint"; where several share an epoch, the generator's (its EMA weights first) is kept.
    Resume states (`train_state-*`) are not snapshots.
    """
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"GAN run folder not found: {run_dir}")
    candidates = list(run_dir.glob(SNAPSHOT_GLOB))
    if not candidates:
        candidates = [
            path for depth in ("*", "*/*", "*/*/*") for path in run_dir.glob(depth)
            if not path.name.endswith(_NOT_WEIGHTS) and "train_state" not in path.name
        ]
    found: dict[int, list[pathlib.Path]] = {}
    for path in candidates:
        match = _EPOCH_PATTERN.search(path.name)
        if match:
            found.setdefault(int(match.group(1)), []).append(path)
    return [Checkpoint(epoch, min(paths, key=_generator_first)) for epoch, paths in sorted(found.items())]


def _generator_first(path: pathlib.Path) -> tuple:
    name = path.name.lower()
    return ("ema" not in name, "gen" not in name, "disc" in name, len(name), name)


def load_run_generator(run_dir: str | os.PathLike, which: str | int | Checkpoint = "latest"):
    """`gan_training.load_generator(run_dir, which)` -> (generator, GanConfig, class_names).

    `which`: "latest", an epoch number, or a `Checkpoint` (loaded by its epoch).
    """
    from covid_keras.gan import (
        training as gan_training,  # imported here: evaluation on arrays needs no GAN code
    )

    if isinstance(which, Checkpoint):
        which = which.epoch
    return gan_training.load_generator(run_dir, which=which)

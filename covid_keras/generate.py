"""Writing generated images as grey 8-bit PNGs in `DIR/<class>/`, the layout the `folder` data config reads.

The study saved its synthetic images with a colour map (false-colour RGB); these stay grey.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Sequence

import keras
import numpy as np
from PIL import Image

from covid_keras.gan import sampling


def _check_empty(class_dirs: Sequence[pathlib.Path]) -> None:
    for folder in class_dirs:
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(
                f"{folder} is not empty: refusing to write generated images into it (pass overwrite=True / --overwrite)"
            )


# The one place that names generated files; the experiment recognises synthetic images by it.
GENERATED_FILE_NAME = re.compile(r"(^|/)gen-s\d+-\d+\.png$")


def generated_file_name(seed: int, index: int) -> str:
    return f"gen-s{seed}-{index:05d}.png"


def write_generated(
    generator: keras.Model,
    class_names: Sequence[str],
    per_class: int,
    out_dir: str | os.PathLike,
    seed: int = 0,
    batch_size: int = 64,
    overwrite: bool = False,
    verbose: int = 1,
    image_filter: sampling.ConfidenceFilter | None = None,
) -> dict[str, int]:
    """Write `per_class` images of every class to out_dir/<class>/gen-s<seed>-NNNNN.png; return counts.

    Noise comes from numpy's generator seeded with `seed`, so a seed gives the same images again.
    Nothing is written when any class folder is non-empty, unless `overwrite`. With `image_filter`,
    only images it accepts are written (`sampling.draw`), still `per_class` of each class.
    """
    if per_class < 1 or batch_size < 1:
        raise ValueError(f"per_class and batch_size must be >= 1, got {per_class} and {batch_size}")
    out_dir = pathlib.Path(out_dir)
    class_dirs = [out_dir / name for name in class_names]
    if not overwrite:
        _check_empty(class_dirs)
    rng = np.random.default_rng(seed)
    progress = keras.utils.Progbar(per_class * len(class_names), verbose=verbose, unit_name="image")
    counts = {}
    for label, folder in enumerate(class_dirs):
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, per_class, batch_size):
            count = min(batch_size, per_class - start)
            labels = np.full((count,), label, dtype=np.int32)
            images = sampling.to_uint8(sampling.draw(generator, labels, rng, batch_size, image_filter)[0])
            for offset, image in enumerate(images):
                Image.fromarray(image[..., 0], mode="L").save(folder / generated_file_name(seed, start + offset))
            progress.add(count)
        counts[folder.name] = per_class
    return counts

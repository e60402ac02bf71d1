"""What a reader needs to place a result: package versions, the git commit, the CPU, its load and any GPU."""

from __future__ import annotations

import os
import pathlib
import platform
import subprocess

import keras
import numpy as np
import tensorflow as tf

from covid_keras import runtime

# The instructions that decide this package's speed on a CPU (see covid_keras.runtime).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def provenance() -> dict:
    """Package versions, git commit, CPU (model, speed-relevant flags), load, GPUs and the precision
    "auto" picks per use here: what a reader needs to place the timings."""
    cpu = runtime.cpu_model() or platform.processor() or platform.machine()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=pathlib.Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__, "cpu": cpu,
            "cpu_flags": [flag for flag in SPEED_FLAGS if flag in runtime.cpu_flags()],
            "cpus": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "git_commit": commit, "gpus": len(tf.config.list_physical_devices("GPU")),
            # What "auto" chooses here per use, and why (a run's own choice is in its config.json).
            "precision_auto": {use: runtime.choose_precision(use)._asdict() for use in runtime.USES}}

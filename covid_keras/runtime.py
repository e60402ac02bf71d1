"""Numeric precision and XLA for training: the switches, and their defaults per device kind.

The defaults are the fastest measured settings (python -m bench; bench/gpu_check.sh on a GPU):

- CPU (2-core AMD EPYC, no AVX512-BF16): float32, no XLA. mixed_bfloat16 ran at 0.24x the
  float32 speed and XLA's jit_compile about 5x slower (bench/gan_speedups.py). On an Intel Xeon
  with AMX, mixed_bfloat16 ran at 1.45x float32 (bench/gan_vs_torch.py); float32 stays the
  default until a full run shows what bfloat16 does to the samples.
- GPU: mixed_float16 with loss scaling, no XLA. Not yet measured by this project (no GPU was
  lent); tensor cores make float16 convolutions the usual winner. bench/gpu_check.sh measures
  all four combinations; change the table when it disagrees.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DEFAULTS = {
    "CPU": {"precision": "float32", "jit_compile": False},
    "GPU": {"precision": "mixed_float16", "jit_compile": False},
}


def device_kind() -> str:
    """"GPU" when TensorFlow sees one, else "CPU"."""
    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


def resolve(precision: str = "auto", jit_compile: bool | str = "auto") -> tuple[str, bool]:
    """(precision policy name, jit_compile) with "auto" replaced by this device kind's default."""
    defaults = DEFAULTS[device_kind()]
    if precision == "auto":
        precision = defaults["precision"]
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto' or one of {PRECISIONS}, got {precision!r}")
    if jit_compile == "auto":
        jit_compile = defaults["jit_compile"]
    if not isinstance(jit_compile, bool):
        raise ValueError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}")
    return precision, jit_compile


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Build models under the dtype policy `name`; the previous global policy comes back after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def loss_scaled(optimizer: keras.optimizers.Optimizer, precision: str) -> keras.optimizers.Optimizer:
    """`optimizer` wrapped in dynamic loss scaling for float16 (whose small gradients underflow), else itself."""
    if precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

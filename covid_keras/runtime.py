"""Numeric precision and XLA: the switches, and their defaults per use and per processor.

One table (`DEFAULTS`) holds the defaults: a row per kind of hardware, a column per use.
`choose_precision(use, requested)` answers with the precision and why; an explicit request
wins, then the environment variable COVID_KERAS_PRECISION, then the table.

Uses:

- "features": frozen-backbone feature extraction (`classifier.FeatureExtractor`).
- "head": the classifier's head. Always float32: it is tiny, so lower precision saves nothing.
- "gan": GAN training (`gan.training.train_gan`).
- "export": SavedModels. Always float32 at inputs and outputs, and saved classifiers carry a
  float32 backbone, so a model trained on a bfloat16 CPU serves on any CPU.

Rows, and what was measured (python -m bench; bench/gpu_check.sh on a GPU):

- CPU with bfloat16 instructions (`amx_bf16` or `avx512_bf16` in /proc/cpuinfo): mixed_bfloat16
  for features and the GAN. Measured (`python -m bench.feature_precision`, docs/results.md): on a
  2-core AMD EPYC Zen 4 (avx512_bf16, no AMX) VGG16 features ran 1.99x and ResNet50 1.45x faster
  than float32 at 150 and 224 px, and classifiers trained on them score as on float32 features
  (`python -m bench.precision_accuracy`); the GAN step ran about 1.5x faster (`projected`, `guided`
  at 64 px) and a `guided` run's evidence moved by less than a second seed moves it. Not measured:
  any AMX Xeon; COVID_KERAS_PRECISION=float32 restores the old default.
- CPU without them (e.g. an AVX2-only AMD EPYC): float32. There bfloat16 is emulated: VGG16
  224 px features ran about 8x slower than float32 and the GAN step at 0.12x-0.24x its float32
  speed; XLA's jit_compile was about 5x slower (bench/gan_speedups.py).
- GPU: mixed_float16 with loss scaling, no XLA. Not yet measured by this project (no GPU was
  lent); tensor cores make float16 convolutions the usual winner. bench/gpu_check.sh measures
  all four combinations; change the table when it disagrees.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterable, Iterator, NamedTuple

import keras
import tensorflow as tf

from covid_keras.choices import PRECISIONS

USES = ("features", "head", "gan", "export")
ENV_VAR = "COVID_KERAS_PRECISION"
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # either gives the CPU native bfloat16 arithmetic
FIXED_USES = ("head", "export")  # float32 whatever is requested for the heavy uses

# Hardware row -> use -> default; jit_compile is the GAN train step's.
DEFAULTS = {
    "GPU": {"features": "mixed_float16", "head": "float32", "gan": "mixed_float16", "export": "float32",
            "jit_compile": False},
    "CPU_BF16": {"features": "mixed_bfloat16", "head": "float32", "gan": "mixed_bfloat16", "export": "float32",
                 "jit_compile": False},
    "CPU": {"features": "float32", "head": "float32", "gan": "float32", "export": "float32", "jit_compile": False},
}


class PrecisionChoice(NamedTuple):
    precision: str  # a Keras dtype policy name, one of PRECISIONS
    reason: str  # e.g. "auto: CPU has avx512_bf16", "COVID_KERAS_PRECISION=float32"
    source: str  # "argument", "environment", "auto" or "fixed" (head and export)


def device_kind() -> str:
    """"GPU" when TensorFlow sees one, else "CPU"."""
    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; ("", {}) where there is none."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:  # not Linux: no flags, so float32 (the safe answer)
        pass
    return model, flags


def cpu_flags() -> frozenset[str]:
    """The processor's feature flags (/proc/cpuinfo, read once per process)."""
    return _cpuinfo()[1]


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo), or "" where unknown."""
    return _cpuinfo()[0]


def hardware(flags: Iterable[str] | None = None, device: str | None = None) -> tuple[str, str]:
    """(row of DEFAULTS, why) for this machine; `flags` and `device` replace what it reads (tests)."""
    device = device or device_kind()
    if device == "GPU":
        return "GPU", "auto: GPU (mixed_float16 not yet measured)"
    flags = cpu_flags() if flags is None else frozenset(flags)
    found = [flag for flag in BF16_FLAGS if flag in flags]
    if found:
        return "CPU_BF16", f"auto: CPU has {'+'.join(found)}"
    return "CPU", f"auto: CPU lacks {'/'.join(reversed(BF16_FLAGS))}"


def _checked(value: str, name: str) -> str:
    if value != "auto" and value not in PRECISIONS:
        raise ValueError(f"{name} must be 'auto' or one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


def choose_precision(
    use: str,
    requested: str = "auto",
    *,
    requested_by: str = "precision",
    cpu_flags: Iterable[str] | None = None,
    device: str | None = None,
    environ: dict | None = None,
) -> PrecisionChoice:
    """The precision for `use` (one of USES), and why.

    `requested` (named `requested_by` in errors, e.g. "--precision") wins unless "auto"; then the
    environment variable COVID_KERAS_PRECISION unless unset or "auto"; then `DEFAULTS` for this
    hardware. "head" and "export" are float32 whatever the environment says; requesting another
    precision for them is an error. `cpu_flags`, `device` and `environ` replace what the machine
    says (tests).
    """
    if use not in USES:
        raise ValueError(f"use must be one of {', '.join(USES)}, got {use!r}")
    requested = _checked(requested, requested_by)
    if use in FIXED_USES:
        if requested not in ("auto", "float32"):
            raise ValueError(f"{requested_by}: the {use} is always float32, got {requested!r}")
        return PrecisionChoice("float32", f"{use}: always float32", "fixed")
    if requested != "auto":
        return PrecisionChoice(requested, f"{requested_by} {requested}", "argument")
    from_env = _checked((os.environ if environ is None else environ).get(ENV_VAR, "auto").strip() or "auto", ENV_VAR)
    if from_env != "auto":
        return PrecisionChoice(from_env, f"{ENV_VAR}={from_env}", "environment")
    row, reason = hardware(cpu_flags, device)
    return PrecisionChoice(DEFAULTS[row][use], reason, "auto")


def resolve(precision: str = "auto", jit_compile: bool | str = "auto", use: str = "gan") -> tuple[str, bool]:
    """(precision policy name, jit_compile) with "auto" replaced by this machine's default for `use`."""
    precision = choose_precision(use, precision).precision
    if jit_compile == "auto":
        jit_compile = DEFAULTS[hardware()[0]]["jit_compile"]
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

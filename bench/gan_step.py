#!/usr/bin/env python
"""Throughput of the study's run-3 GAN training step (150 px, batch 8, K = 10) on CPU; prints one JSON object.

    python bench/gan_step.py            # tf.function
    python bench/gan_step.py --jit      # XLA jit_compile

images/s counts real images consumed by `ConditionalGAN.train_step` over whole K-step cycles (K - 1
generator-only steps and one generator + discriminator step). The G and D shares come from timing
the two halves of the step separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from covid_keras.gan import presets as gan_presets
from covid_keras.gan import training as gan_training


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jit", action="store_true", help="compile the step with XLA (jit_compile=True)")
    parser.add_argument("--run", default="3", help="GAN preset (default 3)")
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--d-every", type=int, default=10, help="K")
    parser.add_argument("--cycles", type=int, default=1, help="timed K-step cycles (default 1)")
    parser.add_argument("--gpu", action="store_true", help="allow a GPU (default: CPU only)")
    return parser.parse_args()


def _timed(fn, repeats: int) -> float:
    """Mean seconds per call, the result fetched so the work is really done."""
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    _ = [float(v) for v in (result.values() if isinstance(result, dict) else [result[0]])]
    return (time.perf_counter() - start) / repeats


def main() -> None:
    args = parse_args()
    if not args.gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    

    config = gan_presets.from_preset(args.run, image_size=args.image_size, batch_size=args.batch_size, d_every=args.d_every)
    keras.utils.set_random_seed(0)
    model = gan_training.build_gan(config, steps_per_epoch=100, jit_compile=args.jit)
    rng = np.random.default_rng(0)
    size, batch = config.image_size, config.batch_size
    images = tf.constant(rng.uniform(-1, 1, (batch, size, size, 1)).astype("float32"))
    labels = tf.constant(rng.integers(0, config.num_classes, batch).astype("int32"))
    noise = tf.constant(rng.standard_normal((batch, config.noise_dim)).astype("float32"))

    train_step = tf.function(lambda: model.train_step((images, labels)), jit_compile=args.jit)
    step = tf.constant(0, tf.int64)
    seeds = model._augment_seeds(step)
    g_step = tf.function(lambda: model._generator_step(noise, labels, images, labels, seeds[0], step), jit_compile=args.jit)
    d_step = tf.function(
        lambda: model._discriminator_step(images, labels, images, labels, seeds), jit_compile=args.jit
    )

    start = time.perf_counter()
    _timed(train_step, config.d_every)  # compile, one whole cycle
    _timed(g_step, 1)
    _timed(d_step, 1)
    warmup_s = time.perf_counter() - start

    steps = args.cycles * config.d_every
    step_s = _timed(train_step, steps)
    g_s = _timed(g_step, 3)
    d_s = _timed(d_step, 2)
    d_per_step = d_s / config.d_every
    print(json.dumps({
        "benchmark": "gan_train_step",
        "run": args.run,
        "image_size": size,
        "batch_size": batch,
        "d_every": config.d_every,
        "jit_compile": args.jit,
        "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
        "cpu_count": os.cpu_count(),
        "timed_steps": steps,
        "images_per_second": round(batch / step_s, 2),
        "ms_per_step": round(1000 * step_s, 1),
        "generator_step_ms": round(1000 * g_s, 1),
        "discriminator_step_ms": round(1000 * d_s, 1),
        "discriminator_time_share": round(d_per_step / (g_s + d_per_step), 3),
        "warmup_s": round(warmup_s, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Frozen-backbone feature extraction speed, float32 vs mixed_bfloat16, per backbone and image size.

    python -m bench.feature_precision                      # vgg16 and resnet50, 150 and 224 px, 64 images
    python -m bench.feature_precision --quick              # vgg16 at 150 px, 16 images (python -m bench)
    python -m bench.feature_precision --backbones vgg16 --sizes 224 --images 128 --rounds 3

Times `FeatureExtractor.extract`, the call the classifier commands make, on random preprocessed
images (weights=None: the cost does not depend on the weights' values). Each model is built and
warmed up first; the rounds then take turns over the models, so drifting load hits all of them,
and the median round counts. Prints one JSON object: images/s per backbone, size and precision,
the bfloat16 speed-up, the CPU's model and its bfloat16-related flags, what
`runtime.choose_precision("features")` answers here, and the 1-minute load average before and
after (a busy machine makes every figure low; measure on idle cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from covid_keras import backbones, runtime
from covid_keras.classifier import FEATURE_BATCH_SIZE, FeatureExtractor

REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def machine() -> dict:
    flags = runtime.cpu_flags()
    choice = runtime.choose_precision("features")
    return {
        "cpu": runtime.cpu_model(),
        "cores": os.cpu_count(),
        "flags": {flag: flag in flags for flag in REPORTED_FLAGS},
        "auto_features_precision": {"precision": choice.precision, "reason": choice.reason},
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def batches_of(backbone: str, size: int, images: int, batch_size: int) -> list:
    rgb = np.random.default_rng(0).uniform(0, 255, (images, size, size, 3)).astype(np.float32)
    preprocessed = backbones.get_backbone_spec(backbone).preprocess(rgb)
    labels = np.zeros(images, np.float32)
    return [(preprocessed[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, images, batch_size)]


def measure(cells: list[tuple[str, int, str]], images: int, batch_size: int, rounds: int) -> dict:
    """(backbone, size, precision) -> {"images_per_s": median over rounds, "rounds": [...]}."""
    models, inputs = {}, {}
    for backbone, size, precision in cells:
        extractor = FeatureExtractor(backbone, size, weights=None, precision=precision)
        batch = batches_of(backbone, size, images, batch_size)
        extractor.extract(batch[:1], verbose=0)  # warm-up: graph tracing and oneDNN's first-call setup
        models[backbone, size, precision], inputs[backbone, size] = extractor, batch
    timings = {cell: [] for cell in cells}
    for _ in range(rounds):
        for cell in cells:
            start = time.perf_counter()
            models[cell].extract(inputs[cell[:2]], verbose=0)
            timings[cell].append(images / (time.perf_counter() - start))
    return {cell: {"images_per_s": round(statistics.median(values), 2), "rounds": [round(v, 2) for v in values]}
            for cell, values in timings.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="vgg16,resnet50", help="comma-separated (default vgg16,resnet50)")
    parser.add_argument("--sizes", default="150,224", help="comma-separated image sides in px (default 150,224)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16", help="comma-separated dtype policies")
    parser.add_argument("--images", type=int, default=64, help="images per round (default 64)")
    parser.add_argument("--batch-size", type=int, default=FEATURE_BATCH_SIZE)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="vgg16 at 150 px, 16 images, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.backbones, args.sizes, args.images, args.rounds = "vgg16", "150", 16, 1
    names = [b.strip() for b in args.backbones.split(",") if b.strip()]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    for precision in precisions:
        if precision not in runtime.PRECISIONS:
            parser.error(f"--precisions: unknown {precision!r}; choose from {', '.join(runtime.PRECISIONS)}")

    load_before = os.getloadavg()[0]
    cells = [(b, s, p) for b in names for s in sizes for p in precisions]
    measured = measure(cells, args.images, args.batch_size, args.rounds)
    results: dict = {}
    for (backbone, size, precision), figures in measured.items():
        results.setdefault(backbone, {}).setdefault(f"{size}px", {})[precision] = figures
    speedup = {
        backbone: {size: round(by_precision["mixed_bfloat16"]["images_per_s"] / by_precision["float32"]["images_per_s"], 2)
                   for size, by_precision in by_size.items() if {"float32", "mixed_bfloat16"} <= set(by_precision)}
        for backbone, by_size in results.items()
    }
    result = {
        "benchmark": "backbone features: images/s per backbone, size and precision",
        "images": args.images,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "results": results,
        "bf16_speedup": speedup,
        "machine": machine(),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result))  # one line: python -m bench reads the last JSON line
    return result


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Head training time: cached backbone features vs. running the frozen backbone every epoch.

    python bench/classifier_features.py [--backbone vgg16] [--images 64] [--image-size 150] [--epochs 3]

Both ways train the same head (same seed, weights=None: the cost does not depend on the
weights' values) on synthetic phantom-like grey images. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

from covid_keras import classifier, data
from covid_keras.classifier import ClassifierConfig, FeatureExtractor


def synthetic_examples(count: int, size: int, seed: int = 0) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    base = np.where(labels[:, None, None, None] == 1, 150, 60)
    images = np.clip(base + rng.integers(0, 80, (count, size, size, 1)), 0, 255).astype(np.uint8)
    names = [f"bench_{i}.png" for i in range(count)]
    return tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": labels.astype(np.int64), "file_name": tf.constant(names)}
    )


def time_cached(config: ClassifierConfig, examples: tf.data.Dataset) -> dict:
    keras.utils.set_random_seed(config.seed)
    extractor = FeatureExtractor(config.backbone, config.image_size, config.weights)
    start = time.perf_counter()
    features = extractor.features(examples, verbose=0)
    extracted = time.perf_counter()
    head = classifier.build_head(extractor.feature_shape)
    classifier.train_head(head, config, features, verbose=0)
    done = time.perf_counter()
    return {"extract_s": extracted - start, "head_fit_s": done - extracted, "total_s": done - start}


def time_recomputed(config: ClassifierConfig, examples: tf.data.Dataset) -> dict:
    keras.utils.set_random_seed(config.seed)
    extractor = FeatureExtractor(config.backbone, config.image_size, config.weights)
    model = classifier.assemble_classifier(extractor, classifier.build_head(extractor.feature_shape))
    classifier.compile_for_training(model, config.optimizer, config.head_learning_rate)
    batches = data.classifier_dataset(examples, config.backbone, config.image_size, config.batch_size, shuffle=True)
    start = time.perf_counter()
    model.fit(batches, epochs=config.epochs, shuffle=False, verbose=0)
    return {"total_s": time.perf_counter() - start}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--source-size", type=int, default=160, help="side of the synthetic grey images")
    parser.add_argument("--image-size", type=int, default=classifier.STUDY_IMAGE_SIZE)
    parser.add_argument("--epochs", type=int, default=classifier.STUDY_EPOCHS)
    parser.add_argument("--batch-size", type=int, default=classifier.STUDY_BATCH_SIZE)
    args = parser.parse_args(argv)

    config = ClassifierConfig(
        args.backbone, weights=None, image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size
    )
    examples = synthetic_examples(args.images, args.source_size).cache()
    cached = time_cached(config, examples)
    recomputed = time_recomputed(config, examples)
    result = {
        "benchmark": "classifier head training: cached features vs backbone every epoch",
        "backbone": args.backbone,
        "images": args.images,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "cached_features": {k: round(v, 3) for k, v in cached.items()},
        "backbone_every_epoch": {k: round(v, 3) for k, v in recomputed.items()},
        "speedup_total": round(recomputed["total_s"] / cached["total_s"], 2),
        "speedup_head_fit": round(recomputed["total_s"] / cached["head_fit_s"], 2),
        "machine": {"cpu_count": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU")),
                    "platform": platform.platform()},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    print(json.dumps(result))  # one line: python -m bench reads the last JSON line
    return result


if __name__ == "__main__":
    main()

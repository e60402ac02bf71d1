"""Benchmark: inference latency and throughput of an exported classifier SavedModel.

Measures, in this process (no TF Serving container: that adds its own RPC overhead), the
`serving_default` signature (encoded PNG files: decoding, resizing and preprocess in the graph):
per-image latency p50/p99 at batch 1, and images/s at batch 32. Also times `predict_images`
(decoded float images) at batch 1, which shows what the in-graph PNG decode costs.

Without --model-dir it exports a fresh classifier (backbone + the study's head, random weights:
speed does not depend on the weights) through `covid_keras.export.export_classifier` into a
temporary folder. Prints one JSON object.

  python -m bench.serving_latency                          # VGG16 at 150 px
  python -m bench.serving_latency --model-dir saved_models/vgg16/1
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from covid_keras import classifier, export  # noqa: E402


def export_test_classifier(backbone: str, image_size: int, base_dir: str) -> pathlib.Path:
    extractor = classifier.FeatureExtractor(backbone, image_size, weights=None)
    head = classifier.build_head(extractor.feature_shape)
    model = classifier.assemble_classifier(extractor, head)
    result = export.export_classifier(
        model, backbone=backbone, image_size=image_size, name=f"bench_{backbone}", base_dir=base_dir,
        metadata={"purpose": "latency benchmark, random weights"},
    )
    return result.path


def png_bytes(rng: np.random.Generator, size: int) -> bytes:
    """A grey chest-X-ray-sized PNG (299 px, like the Kaggle files)."""
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def call_times(function, argument, calls: int) -> list[float]:
    function(argument)  # warm-up: first call traces/initialises
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        outputs = function(argument)
        np.asarray(outputs["covid_probability"])  # waits for the result
        times.append(time.perf_counter() - start)
    return times


def latency_ms(times: list[float]) -> dict:
    ms = 1000 * np.asarray(times)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "calls": len(times)}


def measure(model_dir: pathlib.Path, args) -> dict:
    loaded = tf.saved_model.load(str(model_dir))
    files = loaded.signatures[export.CLASSIFY_FILES]
    images = loaded.signatures[export.CLASSIFY_IMAGES]
    rng = np.random.default_rng(0)
    one_file = tf.constant([png_bytes(rng, args.source_size)])
    one_image = tf.constant(rng.uniform(0, 255, (1, args.source_size, args.source_size, 1)).astype("float32"))
    batch_files = tf.constant([png_bytes(rng, args.source_size) for _ in range(args.batch_size)])

    call_files = lambda x: files(image_bytes=x)  # noqa: E731
    batch_times = call_times(call_files, batch_files, args.batch_calls)
    return {
        "batch_1_png": latency_ms(call_times(call_files, one_file, args.calls)),
        "batch_1_decoded": latency_ms(call_times(lambda x: images(images=x), one_image, args.calls)),
        f"batch_{args.batch_size}_png": {
            "images_per_s": round(args.batch_size / float(np.median(batch_times)), 2),
            "per_image_ms": round(1000 * float(np.median(batch_times)) / args.batch_size, 2),
            "calls": len(batch_times),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="an exported classifier version folder (default: export a fresh one)")
    parser.add_argument("--backbone", default="vgg16", help="backbone of the fresh export (default vgg16)")
    parser.add_argument("--image-size", type=int, default=150, help="model input side (default 150)")
    parser.add_argument("--source-size", type=int, default=299, help="side of the PNGs sent (default 299)")
    parser.add_argument("--calls", type=int, default=30, help="timed batch-1 calls (default 30)")
    parser.add_argument("--batch-size", type=int, default=32, help="throughput batch (default 32)")
    parser.add_argument("--batch-calls", type=int, default=3, help="timed throughput calls (default 3)")
    args = parser.parse_args()

    start, load_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_dir:
            model_dir, described = pathlib.Path(args.model_dir), args.model_dir
            if not (model_dir / "saved_model.pb").exists():
                parser.error(f"{model_dir} is not a SavedModel version folder (no saved_model.pb)")
        else:
            model_dir, described = export_test_classifier(args.backbone, args.image_size, tmp), "fresh export"
        results = measure(model_dir, args)
    print(json.dumps({
        "benchmark": "serving_latency",
        "model": described,
        "backbone": None if args.model_dir else args.backbone,
        "image_size": args.image_size,
        "source_png_size": args.source_size,
        **results,
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.perf_counter() - start, 1),
    }))


if __name__ == "__main__":
    main()

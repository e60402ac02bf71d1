"""Benchmark: tf.data throughput of the GAN and classifier pipelines (images/s, steady state).

Warm-up is one full epoch (it also fills the cache); then `--epochs` epochs are timed. The
uncached GAN figure decodes and resizes every image each epoch (what a dataset too big to cache costs).
Prints one JSON object, e.g.
{"data": "phantom_small", "split": "train", "images": 120, "image_size": 150, "batch_size": 8,
 "gan_images_per_s": ..., "gan_uncached_images_per_s": ..., "classifier_images_per_s": ..., ...}
"""

import argparse
import json
import time

import tensorflow as tf

from covid_keras import data


def images_per_second(ds: tf.data.Dataset, epochs: int) -> tuple[float, int]:
    for _ in ds:  # warm-up epoch: fills caches, starts the prefetch threads
        pass
    count = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for images, _labels in ds:
            count += int(images.shape[0])
    return count / (time.perf_counter() - start), count // epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=data.CONFIGS, default="phantom_small", help="covid_xray config (default phantom_small)")
    parser.add_argument("--manual-dir", default=None, help="manual dir (radiography*) or root (folder)")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir (default: TFDS's)")
    parser.add_argument("--split", default="train", help="split to read (default train)")
    parser.add_argument("--image-size", type=int, default=150, help="pipeline image side (default 150, the study's)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size (default 8, the study's)")
    parser.add_argument("--backbone", default="vgg16", help="classifier pipeline's backbone preprocess (default vgg16)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up (default 3)")
    args = parser.parse_args()

    spec = data.DataSpec.parse(args.data, args.manual_dir, args.data_dir)
    split = data.load_split(spec, args.split)
    size, batch = args.image_size, args.batch_size
    gan, images = images_per_second(data.gan_dataset(split, size, batch), args.epochs)
    gan_uncached, _ = images_per_second(data.gan_dataset(split, size, batch, cache=False), args.epochs)
    classifier, _ = images_per_second(
        data.classifier_dataset(split, args.backbone, size, batch, shuffle=True), args.epochs
    )
    print(json.dumps({
        "data": args.data,
        "split": args.split,
        "images": images,
        "image_size": size,
        "batch_size": batch,
        "epochs_timed": args.epochs,
        "gan_images_per_s": round(gan, 1),
        "gan_uncached_images_per_s": round(gan_uncached, 1),
        "classifier_backbone": args.backbone,
        "classifier_images_per_s": round(classifier, 1),
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Probe: does the independent judge call soft images COVID? (docs/results.md, issue #30)

The independent judge of `evaluation.evidence` (frozen exact ImageNet VGG16, a head on real train images
at the GAN's 64 px) scores real validation images blurred by Gaussians of growing sigma; beside
it, the sharpness (`evaluation.diagnostics.sharpness`) of those images and of a GAN run's samples,
so the blur at which real images are as soft as the samples can be read off.

    python experiments/judge_under_blur.py --data radiography --data-path ../shared/data/radiography \\
        --weights-dir weights --run-dir runs/augment-study/gans/nall-seed0 --run-dir runs/per_class-s0-111

Validation split only (the test split is not loaded). Prints a Markdown table and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--data-path")
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--run-dir", action="append", default=[], help="GAN runs whose samples' sharpness to show")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--per-class", type=int, default=500, help="samples per class per run")
    args = parser.parse_args(argv)

    import numpy as np

    from covid_keras import data
    from covid_keras.evaluation import diagnostics
    from covid_keras.evaluation.images import balanced_labels, load_real_splits
    from covid_keras.gan import sampling
    from covid_keras.gan import training as gan_training
    from covid_keras.evaluation.imagenet_judge import ImagenetJudge

    spec = data.DataSpec.parse(args.data, args.data_path, None)
    real = load_real_splits(spec, 64, ("train", "validation"))
    train, validation = real["train"], real["validation"]
    judge = ImagenetJudge.build("vgg16", 2, 128, weights_dir=args.weights_dir, seed=0)
    judge.fit(train.images, train.labels, validation.images, validation.labels)
    names = data.class_names(spec)

    print(f"| images | sharpness | judge accuracy | mean P({names[1]}), {names[0]} images | mean P({names[1]}), {names[1]} images |")
    print("|---|---|---|---|---|")
    for sigma in args.sigmas:
        blurred = diagnostics.gaussian_blur(validation.images, sigma)
        p = judge.predict_probabilities(blurred)[:, 1]
        accuracy = float(np.mean((p >= 0.5) == (validation.labels == 1)))
        print(f"| real validation, blur sigma {sigma:g} px | {diagnostics.sharpness(blurred):.2f} | {accuracy:.3f} | "
              f"{p[validation.labels == 0].mean():.3f} | {p[validation.labels == 1].mean():.3f} |")
    for run_dir in args.run_dir:
        generator, _, _ = gan_training.load_generator(run_dir)
        labels = balanced_labels(2, args.per_class)
        images, _ = sampling.draw(generator, labels, np.random.default_rng(0))
        images = sampling.to_uint8(images)
        p = judge.predict_probabilities(images)[:, 1]
        accuracy = float(np.mean((p >= 0.5) == (labels == 1)))
        print(f"| samples of {run_dir} | {diagnostics.sharpness(images):.2f} | {accuracy:.3f} | "
              f"{p[labels == 0].mean():.3f} | {p[labels == 1].mean():.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Is a classifier head worth training across workers? The study's head (a Dense layer on cached
backbone features) fitted three times, timed, in one process and on two workers.

    python experiments/head_across_workers.py --strategy one
    scripts/launch_local_workers.sh 2 -- python experiments/head_across_workers.py --strategy multi-worker

Features are random (96 train and 40 validation rows of VGG16's 1x1x512 at 48 px), the recipe the
quick study's: batch 8, lr 1e-4, `best_validation`, --epochs epochs (default 3). Prints one line
per head: seconds to build, fit and predict. The answer decides whether `AugmentationStudy`
distributes its heads (it does not: docs/distributed.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from covid_keras import choices, distribute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", choices=choices.STRATEGIES, default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--heads", type=int, default=3)
    args = parser.parse_args()
    strategy = distribute.choose_strategy(args.strategy)  # before any other TensorFlow op

    import keras

    from covid_keras import classifier

    rng = np.random.default_rng(0)
    train = classifier.FeatureSet(rng.normal(size=(96, 1, 1, 512)).astype("float32"),
                                  (np.arange(96) % 2).astype("float32"))
    validation = classifier.FeatureSet(rng.normal(size=(40, 1, 1, 512)).astype("float32"),
                                       (np.arange(40) % 2).astype("float32"))
    config = classifier.ClassifierConfig("vgg16", weights=None, image_size=48, epochs=args.epochs, batch_size=8,
                                         learning_rate=1e-4, keep_epoch="best_validation")
    for index in range(args.heads):
        started = time.perf_counter()
        keras.utils.set_random_seed(index)
        with strategy.scope():
            head = classifier.build_head((1, 1, 512))
        built = time.perf_counter()
        classifier.train_head(head, config, train, validation, verbose=0, strategy=strategy)
        fitted = time.perf_counter()
        head.predict(validation.features, verbose=0)
        print(f"{distribute.worker_count(strategy)} worker(s), head {index}: build {built - started:.2f} s, "
              f"fit {fitted - built:.2f} s, predict {time.perf_counter() - fitted:.2f} s", flush=True)


if __name__ == "__main__":
    main()

"""Search the classifier head's learning rate and optimizer with KerasTuner, on cached features.

    python scripts/tune_classifier.py --backbone vgg16 --data radiography \\
        --manual-dir ../shared/data/radiography --weights ../weights --trials 10 --out runs/tune_vgg16

Backbone features of the train and validation splits are computed once; each trial trains
only the head. Writes OUT/best_hyperparameters.json (read by train_classifier.py
--hyperparameters and by the experiment), OUT/trials.json and KerasTuner's state. A non-empty
OUT (an earlier search) is refused unless --overwrite; OUT appears only once the search is done.
"""

from __future__ import annotations

import argparse
import json

from covid_keras import choices, cli  # no TensorFlow before the arguments are parsed
from covid_keras.commands import train_classifier


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True, choices=sorted(choices.BACKBONE_NAMES))
    cli.add_data_arguments(parser, default="phantom")
    parser.add_argument("--balanced", action="store_true", help="equal classes per split, as the study did")
    parser.add_argument("--weights", default="imagenet", help="imagenet, a weights FILE, a weights DIR, or none")
    parser.add_argument("--image-size", type=cli.positive_int, default=choices.STUDY_IMAGE_SIZE)
    parser.add_argument("--epochs", type=cli.positive_int, default=choices.STUDY_EPOCHS, help="epochs per trial")
    parser.add_argument("--batch-size", type=cli.positive_int, default=choices.STUDY_BATCH_SIZE)
    parser.add_argument("--trials", type=cli.positive_int, default=10)
    parser.add_argument("--tuner", default="random", choices=choices.TUNERS,
                        help="bayesian needs keras-tuner[bayesian] (scikit-learn, scipy)")
    parser.add_argument("--objective", default="val_auc", choices=sorted(choices.OBJECTIVE_DIRECTIONS))
    parser.add_argument("--min-learning-rate", type=cli.positive_float, default=choices.LEARNING_RATE_RANGE[0])
    parser.add_argument("--max-learning-rate", type=cli.positive_float, default=choices.LEARNING_RATE_RANGE[1])
    parser.add_argument("--optimizers", nargs="+", default=list(choices.CLASSIFIER_OPTIMIZERS),
                        choices=sorted(choices.CLASSIFIER_OPTIMIZERS))
    parser.add_argument("--feature-cache", help="folder to keep backbone features in between runs")
    train_classifier.add_precision_argument(parser)
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    parser.add_argument("--out", required=True, help="output folder (refused when not empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new search is done")
    parser.declare_paths(inputs=("--data-path", "--data-dir", "--weights", "--feature-cache"), outputs=("--out",))
    args = parser.parse_args(argv)
    train_classifier.check_image_size(parser, args)
    if not 0 < args.min_learning_rate < args.max_learning_rate:
        parser.error(f"--min-learning-rate {args.min_learning_rate} and --max-learning-rate "
                     f"{args.max_learning_rate} must satisfy 0 < min < max")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from covid_keras import classifier, data, tuning

    out = cli.OutputFolder(args.out, args.overwrite)  # before any data is read
    spec = data.DataSpec.parse(args.data, args.data_path, args.data_dir)
    config = classifier.ClassifierConfig(
        backbone=args.backbone,
        weights=None if args.weights.lower() == "none" else args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        feature_precision=train_classifier.feature_precision(args).precision,
    )
    train = data.load_split(spec, "train", balanced=args.balanced)
    validation = data.load_split(spec, "validation", balanced=args.balanced)
    with out.writing() as folder:
        result = tuning.tune_classifier(
            config,
            train,
            validation,
            folder,
            trials=args.trials,
            tuner=args.tuner,
            objective=args.objective,
            cache=classifier.FeatureCache(args.feature_cache) if args.feature_cache else None,
            learning_rate_range=(args.min_learning_rate, args.max_learning_rate),
            optimizers=args.optimizers,
        )
    print(json.dumps(result["best"], indent=2))
    return result


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

"""Train one frozen-backbone COVID vs Normal classifier and save it with its metrics.

    python scripts/train_classifier.py --backbone vgg16 --data radiography \\
        --manual-dir ../shared/data/radiography --weights ../weights --out runs/clf_vgg16

Defaults are the study's presets (Adam, the backbone's study learning rate, 3 epochs, batch 8,
150 px). Backbone features are computed once per split (cached under --feature-cache when
given) and only the head is trained on them; --fine-tune N then also trains the top N layers
of the backbone. Writes OUT/model.keras, OUT/classifier.json (backbone, weights and their
sha256, training settings, metrics per split) and OUT/roc.png, and prints the metrics as JSON.
A non-empty OUT is refused unless --overwrite; OUT appears only once the model is saved whole.

Several machines (the head on cached features): the same command on each with its TF_CONFIG
(docs/distributed.md). --batch-size is the global batch; only the chief writes OUT; the head is
backed up every epoch beside OUT (.OUT.backup), so rerunning every worker resumes a killed run.
"""

from __future__ import annotations

import argparse
import json
import sys

from typing import TYPE_CHECKING

from covid_keras import choices, cli  # no TensorFlow before the arguments are parsed
from covid_keras.commands.strategy_option import add_strategy_argument, chosen_strategy

if TYPE_CHECKING:
    from covid_keras import data, runtime


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True, choices=sorted(choices.BACKBONE_NAMES))
    cli.add_data_arguments(parser, required=True)
    parser.add_argument("--balanced", action="store_true",
                        help="downsample each split to equal classes, as the study did")
    parser.add_argument("--weights", default="imagenet",
                        help="imagenet (Keras download), a notop .weights.h5 FILE, a DIR of the files written by "
                             "../shared/tools/backbone_weights.py, or none (random init; tests only)")
    parser.add_argument("--image-size", type=cli.positive_int, default=choices.STUDY_IMAGE_SIZE)
    parser.add_argument("--epochs", type=cli.positive_int, default=choices.STUDY_EPOCHS)
    parser.add_argument("--batch-size", type=cli.positive_int, default=choices.STUDY_BATCH_SIZE)
    parser.add_argument("--learning-rate", type=cli.positive_float,
                        help="head learning rate (default: the study's 1e-3 / 1e-4 / 1e-5 for vgg16 / resnet50 / "
                             "inception_v3)")
    parser.add_argument("--optimizer", default=choices.STUDY_OPTIMIZER, choices=sorted(choices.CLASSIFIER_OPTIMIZERS))
    parser.add_argument("--hyperparameters",
                        help="a tune_classifier.py output dir or best_hyperparameters.json: use its learning rate "
                             "and optimizer")
    parser.add_argument("--fine-tune", type=cli.non_negative_int, default=0, metavar="N",
                        help="after the head, also train the top N backbone layers (BatchNorm stays frozen)")
    parser.add_argument("--fine-tune-epochs", type=cli.positive_int, help="default: --epochs")
    parser.add_argument("--fine-tune-learning-rate", type=cli.positive_float, help="default: a tenth of the head's rate")
    parser.add_argument("--keep-epoch", default="last", choices=choices.KEEP_EPOCH,
                        help="last (the study's) or best_validation: the weights of the epoch with the lowest val loss "
                             "(in the head phase and again in the fine-tuning phase)")
    parser.add_argument("--film", choices=choices.FILM_MODES, default="raw",
                        help="what of each film the classifier sees, inside the model: raw (as it is), equalised "
                             "(histogram-equalised) or lungs (equalised, only the lung fields: markers and text "
                             "outside them hidden); frozen backbone only (default: %(default)s)")
    parser.add_argument("--mirror", action="store_true",
                        help="also train on the mirror image of every train image, and predict the mean of an image's "
                             "and its mirror's P(COVID) (frozen backbone only)")
    parser.add_argument("--feature-cache", help="folder to keep backbone features in between runs")
    add_precision_argument(parser)
    parser.add_argument("--target-sensitivity", type=cli.probability, default=0.95,
                        help="the operating threshold is chosen on validation (after temperature scaling) so that "
                             "this share of COVID images is called COVID; exports and reports use it (default: %(default)s)")
    add_strategy_argument(parser)
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    parser.add_argument("--out", required=True, help="output folder (refused when not empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new model is saved")
    parser.declare_paths(inputs=("--data-path", "--data-dir", "--weights", "--hyperparameters", "--feature-cache"),
                         outputs=("--out",))
    args = parser.parse_args(argv)
    check_image_size(parser, args)
    if not 0.0 < args.target_sensitivity <= 1.0:
        parser.error(f"--target-sensitivity must be in (0, 1], got {args.target_sensitivity}")
    return args


def check_image_size(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    minimum = choices.BACKBONE_MIN_SIZES[args.backbone]
    if args.image_size < minimum:
        parser.error(f"--image-size {args.image_size} is too small for {args.backbone}: its minimum is {minimum}")


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "mixed_bfloat16"),
                        help="dtype policy of the backbone's features (auto: $COVID_KERAS_PRECISION if set, else "
                             "mixed_bfloat16 where the CPU has avx512_bf16 or amx_bf16, float32 on other CPUs). "
                             "The head trains in float32 and the saved model is float32")


def feature_precision(args: argparse.Namespace) -> runtime.PrecisionChoice:
    """The features' precision for --precision, said once on stderr (stdout is the JSON summary)."""
    from covid_keras import runtime

    choice = runtime.choose_precision("features", args.precision, requested_by="--precision")
    print(f"feature precision: {choice.precision} ({choice.reason})", file=sys.stderr)
    return choice


def data_spec(args: argparse.Namespace) -> data.DataSpec:
    from covid_keras import data

    return data.DataSpec.parse(args.data, args.data_path, args.data_dir)


def weights_argument(value: str) -> str | None:
    return None if value.lower() == "none" else value


def main(argv=None) -> dict:
    args = parse_args(argv)
    from covid_keras import classifier, data, distribute, tuning

    out = cli.OutputFolder(args.out, args.overwrite)  # before any data is read
    strategy = chosen_strategy(args)  # before any TensorFlow op: a multi-worker strategy must come first
    # A resume point only where a kill of one worker stops them all; one process reruns in seconds.
    backup_dir = out.path.parent / f".{out.path.name}.backup" if distribute.worker_count(strategy) > 1 else None
    spec = data_spec(args)
    precision = feature_precision(args)
    config = classifier.ClassifierConfig(
        backbone=args.backbone,
        weights=weights_argument(args.weights),
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        fine_tune_layers=args.fine_tune,
        fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_learning_rate=args.fine_tune_learning_rate,
        keep_epoch=args.keep_epoch,
        mirror=args.mirror,
        film=args.film,
        target_sensitivity=args.target_sensitivity,
        seed=args.seed,
        feature_precision=precision.precision,
    )
    if args.hyperparameters:
        config = tuning.apply_best_hyperparameters(config, tuning.load_best_hyperparameters(args.hyperparameters))
    splits = {name: data.load_split(spec, name, balanced=args.balanced) for name in classifier.SPLITS}
    cache = classifier.FeatureCache(args.feature_cache) if args.feature_cache else None
    trained = classifier.train_classifier(config, splits, cache=cache, precision_reason=precision.reason,
                                          strategy=strategy, backup_dir=backup_dir)
    description = {"config": spec.config, "path": spec.path, "balanced": args.balanced}
    with distribute.worker_scratch_dir(out.path, strategy) as target:
        if target == out.path:
            with out.writing() as folder:
                classifier.save_classifier(trained, folder, data_description=description)
        else:  # another worker saves as the chief does (TensorFlow's pattern), into a folder then removed
            classifier.save_classifier(trained, target, data_description=description)
    summary = {"out": str(out.path), "weights": trained.extractor.weights_info.to_dict(), "metrics": trained.metrics}
    print(json.dumps(summary, indent=2))
    return summary


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv, several_workers=True)

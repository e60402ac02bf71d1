"""Baseline vs GAN-augmented frozen-backbone classifiers, repeated over seeds (mean ± sd).

    python scripts/augment_experiment.py --generated runs/reproduce-quick/generated --quick
    python scripts/augment_experiment.py --data radiography --manual-dir ../shared/data/radiography \\
        --weights /work/weights --backbones vgg16 resnet50 --generated generated/run3 --per-class 1000 \\
        --out runs/experiment-radiography

The generated images (GEN/<class>/*.png, from scripts/generate.py) are added to the train split
only; validation and test stay real (checked on the file names before any training). Backbone
features are computed once per backbone and shared by every seed and both settings.
Writes OUT/results.json, OUT/results.md and OUT/test_accuracy.png. A non-empty OUT is refused
unless --overwrite; OUT appears only once the results are written (a crashed run's features are
kept beside it, and the same command picks them up).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras import choices, cli  # noqa: E402  (no TensorFlow before the arguments are parsed)
QUICK = {"data": "phantom_small", "image_size": 75, "seeds": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", required=True, metavar="DIR", help="generated images, DIR/<class>/*.png")
    parser.add_argument("--quick", action="store_true",
                        help=f"small run: {QUICK['data']} data, {QUICK['image_size']} px, {QUICK['seeds']} seeds")
    cli.add_data_arguments(parser, what="the real data (default phantom, phantom_small with --quick)")
    parser.add_argument("--weights", default="imagenet", help="imagenet, a weights FILE or DIR, or none")
    parser.add_argument("--backbones", nargs="+", default=list(choices.BACKBONE_NAMES), choices=choices.BACKBONE_NAMES)
    parser.add_argument("--seeds", type=cli.positive_int, default=None, metavar="N", help="seeds 0..N-1 (default 3)")
    parser.add_argument("--per-class", type=cli.positive_int, default=None,
                        help="at most N generated images per class (default: the whole folder)")
    parser.add_argument("--image-size", type=cli.positive_int, default=None, help="classifier input size (default 150)")
    parser.add_argument("--epochs", type=cli.positive_int, default=3, help="head epochs (default 3, the study's)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=8, help="head batch size (default 8, the study's)")
    parser.add_argument("--tuned", default=None, metavar="DIR",
                        help="KerasTuner results: DIR/<backbone>/best_hyperparameters.json (from tune_classifier.py)")
    parser.add_argument("--unbalanced", action="store_true",
                        help="keep every real image (default: classes cut to equal counts per split, as the study)")
    parser.add_argument("--feature-cache", default=None, help="feature cache folder (default OUT/feature_cache)")
    parser.add_argument("--out", required=True, help="output folder (refused when not empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new results are written")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1))
    parser.declare_paths(inputs=("--generated", "--data-path", "--data-dir", "--weights", "--tuned", "--feature-cache"),
                         outputs=("--out",))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from covid_keras import classifier, data, experiment

    out = cli.OutputFolder(args.out, args.overwrite)
    quick = QUICK if args.quick else {}
    try:
        config = experiment.ExperimentConfig(
            data=data.DataSpec.parse(args.data or quick.get("data", "phantom"), args.data_path, args.data_dir),
            generated_dir=args.generated,
            backbones=tuple(args.backbones),
            seeds=tuple(range(args.seeds or quick.get("seeds", 3))),
            weights=None if args.weights.lower() == "none" else args.weights,
            per_class=args.per_class,
            image_size=args.image_size or quick.get("image_size", classifier.STUDY_IMAGE_SIZE),
            epochs=args.epochs,
            batch_size=args.batch_size,
            balanced=not args.unbalanced,
            tuned_dir=args.tuned,
        )
        cache = classifier.FeatureCache(args.feature_cache) if args.feature_cache else None
        with out.writing(resumable=True) as folder:  # resumable: the default feature cache lives in it
            experiment.run_experiment(config, folder, cache=cache, verbose=args.verbose)
    except RuntimeError as error:  # a failure of the run, not misuse: exit code 1
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(open(os.path.join(args.out, experiment.RESULTS_MD)).read())
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

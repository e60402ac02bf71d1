"""The augmentation study: does the GAN make a better classifier than classic augmentation when
real images are scarce?

The design is in covid_keras/augmentation_study/__init__.py.

    python scripts/augment_study.py --quick --out runs/augment-study-quick          # phantoms, minutes
    python scripts/augment_study.py --data radiography --data-path ../shared/data/radiography \\
        --weights weights/ --out runs/augment-study

For every n real train images per class: a GAN trained on those images only, then frozen-backbone
classifiers over seeds in the arms real / + classic augmentation / + GAN (unfiltered and
guide-filtered) / + classic + GAN, each adding the same number of rows, every image brought down
to the GAN's resolution inside the saved model. Writes OUT/results.json, OUT/results.md,
OUT/test_accuracy_vs_n.png and one saved classifier per cell and seed (OUT/classifiers/).
Rerunning the same command resumes: finished GAN epochs, samples, features and classifiers are
reused. An OUT that holds another study, or other files, is refused.

Several machines: the same command on each with its TF_CONFIG (docs/distributed.md), OUT on a file
system they share. Every GAN trains across the workers; the chief alone writes OUT and trains the
classifiers; rerunning every worker resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras import choices, cli  # noqa: E402
from covid_keras.commands.strategy_option import add_strategy_argument, chosen_strategy  # noqa: E402
from covid_keras.gan import presets as gan_presets


def _size(text: str):
    if text == "all":
        return text
    return cli.positive_int(text)


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="the built-in phantom_small data, tiny networks and random backbone weights: "
                             "the whole study end to end in a few minutes (what CI runs)")
    cli.add_data_arguments(parser, default="radiography")
    parser.add_argument("--weights", default=None,
                        help="the backbone's ImageNet weights: a file or a folder from ../shared/tools/backbone_weights.py "
                             "(required unless --quick)")
    parser.add_argument("--weights-dir", default=None,
                        help="ImageNet weights for a GAN's pretrained part: the class guide of --gan-preset "
                             "guided_resnet50, the discriminator backbone of --gan-preset projected")
    parser.add_argument("--sizes", nargs="+", type=_size, default=None, metavar="N",
                        help="real train images per class, or 'all' (default 50 100 all)")
    parser.add_argument("--classifier-seeds", type=cli.positive_int, default=None, metavar="K",
                        help="classifier seeds per cell (default 5)")
    parser.add_argument("--gan-preset", default=None, help="the GAN preset (default guided)")
    parser.add_argument("--gan-epochs", type=cli.positive_int, default=None,
                        help="GAN epochs of --epoch-images images at every n (default 60)")
    parser.add_argument("--gan-precision", default="auto", help="the GANs' Keras dtype policy (default auto)")
    parser.add_argument("--film", choices=choices.FILM_MODES, default=None,
                        help="what of each film the classifiers see: raw, equalised or lungs (train-classifier's --film; "
                             "default raw)")
    parser.add_argument("--out", required=True, help="the study folder (resumed when it holds the same study)")
    add_strategy_argument(parser)
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write the results of the cells whose classifiers are all saved")
    parser.declare_paths(inputs=("--data-path", "--data-dir", "--weights", "--weights-dir"), outputs=("--out",))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.quick and not args.weights:
        raise cli.UsageError("--weights is required (a folder from ../shared/tools/backbone_weights.py), "
                             "unless --quick")
    cli.check_folder(args.out, "--out")
    from covid_keras import augmentation_study, data

    if args.gan_preset is not None and args.gan_preset not in gan_presets.PRESETS:
        raise cli.UsageError(f"--gan-preset: unknown {args.gan_preset!r}; choose one of {sorted(gan_presets.PRESETS)}")
    try:
        if args.quick:
            config = augmentation_study.quick_config(weights=args.weights, data_dir=args.data_dir)
        else:
            config = augmentation_study.StudyConfig(data.DataSpec.parse(args.data, args.data_path, args.data_dir),
                                                    weights=args.weights)
        changes = {key: value for key, value in (
            ("sizes", args.sizes), ("gan_preset", args.gan_preset), ("gan_epochs", args.gan_epochs),
            ("weights_dir", args.weights_dir), ("film", args.film),
            ("classifier_seeds", tuple(range(args.classifier_seeds)) if args.classifier_seeds else None),
        ) if value is not None}
        changes["gan_precision"] = args.gan_precision
        config = augmentation_study.StudyConfig(**{**config.__dict__, **changes})
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    strategy = chosen_strategy(args)  # before any TensorFlow op: a multi-worker strategy must come first
    study = augmentation_study.AugmentationStudy(config, args.out, report_only=args.report_only, strategy=strategy)
    # One writer per study folder (the chief); a second process on it is refused, naming the first.
    with cli.one_writer(study.out, "--out") if study.is_chief else contextlib.nullcontext():
        record = study.run()
    if not study.is_chief:
        print(f"done: this worker's share of the GANs in {study.out}")
        return 0
    print((study.out / augmentation_study.RESULTS_MD).read_text())
    print(f"done: {study.out / augmentation_study.RESULTS_JSON}, {study.out / augmentation_study.FIGURE}")
    return 0 if record else 1


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv, several_workers=True)

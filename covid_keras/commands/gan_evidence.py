"""The GAN evidence protocol on a run: independent judge, filtered and unfiltered samples, KID
against held-out real images, memorisation, TSTR vs TRTR, every figure with a 95 % interval.

    python scripts/gan_evidence.py --run-dir runs/guided --data radiography \\
        --data-path ../shared/data/radiography --weights-dir weights --out reports/guided-validation
    python scripts/gan_evidence.py ... --split test --out reports/guided-test   # once, for the final table

Choices (presets, epochs, thresholds) are made on `--split validation` (the default; the test
split is then not even loaded). Writes OUT/evidence.json, OUT/evidence.md and the grids; a
non-empty OUT is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import pathlib

from covid_keras import choices, cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="the GAN run folder (runs/<name>)")
    parser.add_argument("--which", default="latest", help="'latest' (default) or the epoch of a kept snapshot")
    cli.add_data_arguments(parser, required=True, what="the real data")
    parser.add_argument("--weights-dir", help="folder of exact local ImageNet weights "
                        "(../shared/tools/backbone_weights.py DIR; default $COVID_KERAS_WEIGHTS_DIR or ../weights)")
    parser.add_argument("--split", default="validation", choices=choices.HELD_OUT_SPLITS,
                        help="the held-out split scored (default validation; test once per final configuration)")
    parser.add_argument("--per-class", type=cli.positive_int, default=500, help="samples per class and kind (default 500)")
    parser.add_argument("--min-guide-confidence", type=cli.probability, default=0.9,
                        help="the filtered samples: the run's guide gives their class at least this (default 0.9)")
    parser.add_argument("--judge-backbone", default="vgg16", choices=("vgg16", "resnet50"),
                        help="the independent judge's frozen ImageNet network (default vgg16)")
    parser.add_argument("--judge-input-size", type=cli.positive_int, default=128,
                        help="the side samples and real images are resized to for the judge (default 128)")
    parser.add_argument("--classifiers", type=cli.positive_int, default=3, help="TSTR and TRTR classifier seeds (default 3)")
    parser.add_argument("--classifier-epochs", type=cli.positive_int, default=40, help="max epochs of each small CNN (early stopped)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="seed of noise, judges and classifiers (default 0)")
    parser.add_argument("--out", required=True, help="output folder (a non-empty one is refused unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.declare_paths(inputs=("--run-dir", "--data-path", "--data-dir", "--weights-dir"), outputs=("--out",))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = cli.OutputFolder(args.out, args.overwrite)
    run_dir = pathlib.Path(args.run_dir)
    if not ((run_dir / "config.json").is_file() or (run_dir / "translation.json").is_file()):
        raise cli.UsageError(f"--run-dir {args.run_dir} is not a GAN run (no config.json or translation.json)")
    from covid_keras import data
    from covid_keras.evaluation import evidence
    from covid_keras.evaluation.judge import ClassifierRecipe

    settings = evidence.EvidenceSettings(
        split=args.split, per_class=args.per_class, min_guide_confidence=args.min_guide_confidence,
        judge_backbone=args.judge_backbone, judge_input_size=args.judge_input_size,
        classifiers=args.classifiers, seed=args.seed,
        recipe=ClassifierRecipe(epochs=args.classifier_epochs, seed=args.seed),
    )
    spec = data.DataSpec.parse(args.data, args.data_path, args.data_dir)
    which = int(args.which) if args.which.isdigit() else args.which
    with out.writing() as folder:
        evidence.evaluate_run_evidence(args.run_dir, spec, settings, which, args.weights_dir, folder)
    print((out.path / "evidence.md").read_text())
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

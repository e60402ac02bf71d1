"""Measure a conditional GAN run against real images: KID, class fidelity, TSTR vs TRTR, diversity.

    python scripts/evaluate_gan.py --run-dir runs/stable --real radiography \\
        --real-path ../shared/data/radiography --out reports/stable

Writes OUT/metrics.json, OUT/summary.md, OUT/grid_<class>.png (real above generated), and
OUT/kid_over_training.png and OUT/fidelity_over_training.png when the run kept several checkpoints. The judge classifier it trains
is saved as OUT/judge.keras: pass it with --judge when evaluating another run, so both runs are
judged by the same classifier. A non-empty OUT is refused unless --overwrite; the report appears
there only once it is complete.
"""

from __future__ import annotations

import argparse
import pathlib

from covid_keras import choices, cli


def parse_args(argv=None) -> argparse.Namespace:

    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="the GAN run folder (runs/<name>)")
    parser.add_argument("--which", default="latest", help="'latest' (default) or the epoch of a kept snapshot (weights/generator-epoch<N>)")
    cli.add_data_arguments(parser, required=True, what="the real data", old_names=("--real", "--real-path"))
    parser.add_argument("--extractor", default="auto", choices=("auto",) + choices.KID_EXTRACTORS,
                        help="KID feature extractor (auto: ImageNet InceptionV3 if its exact weights are at hand, "
                             "else ResNet50, then VGG16 local weights, else random_conv)")
    parser.add_argument("--extractor-weights", help="the extractor's weights file, or 'imagenet' (needs internet)")
    parser.add_argument("--weights-dir", help="folder of local ImageNet weight files "
                        "(default: $COVID_KERAS_WEIGHTS_DIR or <project>/../weights)")
    parser.add_argument("--per-class", type=cli.positive_int, default=1000, help="generated images per class (default 1000)")
    parser.add_argument("--num-subsets", type=cli.positive_int, default=100, help="KID subsets (default 100)")
    parser.add_argument("--subset-size", type=cli.positive_int, default=1000, help="KID subset size cap (default 1000)")
    parser.add_argument("--judge", help="a saved judge classifier (.keras; grey [B,S,S,1] in [0,255] -> class "
                        "probabilities) instead of training one on the real train split")
    parser.add_argument("--judge-epochs", type=cli.positive_int, default=40, help="max epochs of the judge/TSTR/TRTR CNN (early stopped)")
    parser.add_argument("--no-tstr", action="store_true", help="skip TSTR vs TRTR (two classifier trainings)")
    parser.add_argument("--tstr-classifiers", type=cli.positive_int, default=1,
                        help="train this many TSTR classifiers, each on its own draw of samples, and report "
                             "their mean and standard deviation (default 1; each costs one small-CNN training)")
    parser.add_argument("--tstr-blur-sigma", type=cli.non_negative_float, default=0.0,
                        help="train the TSTR and TRTR classifiers (not the judge) with random Gaussian blur of "
                             "sigma up to this (px) on their training images, so that they cannot lean on fine "
                             "texture (default 0: none)")
    parser.add_argument("--no-curves", action="store_true", help="skip KID and class fidelity over the run's checkpoints")
    parser.add_argument("--curve-per-class", type=cli.positive_int, default=250,
                        help="generated images per class at each checkpoint of the curve (default 250)")
    parser.add_argument("--min-guide-confidence", type=cli.probability,
                        help="evaluate only samples the run's class guide gives their class at least this "
                             "probability (0-1; guided runs only): the generator plus a rejection filter")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="seed of noise, subsets and classifier training")
    parser.add_argument("--out", required=True, help="output folder (a non-empty one is refused unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.declare_paths(inputs=("--run-dir", "--data-path", "--data-dir", "--extractor-weights", "--weights-dir",
                                 "--judge"), outputs=("--out",))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = cli.OutputFolder(args.out, args.overwrite)
    if not (pathlib.Path(args.run_dir) / "config.json").is_file():
        raise cli.UsageError(f"--run-dir {args.run_dir} is not a GAN run (no config.json)")
    from covid_keras import data
    from covid_keras.evaluation import embeddings as eval_embeddings
    from covid_keras.evaluation import gan_report
    from covid_keras.evaluation import judge as eval_judge
    from covid_keras.gan import training as gan_training

    spec = data.DataSpec.parse(args.data, args.data_path, args.data_dir)
    recipe = eval_judge.ClassifierRecipe(epochs=args.judge_epochs, seed=args.seed)
    settings = gan_report.EvaluationSettings(
        per_class=args.per_class,
        num_subsets=args.num_subsets,
        subset_size=args.subset_size,
        curve_per_class=args.curve_per_class,
        curves=not args.no_curves,
        tstr=not args.no_tstr,
        tstr_classifiers=args.tstr_classifiers,
        tstr_blur_sigma=args.tstr_blur_sigma,
        seed=args.seed,
        recipe=recipe,
    )
    extractor = eval_embeddings.build_extractor(
        args.extractor, args.extractor_weights, weights_dir=args.weights_dir, seed=args.seed
    )
    image_filter = None
    if args.min_guide_confidence is not None:
        image_filter = gan_training.class_guide_filter(args.run_dir, args.min_guide_confidence)
    with out.writing() as folder:
        result = gan_report.evaluate_gan(
            args.run_dir, spec, extractor=extractor, judge=args.judge, settings=settings,
            which=int(args.which) if args.which.isdigit() else args.which, out_dir=folder, image_filter=image_filter,
        )
    fidelity = result["class_fidelity"]
    print(f"extractor {result['extractor']['name']} ({result['extractor']['weights']})")
    print(f"KID mean over classes {result['kid']['mean_over_classes']:.5f}")
    if result["sample_filter"]:
        acceptance = result["sample_filter"]["acceptance_per_class"]
        print("kept by the class guide: " + ", ".join(f"{name} {share:.3f}" for name, share in acceptance.items()))
    print(f"class fidelity {fidelity['overall']:.3f} (judge on real test {fidelity['judge']['real_test_accuracy']:.3f})")
    if "tstr_trtr" in result:
        tstr = result["tstr_trtr"]
        spread = "" if tstr["tstr_accuracy_sd"] is None else (
            f" ± {tstr['tstr_accuracy_sd']:.3f} over {tstr['n_tstr_classifiers']} classifiers")
        print(f"TSTR {tstr['tstr_accuracy']:.3f}{spread} vs TRTR {tstr['trtr_accuracy']:.3f}")
    print(f"report: {out.path / 'summary.md'}")
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

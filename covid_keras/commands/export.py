"""Export trained models as versioned SavedModels for TensorFlow Serving.

    python scripts/export.py --classifier runs/classifier_vgg16 --gan-run runs/gan_1

Each model lands in <base>/<name>/<version>/ (the next free version; nothing is
overwritten) with its model card in assets.extra/model_card.json, and
each model not yet in <base>/models.config is added to it (the rest of the file is left as it is;
one that does not parse stops the export before anything is written). Every classifier folder is
checked before the first export, so a mistyped one exports nothing.
"""

from __future__ import annotations

import argparse

from covid_keras import choices, cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--classifier", action="append", default=[], metavar="DIR",
        help="saved classifier folder (model.keras + classifier.json); repeat for several",
    )
    parser.add_argument("--gan-run", action="append", default=[], metavar="DIR", help="GAN run folder (runs/<name>)")
    parser.add_argument(
        "--name", help="model name to serve under (only with a single model; default: the folder's name)"
    )
    parser.add_argument("--base", default=choices.DEFAULT_EXPORT_DIR, help="base folder (default: %(default)s)")
    parser.add_argument(
        "--serving-root", default=choices.DEFAULT_SERVING_ROOT,
        help="where the server sees the base folder; models.config paths start here (default: %(default)s)",
    )
    parser.declare_paths(inputs=("--classifier", "--gan-run"), outputs=("--base",))
    args = parser.parse_args(argv)
    if not args.classifier and not args.gan_run:
        parser.error("give at least one --classifier or --gan-run")
    if args.name and len(args.classifier) + len(args.gan_run) > 1:
        parser.error("--name applies to a single exported model")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from covid_keras import classifier, export

    # --base only grows (a new version per export, never overwritten), so it may hold anything.
    cli.check_folder(args.base, "--base")
    export.check_models_config(args.base)  # one export cannot add to: refused before any is written
    for path in args.classifier:
        classifier.load_classifier_metadata(path)
    results = [export.export_classifier_dir(path, args.base, args.name) for path in args.classifier]
    results += [export.export_gan_run(path, args.base, args.name) for path in args.gan_run]
    for result in results:
        print(f"{result.name} version {result.version}: {result.path}")
    print(f"serving config: {export.write_models_config(args.base, args.serving_root)}")


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

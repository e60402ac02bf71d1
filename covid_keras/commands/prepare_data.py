"""Build the covid_xray dataset (if needed), print its split counts and skipped files, draw a preview.

    python scripts/prepare_data.py --data phantom --preview reports/phantom_preview.png
    python scripts/prepare_data.py --data radiography --manual-dir ~/Downloads   # the Kaggle zip's folder
    python scripts/prepare_data.py --data folder --manual-dir path/to/root       # root/<class>/[images/]*.png

An existing --preview file is refused unless --overwrite. --data-dir is not checked that way: it is
TFDS's data cache, shared by every command, and a prepared config in it is reused, not rewritten.
"""

from __future__ import annotations

import argparse

from covid_keras import cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_data_arguments(parser, default="phantom", what="which data to build (phantom: the built-in synthetic images)")
    parser.add_argument("--preview", default=None, metavar="PNG",
                        help="write a grid of the first training images of each class to this PNG")
    parser.add_argument("--preview-per-class", type=cli.positive_int, default=8, help="images per class in the preview")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --preview file")
    parser.declare_paths(inputs=("--data-path", "--data-dir"), outputs=("--preview",))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from covid_keras import data, plots

    preview = cli.OutputFile(args.preview, args.overwrite, "--preview") if args.preview else None
    spec = data.DataSpec.parse(args.data, args.data_path, args.data_dir)
    data.prepare(spec)
    report = data.build_report(spec)
    print(f"{spec.config}: {report['examples']} examples from {report['source']}")
    for split, counts in report["split_counts"].items():
        print(f"  {split:<10} " + "  ".join(f"{name}: {n}" for name, n in counts.items()))
    print(f"skipped: {len(report['skipped'])} files (see {data.report_path(spec)})")
    if args.preview:
        names = data.class_names(spec)
        images = data.preview_images(data.load_split(spec, "train"), args.preview_per_class, len(names))
        with preview.writing() as path:
            plots.save_image_grid(images, path, row_labels=names, title=f"covid_xray/{spec.config}: train")
        print(f"preview: {args.preview}")
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

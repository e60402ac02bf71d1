"""Build the covid_xray dataset (if needed), print its split counts and skipped files, draw a preview.

    python scripts/prepare_data.py --data phantom --preview reports/phantom_preview.png
    python scripts/prepare_data.py --data radiography --manual-dir ~/Downloads   # the Kaggle zip's folder
    python scripts/prepare_data.py --data folder --manual-dir path/to/root       # root/<class>/[images/]*.png
"""

from __future__ import annotations

import argparse
import sys

from covid_keras import data, plots, sources


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=data.CONFIGS, default="phantom",
                        help="which covid_xray config to build (default: phantom, the built-in synthetic images)")
    parser.add_argument("--manual-dir", default=None,
                        help="radiography*: the folder holding the Kaggle zip, or the extracted folder; "
                             "folder: the root of ROOT/<class>/[images/]*.png")
    parser.add_argument("--data-dir", default=None,
                        help="TFDS data dir for the prepared data (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--preview", default=None, metavar="PNG",
                        help="write a grid of the first training images of each class to this PNG")
    parser.add_argument("--preview-per-class", type=int, default=8, help="images per class in the preview")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        spec = data.DataSpec.parse(args.data, args.manual_dir, args.data_dir)
        data.prepare(spec)
    except (sources.SourceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = data.build_report(spec)
    print(f"{spec.config}: {report['examples']} examples from {report['source']}")
    for split, counts in report["split_counts"].items():
        print(f"  {split:<10} " + "  ".join(f"{name}: {n}" for name, n in counts.items()))
    print(f"skipped: {len(report['skipped'])} files (see {data.report_path(spec)})")
    if args.preview:
        names = data.class_names(spec)
        images = data.preview_images(data.load_split(spec, "train"), args.preview_per_class, len(names))
        plots.save_image_grid(images, args.preview, row_labels=names, title=f"covid_xray/{spec.config}: train")
        print(f"preview: {args.preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the metrics of a saved classifier on a labelled dataset as one JSON object.

    python scripts/evaluate_classifier.py --model runs/clf_vgg16 --data folder path/to/ROOT
    python scripts/evaluate_classifier.py --model runs/clf_vgg16 --data radiography ../shared/data/radiography --split test

By default every image counts: all splits of the data config (train+validation+test), so
a folder is evaluated whole. Progress goes to stderr; stdout holds only the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from covid_keras import classifier, cli, data


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a classifier folder written by train_classifier.py")
    parser.add_argument("--data", required=True, nargs="+", metavar=("CONFIG", "PATH"),
                        help="a data config and, for folder / radiography, its path: e.g. --data folder ROOT")
    parser.add_argument("--data-dir", help="TFDS data dir for the prepared data (default: TFDS's own)")
    parser.add_argument("--split", default=data.ALL_SPLITS,
                        help=f"TFDS split expression (default: {data.ALL_SPLITS}, i.e. every image)")
    args = parser.parse_args(argv)
    if len(args.data) > 2:
        parser.error("--data takes a config and at most one path")
    if args.data[0] not in data.CONFIGS:
        parser.error(f"--data: unknown config {args.data[0]!r}; choose one of {', '.join(data.CONFIGS)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    config, path = args.data[0], (args.data[1] if len(args.data) == 2 else None)
    classifier.load_classifier_metadata(args.model)  # a wrong --model fails before the data is read
    with contextlib.redirect_stdout(sys.stderr):  # keep progress bars off the JSON
        spec = data.DataSpec.parse(config, path, args.data_dir)
        examples = data.load_split(spec, args.split)
        metrics = classifier.evaluate_saved_classifier(args.model, examples)
    result = {"model": args.model, "data": {"config": spec.config, "path": spec.path, "split": args.split}, **metrics}
    print(json.dumps(result))
    return result


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

"""Classify chest X-ray image files with an exported classifier.

    python scripts/predict.py --server http://localhost:8501 --model classifier_vgg16 a.png b.jpg
    python scripts/predict.py --saved-model saved_models/classifier_vgg16 a.png b.jpg

Prints one line per file: file, P(COVID), label (tab-separated). --server sends TF
Serving's REST request; --saved-model runs the same request body in this process. A file the
model refuses (not a PNG or JPEG, truncated, over the pixel limit) gets its own `error:` line on
stderr; every other file is still scored, and the exit code is then 2.
"""

from __future__ import annotations

import argparse
import sys

from covid_keras import cli, serving

# A server's (or the model's) refusal is the user's to fix too: a wrong URL, model name or file.
USER_ERRORS = (serving.ServingError,)


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", metavar="URL", help="TF Serving REST address, e.g. http://localhost:8501")
    where.add_argument(
        "--saved-model", metavar="DIR", help="a SavedModel version folder, or a model folder (latest version)"
    )
    parser.add_argument("--model", help="model name on the server (required with --server)")
    parser.add_argument("--version", type=int, help="model version on the server (default: the server's latest)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=32, help="files per request (default: %(default)s)")
    parser.add_argument("files", nargs="+", help="PNG or JPEG files")
    args = parser.parse_args(argv)
    if args.server and not args.model:
        parser.error("--server needs --model")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    results, failures = serving.classify_each_file(
        args.files,
        server=args.server,
        model_name=args.model,
        version=args.version,
        saved_model=args.saved_model,
        batch_size=args.batch_size,
    )
    for path, probability, label in results:
        print(f"{path}\t{probability:.6f}\t{label}")
    sys.stdout.flush()
    for path, why in failures:  # every good file was scored; each bad one gets its own line
        print(f"error: {cli.one_line(why) if why.startswith(path) else path + ': ' + cli.one_line(why)}", file=sys.stderr)
    return cli.EXIT_USAGE if failures else 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv, errors=USER_ERRORS)

"""Classify chest X-ray image files with an exported classifier.

    python scripts/predict.py --server http://localhost:8501 --model classifier_vgg16 a.png b.jpg
    python scripts/predict.py --saved-model saved_models/classifier_vgg16 a.png b.jpg
    python scripts/predict.py --saved-model saved_models/classifier_vgg16 --explain maps/ a.png

Prints one line per file: file, P(COVID), label (tab-separated); P(COVID) is temperature-scaled
and the label uses the operating threshold chosen on validation (both in the model card).
--server sends TF Serving's REST request; --saved-model runs the same request body in this
process. --explain DIR asks the `explain` signature instead and writes, per file, DIR/<name>.gradcam.png:
the Grad-CAM map of the label's class over the X-ray (a fourth column names it). A file the
model refuses (not a PNG or JPEG, truncated, over the pixel limit) gets its own `error:` line on
stderr; every other file is still scored, and the exit code is then 2.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from PIL import Image

from covid_keras import cli, serving, sources

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
    parser.add_argument("--version", type=cli.positive_int, help="model version on the server (default: the server's latest)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=32, help="files per request (default: %(default)s)")
    parser.add_argument("--explain", metavar="DIR",
                        help="write each file's Grad-CAM map over the X-ray into DIR (refused when not empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --explain folder")
    parser.add_argument("files", nargs="+", help="PNG or JPEG files")
    parser.declare_paths(inputs=("--saved-model", "files"), outputs=("--explain",))
    args = parser.parse_args(argv)
    if args.server and not args.model:
        parser.error("--server needs --model")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # Refused before any model loads; the maps are written to a temporary folder, renamed at the end.
    maps = cli.OutputFolder(args.explain, args.overwrite, flag="--explain") if args.explain else None
    where = dict(server=args.server, model_name=args.model, version=args.version, saved_model=args.saved_model,
                 batch_size=args.batch_size)
    if maps is None:
        results, failures = serving.classify_each_file(args.files, **where)
        for path, probability, label in results:
            print(f"{path}\t{probability:.6f}\t{label}")
    else:
        results, failures = serving.explain_each_file(args.files, **where)
        with maps.writing() as folder:
            names = heatmap_file_names([path for path, *_ in results])
            for (path, probability, label, heatmap), name in zip(results, names):
                save_overlay(path, heatmap, folder / name)
        for (path, probability, label, _), name in zip(results, names):
            print(f"{path}\t{probability:.6f}\t{label}\t{maps.path / name}")
    sys.stdout.flush()
    for path, why in failures:  # every good file was scored; each bad one gets its own line
        print(f"error: {cli.one_line(why) if why.startswith(path) else path + ': ' + cli.one_line(why)}", file=sys.stderr)
    return cli.EXIT_USAGE if failures else 0


def heatmap_file_names(paths) -> list[str]:
    """<stem>.gradcam.png per file; a stem seen before gets -2, -3, ... so no map replaces another."""
    names, seen = [], {}
    for path in paths:
        stem = pathlib.Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.gradcam.png" if seen[stem] == 1 else f"{stem}-{seen[stem]}.gradcam.png")
    return names


def save_overlay(image_path, heatmap, out_path) -> None:
    """The map stretched over the file's own pixels (grey), coloured, as a PNG."""
    from covid_keras import plots  # matplotlib: loaded only when a map is drawn (--help stays fast)

    grey = sources.decode_grey(pathlib.Path(image_path).read_bytes()).pixels
    Image.fromarray(plots.heatmap_overlay(grey, heatmap)).save(out_path)


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv, errors=USER_ERRORS)

"""Write a trained GAN's images as grey 8-bit PNGs in OUT/<class>/ (readable by `--data folder`).

    python scripts/generate.py --run-dir runs/run3-phantom-150px --per-class 1000 --out generated/run3

A non-empty OUT is refused unless --overwrite, which replaces it whole once every image is written.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras import cli  # noqa: E402  (no TensorFlow: the arguments are checked before it loads)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a GAN run directory written by scripts/train_gan.py")
    parser.add_argument("--which", default="latest", help="'latest' or a kept epoch number (weights/generator-epochN)")
    parser.add_argument("--per-class", type=cli.positive_int, default=1000, help="images per class (default 1000, as the study)")
    parser.add_argument("--out", required=True, help="output folder; images go to OUT/<class>/")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="noise seed (default 0)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=64, help="images per generator call (default 64)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT once the new images are written")
    parser.add_argument("--min-guide-confidence", type=cli.probability,
                        help="keep only images the run's class guide gives their class at least this "
                             "probability (0-1; guided runs only): rejection sampling")
    parser.declare_paths(inputs=("--run-dir",), outputs=("--out",))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = cli.OutputFolder(args.out, args.overwrite)
    from covid_keras import (
        generate,  # TensorFlow loads here, after the arguments are checked
    )
    from covid_keras.gan import training as gan_training

    generator, _, class_names = gan_training.load_generator(args.run_dir, args.which)
    image_filter = None
    if args.min_guide_confidence is not None:
        image_filter = gan_training.class_guide_filter(args.run_dir, args.min_guide_confidence)
    with out.writing() as folder:
        counts = generate.write_generated(
            generator, class_names, args.per_class, folder,
            seed=args.seed, batch_size=args.batch_size, image_filter=image_filter,
        )
    print(f"wrote {sum(counts.values())} PNGs to {os.path.abspath(args.out)}: {counts}")
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

"""Train the image-editing GAN (covid_keras.gan.translation): real X-rays of one class edited into the other.

    python scripts/train_translation_gan.py --data radiography --data-path ../shared/data/radiography \\
        --run-dir runs/translation --minutes 45
    python scripts/gan_evidence.py --run-dir runs/translation --data radiography \\
        --data-path ../shared/data/radiography --weights-dir weights --out reports/translation-validation
"""

from __future__ import annotations

import argparse
import pathlib

from covid_keras import cli  # no TensorFlow before the arguments are parsed
from covid_keras.gan.config import TranslationConfig


def parse_args(argv=None) -> argparse.Namespace:
    defaults = TranslationConfig()
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_data_arguments(parser, required=True, what="the real data")
    parser.add_argument("--out", "--run-dir", dest="run_dir", required=True,
                        help="the run folder to write (refused when it holds a translation run)")
    parser.add_argument("--image-size", type=cli.positive_int, default=defaults.image_size)
    parser.add_argument("--epochs", type=cli.positive_int, default=defaults.epochs)
    parser.add_argument("--minutes", type=cli.positive_float, help="stop after the epoch that ends past this wall time")
    parser.add_argument("--batch-size", type=cli.positive_int, default=defaults.batch_size)
    parser.add_argument("--identity-weight", type=cli.non_negative_float, default=defaults.identity_weight)
    parser.add_argument("--cycle-weight", type=cli.non_negative_float, default=defaults.cycle_weight)
    parser.add_argument("--aux-class-weight", type=cli.non_negative_float, default=defaults.aux_class_weight)
    parser.add_argument("--d-every", type=cli.positive_int, default=defaults.d_every, help="D steps once every K calls")
    parser.add_argument("--seed", type=cli.non_negative_int, default=defaults.seed)
    parser.declare_paths(inputs=("--data-path", "--data-dir"), outputs=("--out",))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.check_folder(args.run_dir, "--out")
    from covid_keras import data
    from covid_keras.gan import translation as tg

    if tg.is_translation_run(args.run_dir):
        raise cli.UsageError(f"--out {args.run_dir} already holds a translation run; choose another")
    config = TranslationConfig(
        image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
        identity_weight=args.identity_weight, cycle_weight=args.cycle_weight,
        aux_class_weight=args.aux_class_weight, d_every=args.d_every, seed=args.seed,
    )
    spec = data.DataSpec.parse(args.data, args.data_path, args.data_dir)
    record = tg.train_translation_gan(config, spec, pathlib.Path(args.run_dir), minutes=args.minutes)
    print(f"trained {record['epochs_done']} epochs in {record.get('seconds', 0) / 60:.1f} min: {args.run_dir}")
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

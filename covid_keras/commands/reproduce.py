"""The whole study in one command: data -> GAN -> generated images -> baseline and augmented classifiers -> report.

    python scripts/reproduce.py --quick                     # built-in phantoms, minutes on 2 CPU cores (README)
    python scripts/reproduce.py                             # the study's sizes (GAN: 750 epochs at 150 px)
    python scripts/reproduce.py --data radiography --manual-dir ~/Downloads/covid19-radiography \\
        --weights /work/weights --out runs/reproduce-radiography

The report (OUT/report/README.md) has the GAN sample grid, the loss plot, the table (mean ± sd
over seeds) and the bar chart. Rerunning the same command reuses every finished stage.
Weights: "imagenet" (Keras' download; without internet it falls back to --fallback-weights DIR
if given, else to random init, and says so loudly), a local weights FILE or DIR, or "none".

Several machines: the same command on each with its TF_CONFIG (docs/distributed.md), OUT on a file
system they share: the GAN trains across the workers, the later stages on the chief alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras import choices, cli  # noqa: E402  (no TensorFlow before the arguments are parsed)
from covid_keras.commands.strategy_option import add_strategy_argument, chosen_strategy  # noqa: E402
from covid_keras.gan import presets as gan_presets  # noqa: E402

LOG_FILE = "reproduce.log"  # libraries' warnings of a normal run (--verbose 2 shows them instead)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="the quick profile: a 32 px guided GAN for 300 steps on phantom_small; classifiers: "
                             "the small CNN from scratch at 64 px offline, the backbones at 75 px with weights")
    cli.add_data_arguments(parser, what="the real data (default phantom, phantom_small with --quick)")
    parser.add_argument("--weights", default="imagenet", help="imagenet (default), a weights FILE or DIR, or none")
    parser.add_argument("--fallback-weights", default=None, metavar="DIR",
                        help="local weights used when the ImageNet download fails")
    parser.add_argument("--weights-dir", default=os.environ.get("COVID_KERAS_WEIGHTS_DIR"), metavar="DIR",
                        help="a folder of local ImageNet weights (../shared/tools/backbone_weights.py DIR): the "
                             "classifiers are frozen backbones on them (default $COVID_KERAS_WEIGHTS_DIR; without "
                             "it and offline, a small CNN trained from scratch)")
    parser.add_argument("--seeds", type=cli.positive_int, default=None, metavar="N",
                        help="classifier seeds 0..N-1 (default 3)")
    parser.add_argument("--backbones", nargs="+", default=None, choices=choices.BACKBONE_NAMES,
                        help="default: all three")
    parser.add_argument("--per-class", type=cli.positive_int, default=None,
                        help="generated images per class (default 1000, quick 50)")
    parser.add_argument("--gan-run", default=None, choices=sorted(gan_presets.PRESETS),
                        help="GAN preset (default 3, the study's; 'stable' and 'guided' are ours)")
    parser.add_argument("--out", default=None, help="output folder (default runs/reproduce or runs/reproduce-quick)")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                        help="progress bars (1) or not (0); 2 also shows libraries' warnings, which otherwise go "
                             "to OUT/reproduce.log")
    add_strategy_argument(parser)
    parser.declare_paths(inputs=("--data-path", "--data-dir", "--weights", "--fallback-weights", "--weights-dir"), outputs=("--out",))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or os.path.join("runs", "reproduce-quick" if args.quick else "reproduce")
    if args.weights_dir and not os.path.isdir(args.weights_dir):
        raise cli.UsageError(f"--weights-dir {args.weights_dir}: no such folder")
    noise = contextlib.nullcontext() if args.verbose >= 2 else cli.library_noise_to(os.path.join(out, LOG_FILE))
    with noise:
        return _run(args, out)


def _run(args: argparse.Namespace, out: str) -> int:
    from covid_keras.reproduce import reproduce

    if args.verbose < 2:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()  # its bars, one per split of every build, are noise here

    strategy = chosen_strategy(args)  # before any TensorFlow op: a multi-worker strategy must come first
    try:
        record = reproduce(
            out,
            data=args.data,
            quick=args.quick,
            weights=args.weights,
            fallback_weights=args.fallback_weights,
            weights_dir=args.weights_dir,
            manual_dir=args.data_path,
            data_dir=args.data_dir,
            seeds=range(args.seeds) if args.seeds else None,
            backbones=args.backbones,
            per_class=args.per_class,
            gan_run=args.gan_run,
            verbose=min(args.verbose, 1),
            strategy=strategy,
        )
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if record.get("worker"):
        print(f"done: this worker's share of the GAN in {record['out_dir']}")
        return 0
    print(f"done in {record['timings_s']['total']:.0f} s: {os.path.join(record['report_dir'], 'README.md')}")
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv, several_workers=True)

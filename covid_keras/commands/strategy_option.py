"""`--strategy`, the option of the commands that train across workers (train-gan, train-classifier, study,
reproduce)."""

from __future__ import annotations

import argparse

from covid_keras import choices, cli


def add_strategy_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", choices=choices.STRATEGIES, default="auto",
                        help="auto: multi-worker when $TF_CONFIG names several workers, else mirrored on several "
                             "local GPUs, else one device")


def chosen_strategy(args: argparse.Namespace):
    """The strategy `--strategy` names; call it before any TensorFlow op (a multi-worker strategy must come first)."""
    from covid_keras import distribute

    try:
        return distribute.choose_strategy(args.strategy)
    except ValueError as e:
        raise cli.UsageError(f"--strategy {args.strategy}: {e}") from e

"""Train (or resume) the study's conditional GAN.

    python scripts/train_gan.py --run 3                          # the report's run 3: 150 px, built-in phantoms
    python scripts/train_gan.py --run 3 --data radiography --manual-dir ~/Downloads/covid19-radiography
    python scripts/train_gan.py --run 3 --data phantom_small --image-size 64 --epochs 2
    python scripts/train_gan.py --run stable --data radiography --manual-dir ../shared/data/radiography

Every GanConfig field can be overridden (`--image-size`, `--epochs`, `--batch-size`, `--d-every`, ...).
Re-running the same command resumes the run from its last checkpoint.

Several machines: start the same command on each with its TF_CONFIG (docs/distributed.md;
scripts/launch_local_workers.sh on one machine). --batch-size is the global batch, split across
the workers; only the chief writes the run folder (--out), which must be on a file system they all share.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras import choices, cli  # noqa: E402  (no TensorFlow before the arguments are parsed)
from covid_keras.commands.strategy_option import add_strategy_argument, chosen_strategy  # noqa: E402
from covid_keras.gan import config as gan_config  # noqa: E402
from covid_keras.gan import presets as gan_presets
from covid_keras.gan import run_dir as gan_run_dir


def _preset_values(argv: list[str] | None) -> tuple[str, dict]:
    """The --run asked for (before the full parse) and its GanConfig values, so --help shows them."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--run", default="3")
    run = early.parse_known_args(argv)[0].run
    if run not in gan_presets.PRESETS:
        run = "3"  # the full parse names the bad --run
    return run, gan_presets.from_preset(run).to_dict()


def _add_override(parser: argparse.ArgumentParser, field: dataclasses.Field, run: str, value) -> None:
    flag = "--" + field.name.replace("_", "-")
    default = field.default
    shown = " ".join(map(str, value)) if isinstance(value, list) else value
    help_text = f"(preset {run}: {shown})"
    if isinstance(default, bool):
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    elif field.name == "diff_augment":
        parser.add_argument(flag, nargs="*", default=None, choices=gan_config.DIFF_AUGMENT_POLICIES, help=help_text)
    elif isinstance(default, tuple):
        parser.add_argument(flag, type=cli.positive_int, nargs="+", default=None, metavar="N", help=help_text)
    else:
        allowed = {
            "optimizer": gan_config.OPTIMIZERS, "lr_schedule": gan_config.LR_SCHEDULES, "loss": gan_config.LOSSES,
            "discriminator_padding": gan_config.DISCRIMINATOR_PADDINGS,
            "generator_conditioning": gan_config.GENERATOR_CONDITIONINGS,
            "generator_upsampling": gan_config.GENERATOR_UPSAMPLINGS,
            "discriminator_conditioning": gan_config.DISCRIMINATOR_CONDITIONINGS,
            "discriminator_norm": gan_config.DISCRIMINATOR_NORMS,
            "class_guide_loss": gan_config.CLASS_GUIDE_LOSSES,
            "class_guide_backbone": gan_config.CLASS_GUIDE_BACKBONES,
            "discriminator_backbone": gan_config.DISCRIMINATOR_BACKBONES,
        }.get(field.name)
        parser.add_argument(flag, type=_number_type(field.name, default), default=None, choices=allowed, help=help_text)


# Finite and in range at parse time (GanConfig.validate then checks what depends on other fields).
_POSITIVE_FLOATS = ("learning_rate", "d_lr_multiplier")
_FRACTIONS = ("dropout", "ema_decay")


def _number_type(name: str, default):
    if isinstance(default, float):
        if name in _POSITIVE_FLOATS:
            return cli.positive_float
        return cli.probability if name in _FRACTIONS else cli.non_negative_float
    if isinstance(default, int):
        return cli.non_negative_int
    return type(default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    run, preset = _preset_values(argv)
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="3", choices=sorted(gan_presets.PRESETS),
                        help="the run preset (default 3, the report's; `--run NAME --help` shows NAME's values)")
    cli.add_data_arguments(parser, default="phantom")
    parser.add_argument("--out", "--run-dir", dest="run_dir", default=None,
                        help="the run folder, written or resumed (default runs/run<RUN>-<DATA>-<SIZE>px)")
    parser.add_argument("--verbose", default="auto", choices=("auto", "0", "1", "2"), help="Keras progress: auto, 0, 1 (bar) or 2 (a line per epoch)")
    parser.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                        help="XLA-compile the train step (auto: the fastest measured for this device kind)")
    parser.add_argument("--precision", choices=("auto",) + choices.PRECISIONS, default="auto",
                        help="Keras dtype policy (auto: $COVID_KERAS_PRECISION if set, else mixed_bfloat16 where the "
                             "CPU has avx512_bf16 or amx_bf16, float32 on other CPUs, mixed_float16 on a GPU; a resumed "
                             "run keeps its own)")
    parser.add_argument("--init-from", default=None, metavar="RUN_DIR",
                        help="start a new run from another run's latest weights (G, its average, D; fresh optimizers)")
    parser.add_argument("--weights-dir", default=None,
                        help="local pretrained weights for --class-guide-backbone resnet50 or --discriminator-backbone "
                             "(../shared/tools/backbone_weights.py DIR; default $COVID_KERAS_WEIGHTS_DIR or ../weights)")
    add_strategy_argument(parser)
    parser.add_argument("--minutes", type=cli.positive_float, default=None,
                        help="wall-time budget: stop after the epoch that crosses it (the run stays resumable)")
    parser.add_argument("--until-epoch", type=cli.positive_int, default=None, metavar="N",
                        help="stop after epoch N this time, e.g. to compare two seeds at the same step (the run "
                             "stays resumable towards --epochs)")
    overrides = parser.add_argument_group(f"preset overrides (each shows preset {run}'s value)")
    for field in dataclasses.fields(gan_config.GanConfig):
        _add_override(overrides, field, run, preset[field.name])
    parser.declare_paths(inputs=("--data-path", "--data-dir", "--init-from", "--weights-dir"), outputs=("--out",))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from covid_keras import data

    names = {f.name for f in dataclasses.fields(gan_config.GanConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    try:
        config = gan_presets.from_preset(args.run, **overrides)
        spec = data.DataSpec.parse(args.data, args.data_path, args.data_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_dir = args.run_dir or os.path.join("runs", f"run{args.run}-{args.data}-{config.image_size}px")
    # Only that it can be a folder: an existing run is resumed (gan_training refuses another's).
    cli.check_folder(run_dir, "--out (--run-dir)")
    # Before any TensorFlow op (the checks above run none): a multi-worker strategy must come first.
    strategy = chosen_strategy(args)
    verbose = int(args.verbose) if args.verbose.isdigit() else args.verbose
    print(f"GAN run {args.run} on {args.data}: {config.image_size} px, batch {config.batch_size} over "
          f"{strategy.num_replicas_in_sync} replica(s), {config.epochs} epochs -> {os.path.abspath(run_dir)}")

    from covid_keras import distribute
    from covid_keras.gan import training as gan_training

    # One writer per run folder, for the whole run; the other workers of a cluster only read it.
    writer = cli.one_writer(run_dir, "--out") if distribute.is_chief(strategy) else contextlib.nullcontext()
    try:
        jit = {"auto": "auto", "on": True, "off": False}[args.jit]
        with writer:
            result = gan_training.train_gan(
                config, spec, run_dir, strategy=strategy, verbose=verbose, jit_compile=jit, precision=args.precision,
                time_budget_s=None if args.minutes is None else 60 * args.minutes, until_epoch=args.until_epoch,
                init_from=args.init_from,
                weights_dir=args.weights_dir,
            )
    except FloatingPointError as e:  # the run failed (NaN losses), not its command: exit code 1
        print(f"error: {e}", file=sys.stderr)
        return 1
    contents = (f"config.json, {gan_run_dir.LOSS_CSV}, {gan_run_dir.SAMPLES_DIR}/, {gan_run_dir.LOSS_CURVE}, "
                f"{gan_run_dir.GENERATOR_WEIGHTS}, {gan_run_dir.CHECKPOINT_DIR}/")
    if config.class_separate:
        contents = f"config.json and a run folder per class in {gan_run_dir.CLASSES_DIR}/: {contents}"
    print(f"done: {result.epochs_done}/{config.epochs} epochs in {result.run_dir} ({contents})")
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv, several_workers=True)

"""Several gan_evidence reports side by side: one table, a row per report and sample kind.

    python scripts/compare_evidence.py reports/guided-validation reports/per_class-validation \\
        --label guided --label per_class

Prints the Markdown table (independent-judge accuracy per class, label separation, the small-CNN
judge, TSTR minus TRTR, KID, memorisation); --out also writes OUT/comparison.md (a non-empty OUT
is refused unless --overwrite). Reports scored on different splits are refused.

--pool: the reports are runs of one configuration that differ only in their training seed,
scored at the same epoch; one row per sample kind with the seed-to-seed variance inside the
intervals (covid_keras.evaluation.evidence_pooling), the per-seed figures beside them:

    python scripts/compare_evidence.py reports/projected-s0-e240-validation \
        reports/projected-s1-e240-validation --pool --label projected
"""

from __future__ import annotations

import argparse
import json
import pathlib

from covid_keras import cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", help="gan_evidence.py output folders (or their evidence.json)")
    parser.add_argument("--label", action="append", default=None,
                        help="a row label per report, in order (default: the folder names)")
    parser.add_argument("--out", help="folder for comparison.md (a non-empty one is refused unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--pool", action="store_true",
                        help="pool the reports as training seeds of one configuration (intervals include the "
                             "seed variance); --label names the pooled row")
    parser.declare_paths(inputs=("reports",), outputs=("--out",))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.pool:
        return _pool(args)
    labels = args.label or [pathlib.Path(p).name if pathlib.Path(p).is_dir() else pathlib.Path(p).parent.name
                            for p in args.reports]
    if len(labels) != len(args.reports):
        raise cli.UsageError(f"--label: {len(labels)} labels for {len(args.reports)} reports; give one per report")
    out = cli.OutputFolder(args.out, args.overwrite) if args.out else None

    from covid_keras.evaluation import evidence

    reports = {}
    for label, path in zip(labels, args.reports):
        try:
            reports[label] = evidence.read_evidence(path)
        except (OSError, ValueError) as e:
            raise cli.UsageError(str(e)) from e
    text = evidence.comparison_markdown(reports)
    print(text)
    if out is not None:
        with out.writing() as folder:
            (pathlib.Path(folder) / "comparison.md").write_text(text)
        print(f"written: {out.path}/comparison.md")
    return 0


def _pool(args: argparse.Namespace) -> int:
    if args.label and len(args.label) != 1:
        raise cli.UsageError(f"--label: with --pool give one label (the pooled row), got {len(args.label)}")
    out = cli.OutputFolder(args.out, args.overwrite) if args.out else None
    from covid_keras.evaluation import evidence, evidence_pooling

    try:
        reports = [evidence.read_evidence(path) for path in args.reports]
        pooled = evidence_pooling.pool_training_seeds(reports)
    except (OSError, ValueError) as e:
        raise cli.UsageError(str(e)) from e
    text = evidence_pooling.pooled_markdown(pooled, args.label[0] if args.label else "pooled")
    print(text)
    if out is not None:
        with out.writing() as folder:
            (pathlib.Path(folder) / "pooled.md").write_text(text)
            (pathlib.Path(folder) / "pooled.json").write_text(json.dumps(pooled, indent=1) + "\n")
        print(f"written: {out.path}/pooled.md, pooled.json")
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

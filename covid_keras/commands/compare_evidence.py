"""Several gan_evidence reports side by side: one table, a row per report and sample kind.

    python scripts/compare_evidence.py reports/guided-validation reports/per_class-validation \\
        --label guided --label per_class

Prints the Markdown table (independent-judge accuracy per class, label separation, the small-CNN
judge, TSTR minus TRTR, KID, memorisation); --out also writes OUT/comparison.md (a non-empty OUT
is refused unless --overwrite). Reports scored on different splits are refused.
"""

from __future__ import annotations

import argparse
import pathlib

from covid_keras import cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", help="gan_evidence.py output folders (or their evidence.json)")
    parser.add_argument("--label", action="append", default=None,
                        help="a row label per report, in order (default: the folder names)")
    parser.add_argument("--out", help="folder for comparison.md (a non-empty one is refused unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
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


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

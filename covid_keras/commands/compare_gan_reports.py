"""Several evaluate_gan reports side by side, pooled per configuration against the goals.

    python scripts/compare_gan_reports.py reports/guided-e0 reports/guided-e1 reports/guided-e2 \\
        reports/run3-e0 --out reports/comparison

Reports of one configuration (run folder, checkpoint, sample filter, TSTR blur) at different
--seed values are pooled: class fidelity against the judge, TSTR against TRTR, each with its
margin to the goal and the standard error over reports. Runs that differ only in their training seed are then
pooled over training seeds. Prints the Markdown; with --out also writes OUT/comparison.json and
OUT/comparison.md (a non-empty OUT is refused unless --overwrite).
"""

from __future__ import annotations

import argparse
import json
import pathlib

from covid_keras import cli
from covid_keras.evaluation import comparison


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", help="evaluate_gan.py output folders (or their metrics.json)")
    parser.add_argument("--out", help="folder for comparison.json and comparison.md (a non-empty one is refused unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.declare_paths(inputs=("reports",), outputs=("--out",))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = cli.OutputFolder(args.out, args.overwrite) if args.out else None
    compared = comparison.compare_paths(args.reports)
    text = comparison.markdown(compared)
    print(text)
    if out is not None:
        with out.writing() as folder:
            (pathlib.Path(folder) / "comparison.json").write_text(json.dumps(compared, indent=2))
            (pathlib.Path(folder) / "comparison.md").write_text(text)
        print(f"written: {out.path}/comparison.json, {out.path}/comparison.md")
    return 0


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

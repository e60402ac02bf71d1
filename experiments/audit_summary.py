"""Side by side: the shortcut audits of several classifiers (the `audit.json` that
`evaluate-classifier --report DIR --shortcuts` writes), as the Markdown table docs/results.md shows,
each verdict recomputed by the current `classifier.audit.verdict`.

    python experiments/audit_summary.py raw=reports/vgg16-audit lungs=reports/vgg16-lungs-audit
"""

from __future__ import annotations

import json
import pathlib
import sys

from covid_keras.classifier.audit import REGION_NAMES, verdict


def cell(row: dict, key: str, interval_key: str, signed: bool = False) -> str:
    if key not in row:
        return ""
    form = "{:+.3f}" if signed else "{:.3f}"
    low, high = row[interval_key]
    return f"{form.format(row[key])} [{form.format(low)}, {form.format(high)}]"


def main(argv: list[str]) -> int:
    if not argv or any("=" not in arg for arg in argv):
        print(__doc__, file=sys.stderr)
        return 2
    audits = {name: json.loads((pathlib.Path(folder) / "audit.json").read_text())
              for name, folder in (arg.split("=", 1) for arg in argv)}
    names = list(audits)
    print("| images | " + " | ".join(f"{n}: AUC | {n}: change | {n}: specificity" for n in names) + " |")
    print("|---|" + "---|---|---|" * len(names))
    first = audits[names[0]]
    for group in ("regions", "shifts"):
        for view in first[group]:
            cells = []
            for name in names:
                row = audits[name][group][view]
                cells += [cell(row, "auc", "auc_interval"), cell(row, "auc_difference", "auc_difference_interval", True),
                          f"{row['specificity']:.3f}"]
            print(f"| {REGION_NAMES.get(view, view)} | " + " | ".join(cells) + " |")
    print()
    for name in names:
        print(f"- {name}: {verdict(audits[name]['regions'])}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

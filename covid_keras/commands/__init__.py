"""The `covid-keras` command: one subcommand per task, each a module here with `parse_args`, `main`
and `run` (scripts/<module>.py are thin wrappers of the same). The list below is read without
importing any subcommand, so `covid-keras --help` answers before TensorFlow loads.
"""

from __future__ import annotations

import importlib
import os
import sys

SUBCOMMANDS = {
    "prepare": "prepare_data",
    "train-gan": "train_gan",
    "generate": "generate",
    "evaluate-gan": "evaluate_gan",
    "evidence": "gan_evidence",
    "compare-gan-reports": "compare_gan_reports",
    "compare-evidence": "compare_evidence",
    "train-translation-gan": "train_translation_gan",
    "train-classifier": "train_classifier",
    "evaluate-classifier": "evaluate_classifier",
    "tune": "tune_classifier",
    "experiment": "augment_experiment",
    "study": "augment_study",
    "export": "export",
    "predict": "predict",
    "reproduce": "reproduce",
}


def _summary(module: str) -> str:
    """The first line of a subcommand's docstring, read from its source (no import)."""
    path = os.path.join(os.path.dirname(__file__), f"{module}.py")
    with open(path) as f:
        text = f.read()
    if '"""' not in text:
        return ""
    paragraph = " ".join(text.split('"""')[1].strip().split("\n\n")[0].split())
    return paragraph.split(". ")[0].rstrip(".") + "."


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: covid-keras SUBCOMMAND [options]   (covid-keras SUBCOMMAND --help for its options)", "",
             "subcommands:"]
    lines += [f"  {name:<{width}}  {_summary(module)}" for name, module in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(usage(), file=sys.stderr)
        print(f"error: unknown subcommand {name!r}; choose one of {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    module = importlib.import_module(f"covid_keras.commands.{SUBCOMMANDS[name]}")
    sys.argv[0] = f"covid-keras {name}"
    return module.run(rest)


if __name__ == "__main__":
    sys.exit(main())

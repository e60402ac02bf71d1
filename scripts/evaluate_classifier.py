#!/usr/bin/env python
"""Print the metrics of a saved classifier on a labelled dataset as one JSON object.

The same command as `covid-keras evaluate-classifier`; its code and `--help` live in
covid_keras/commands/evaluate_classifier.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.evaluate_classifier import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

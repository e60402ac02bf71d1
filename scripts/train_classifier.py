#!/usr/bin/env python
"""Train one frozen-backbone COVID vs Normal classifier and save it with its metrics.

The same command as `covid-keras train-classifier`; its code and `--help` live in
covid_keras/commands/train_classifier.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.train_classifier import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

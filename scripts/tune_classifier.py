#!/usr/bin/env python
"""Search the classifier head's learning rate and optimizer with KerasTuner, on cached features.

The same command as `covid-keras tune`; its code and `--help` live in
covid_keras/commands/tune_classifier.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.tune_classifier import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

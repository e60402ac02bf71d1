#!/usr/bin/env python
"""Classify chest X-ray image files with an exported classifier.

The same command as `covid-keras predict`; its code and `--help` live in
covid_keras/commands/predict.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.predict import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

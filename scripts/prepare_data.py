#!/usr/bin/env python
"""Build the covid_xray dataset (if needed), print its split counts and skipped files, draw a preview.

The same command as `covid-keras prepare`; its code and `--help` live in
covid_keras/commands/prepare_data.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.prepare_data import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

#!/usr/bin/env python
"""Several gan_evidence reports side by side.

The same command as `covid-keras compare-evidence`; its code and `--help` live in
covid_keras/commands/compare_evidence.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.compare_evidence import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

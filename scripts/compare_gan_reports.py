#!/usr/bin/env python
"""Several evaluate_gan reports side by side, pooled per configuration against the goals.

The same command as `covid-keras compare-gan-reports`; its code and `--help` live in
covid_keras/commands/compare_gan_reports.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.compare_gan_reports import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

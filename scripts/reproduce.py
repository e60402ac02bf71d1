#!/usr/bin/env python
"""The whole study in one command: data -> GAN -> generated images -> baseline and augmented classifiers -> report.

The same command as `covid-keras reproduce`; its code and `--help` live in
covid_keras/commands/reproduce.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.reproduce import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

#!/usr/bin/env python
"""The augmentation study: does the GAN make a better classifier than classic augmentation when

The same command as `covid-keras study`; its code and `--help` live in
covid_keras/commands/augment_study.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.augment_study import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

#!/usr/bin/env python
"""Train (or resume) the study's conditional GAN.

The same command as `covid-keras train-gan`; its code and `--help` live in
covid_keras/commands/train_gan.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.train_gan import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

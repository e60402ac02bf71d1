#!/usr/bin/env python
"""Measure a conditional GAN run against real images: KID, class fidelity, TSTR vs TRTR, diversity.

The same command as `covid-keras evaluate-gan`; its code and `--help` live in
covid_keras/commands/evaluate_gan.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.evaluate_gan import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

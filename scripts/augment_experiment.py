#!/usr/bin/env python
"""Baseline vs GAN-augmented frozen-backbone classifiers, repeated over seeds (mean ± sd).

The same command as `covid-keras experiment`; its code and `--help` live in
covid_keras/commands/augment_experiment.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.augment_experiment import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

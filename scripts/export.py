#!/usr/bin/env python
"""Export trained models as versioned SavedModels for TensorFlow Serving.

The same command as `covid-keras export`; its code and `--help` live in
covid_keras/commands/export.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.export import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

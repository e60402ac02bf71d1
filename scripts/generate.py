#!/usr/bin/env python
"""Write a trained GAN's images as grey 8-bit PNGs in OUT/<class>/ (readable by `--data folder`).

The same command as `covid-keras generate`; its code and `--help` live in
covid_keras/commands/generate.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.generate import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

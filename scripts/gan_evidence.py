#!/usr/bin/env python
"""The GAN evidence protocol on a run: independent judge, filtered and unfiltered samples, KID

The same command as `covid-keras evidence`; its code and `--help` live in
covid_keras/commands/gan_evidence.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.gan_evidence import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

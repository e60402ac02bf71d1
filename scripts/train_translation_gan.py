#!/usr/bin/env python
"""Train the image-editing GAN (covid_keras.gan.translation): real X-rays of one class edited into the other.

The same command as `covid-keras train-translation-gan`; its code and `--help` live in
covid_keras/commands/train_translation_gan.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_keras.commands.train_translation_gan import main, run  # noqa: E402,F401  (main: for tests and notebooks)

if __name__ == "__main__":
    sys.exit(run())

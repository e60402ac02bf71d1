"""covid-keras: conditional-GAN augmentation and frozen-backbone COVID-19 classifiers for chest X-rays.

One module per concept; docs/architecture.md lists them lowest first, each importing only
those above it, and tests/test_architecture.py holds the code to that order.
"""

__version__ = "0.1.0"

"""Shared fixtures. Tests that need ../shared skip, with one reason, when a clone has no ../shared beside
it; under CI=true (CI always provides it) they fail instead."""

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Each test process (each pytest-xdist worker) builds the built-in phantoms in a TFDS folder of its own,
# before TFDS reads the variable: nothing lands in ~/tensorflow_datasets, and two workers never build
# one folder at once. Subprocesses of tests inherit it.
if "TFDS_DATA_DIR" not in os.environ:
    os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="covid-keras-tfds-")
    atexit.register(shutil.rmtree, os.environ["TFDS_DATA_DIR"], ignore_errors=True)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The same numbers on every machine: "auto" would pick bfloat16 on a CPU with bf16 instructions.
# tests/test_runtime.py passes its own environment to test the choice itself.
os.environ.setdefault("COVID_KERAS_PRECISION", "float32")

import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def radiography_dir() -> pathlib.Path:
    path = SHARED / "data" / "radiography"
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real test data missing: {path} (CI must provide ../shared)")
        pytest.skip(f"needs the real chest X-rays at {path} (../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def project_root() -> pathlib.Path:
    return PROJECT_ROOT

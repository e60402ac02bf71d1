"""Shared fixtures. Tests that need ../shared skip, with one reason, when a clone has no ../shared beside
it; under CI=true (CI always provides it) they fail instead."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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

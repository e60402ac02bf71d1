"""Shared fixtures. Tests that need ../shared fail (never skip) when it is missing: CI always has it."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def radiography_dir() -> pathlib.Path:
    path = SHARED / "data" / "radiography"
    assert path.is_dir(), f"real test data missing: {path} (CI always provides ../shared)"
    return path


@pytest.fixture(scope="session")
def project_root() -> pathlib.Path:
    return PROJECT_ROOT

"""The real `tfds build tfds_builders/covid_xray` command line, run as a user would."""

import pathlib
import subprocess
import sys

from covid_keras import data

TFDS = str(pathlib.Path(sys.executable).with_name("tfds"))


def tfds_build(project_root: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TFDS, "build", "tfds_builders/covid_xray", *args],
        cwd=project_root, capture_output=True, text=True, timeout=300,
    )


def test_cli_builds_phantom_small_and_the_library_loads_it(project_root, tmp_path):
    result = tfds_build(project_root, "--config", "phantom_small", "--data_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]

    spec = data.DataSpec("phantom_small", data_dir=str(tmp_path))
    assert data.build_report(spec)["split_counts"]["train"] == {"Normal": 60, "COVID": 60}
    test = list(data.load_split(spec, "test").as_numpy_iterator())
    assert len(test) == 40
    assert test[0]["image"].shape == (299, 299, 1)


def test_cli_default_config_without_download_explains_what_to_do(project_root, tmp_path):
    result = tfds_build(project_root, "--data_dir", str(tmp_path))
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]  # the one message the user reads
    assert last_line.startswith("covid_keras.sources.SourceError:")
    assert "kaggle.com" in last_line and "--manual_dir" in last_line and "--config phantom" in last_line

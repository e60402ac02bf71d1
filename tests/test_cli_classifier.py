"""Misuse of the classifier commands (train_classifier, tune_classifier, evaluate_classifier,
augment_experiment) through the real scripts: one `error:` line naming the flag or path, exit code 2,
no traceback, a user's earlier output untouched, and nothing written before the error.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from test_cli import (  # noqa: F401
    PROJECT_ROOT,
    assert_user_error,
    earlier_output,
    run_script,
    snapshot,
)

TRAIN = ["--backbone", "vgg16", "--data", "phantom_small", "--weights", "none", "--image-size", "32", "--epochs", "1"]


def test_train_classifier_refuses_a_non_empty_out_before_reading_data(earlier_output):
    before = snapshot(earlier_output)
    result = run_script("train_classifier.py", *TRAIN, "--out", earlier_output)
    assert assert_user_error(result) == f"error: {earlier_output} is not empty; pass --overwrite to replace it"
    assert snapshot(earlier_output) == before
    assert result.stdout == ""  # nothing ran: no data, no training


@pytest.mark.parametrize("change, named", [
    (["--epochs", "0"], ["--epochs"]),
    (["--batch-size", "-1"], ["--batch-size"]),
    (["--image-size", "10"], ["--image-size 10", "minimum is 32"]),
    (["--weights", "{tmp}/absent.weights.h5"], ["{tmp}/absent.weights.h5"]),
    (["--hyperparameters", "{tmp}/no-search"], ["{tmp}/no-search"]),
    (["--data", "folder", "--data-path", "{tmp}/no-such-tree"], ["{tmp}/no-such-tree"]),
    (["--data", "folder", "--manual-dir", "{tmp}/no-such-tree"], ["{tmp}/no-such-tree"]),  # the older name
    (["--target-sensitivity", "1.5"], ["--target-sensitivity"]),
    (["--out", "{tmp}/a_file"], ["--out", "{tmp}/a_file is a file"]),
    (["--out", "{tmp}/a_file/below"], ["--out", "{tmp}/a_file is a file"]),
])
def test_train_classifier_misuse_is_one_line_naming_it(tmp_path, change, named):
    (tmp_path / "a_file").write_text("not a folder")
    change = [item.format(tmp=tmp_path) for item in change]
    out = ["--out", tmp_path / "out"] if "--out" not in change else []
    result = run_script("train_classifier.py", *TRAIN, *out, *change)
    assert_user_error(result, *(name.format(tmp=tmp_path) for name in named))
    assert not (tmp_path / "out").exists() and (tmp_path / "a_file").read_text() == "not a folder"
    assert not list(tmp_path.glob(".*"))  # no partial output either


def test_a_kill_while_train_classifier_saves_leaves_the_previous_model(tmp_path):
    """A first run saves a classifier; a second with --overwrite is killed as soon as it starts saving."""
    from covid_keras import classifier

    out = tmp_path / "clf"
    first = run_script("train_classifier.py", *TRAIN, "--out", out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads(first.stdout[first.stdout.index("{"):])["out"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf"]  # the temporary folder became clf
    before = snapshot(out)

    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "train_classifier.py"), *TRAIN, "--seed", "1",
               "--overwrite", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    second = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while not list(tmp_path.glob(".clf.partial-*")):  # the save has begun
        assert second.poll() is None, "the second run ended before saving"
        assert time.time() < deadline, "the second run never started saving"
        time.sleep(0.01)
    second.send_signal(signal.SIGKILL)
    second.wait()

    assert snapshot(out) == before
    model, metadata = classifier.load_classifier(out)
    assert metadata["training"]["seed"] == 0 and model.output_shape == (None, 1)


def test_tune_classifier_refuses_a_non_empty_out(earlier_output):
    before = snapshot(earlier_output)
    result = run_script("tune_classifier.py", *TRAIN, "--trials", "1", "--out", earlier_output)
    assert_user_error(result, earlier_output, "--overwrite")
    assert snapshot(earlier_output) == before


@pytest.mark.parametrize("change, named", [
    (["--trials", "0"], ["--trials"]),
    (["--min-learning-rate", "0.1", "--max-learning-rate", "0.01"], ["--min-learning-rate", "--max-learning-rate"]),
    (["--weights", "{tmp}/absent"], ["{tmp}/absent"]),
])
def test_tune_classifier_misuse_is_one_line_naming_it(tmp_path, change, named):
    change = [item.format(tmp=tmp_path) for item in change]
    result = run_script("tune_classifier.py", *TRAIN, "--out", tmp_path / "out", *change)
    assert_user_error(result, *(name.format(tmp=tmp_path) for name in named))
    assert sorted(tmp_path.iterdir()) == []


def saved_classifier_stand_in(folder: pathlib.Path, model_bytes: bytes) -> pathlib.Path:
    """A classifier folder with valid metadata around a given model.keras."""
    folder.mkdir()
    (folder / "classifier.json").write_text(json.dumps(
        {"backbone": "vgg16", "image_size": 32, "class_names": ["Normal", "COVID"], "weights": {"name": "none"}}))
    (folder / "model.keras").write_bytes(model_bytes)
    return folder


@pytest.mark.parametrize("model, data, named", [
    ("{tmp}/absent", ["phantom_small"], ["{tmp}/absent"]),
    ("{tmp}/empty_model", ["phantom_small"], ["{tmp}/empty_model/model.keras", "empty"]),
    ("{tmp}/not_a_zip", ["phantom_small"], ["{tmp}/not_a_zip/model.keras"]),
    ("{tmp}/empty_model", ["folder", "{tmp}/no-such-tree"], ["{tmp}/no-such-tree"]),
    ("{tmp}/empty_model", ["folder", "a", "b"], ["--data"]),
    ("{tmp}/empty_model", ["folder", "--data-path", "{tmp}/no-such-tree"], ["{tmp}/no-such-tree"]),
])
def test_evaluate_classifier_misuse_is_one_line_naming_it(tmp_path, model, data, named):
    saved_classifier_stand_in(tmp_path / "empty_model", b"")
    saved_classifier_stand_in(tmp_path / "not_a_zip", b"this is not a Keras archive")
    result = run_script("evaluate_classifier.py", "--model", model.format(tmp=tmp_path),
                        "--data", *(item.format(tmp=tmp_path) for item in data))
    assert_user_error(result, *(name.format(tmp=tmp_path) for name in named))
    assert result.stdout == ""  # stdout holds the JSON only, and there is none


def test_evaluate_classifier_takes_one_path_only(capsys):
    from covid_keras.commands import evaluate_classifier

    with pytest.raises(SystemExit) as exit_info:
        evaluate_classifier.parse_args(["--model", "m", "--data", "folder", "a", "--data-path", "b"])
    assert exit_info.value.code == 2 and "--data-path" in capsys.readouterr().err
    assert evaluate_classifier.parse_args(["--model", "m", "--data", "folder", "--data-path", "b"]).data_path == "b"


def test_augment_experiment_refuses_a_non_empty_out_and_inputs_inside_it(tmp_path, earlier_output):
    before = snapshot(earlier_output)
    result = run_script("augment_experiment.py", "--quick", "--weights", "none", "--generated", tmp_path / "gen",
                        "--out", earlier_output)
    assert_user_error(result, earlier_output, "--overwrite")
    # --overwrite would delete the generated images if they lay inside --out.
    result = run_script("augment_experiment.py", "--quick", "--weights", "none", "--generated", earlier_output / "sub",
                        "--out", earlier_output, "--overwrite")
    assert_user_error(result, "--generated", earlier_output / "sub")
    assert snapshot(earlier_output) == before


def test_augment_experiment_without_generated_images_leaves_nothing(tmp_path):
    result = run_script("augment_experiment.py", "--quick", "--weights", "none", "--generated", tmp_path / "gen",
                        "--out", tmp_path / "out")
    assert_user_error(result, tmp_path / "gen")
    assert sorted(tmp_path.iterdir()) == []


def test_train_classifier_refuses_one_class_data(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(12):
        folder = tmp_path / "tree" / "COVID"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    result = run_script("train_classifier.py", "--backbone", "vgg16", "--weights", "none", "--image-size", "32",
                        "--epochs", "1", "--data", "folder", "--data-path", tmp_path / "tree",
                        "--data-dir", tmp_path / "tfds", "--out", tmp_path / "out")
    assert_user_error(result, "has no Normal images", "needs both classes")
    assert not (tmp_path / "out").exists()


def test_train_classifier_precision_is_chosen_said_and_recorded(tmp_path, capsys, monkeypatch):
    from covid_keras.commands import train_classifier

    summary = train_classifier.main([*TRAIN, "--precision", "mixed_bfloat16", "--out", str(tmp_path / "clf")])
    assert "feature precision: mixed_bfloat16 (--precision mixed_bfloat16)" in capsys.readouterr().err
    metadata = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert metadata["training"]["feature_precision"] == "mixed_bfloat16"
    assert metadata["precision"]["reason"] == "--precision mixed_bfloat16"
    assert 0 <= summary["metrics"]["test"]["accuracy"] <= 1

    monkeypatch.setenv("COVID_KERAS_PRECISION", "bf16")
    assert train_classifier.run([*TRAIN, "--out", str(tmp_path / "other")]) == 2
    assert "COVID_KERAS_PRECISION" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "other").exists()

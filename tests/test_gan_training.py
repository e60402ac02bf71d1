"""GAN runs (covid_keras.gan.training, covid_keras.generate, scripts/train_gan.py): files, resume, errors."""

import csv
import json
import math
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from covid_keras import data, generate, runtime
from covid_keras.gan import callbacks as gan_callbacks
from covid_keras.gan import config as gan_config
from covid_keras.gan import networks as gan_networks
from covid_keras.gan import presets as gan_presets
from covid_keras.gan import run_dir as gan_run_dir
from covid_keras.gan import training as gan_training

# A 32 px GAN small enough for CPU tests; phantom_small's train split is 120 images = 15 batches of 8.
TINY = dict(
    image_size=32, generator_filters=(8, 8, 8), discriminator_filters=(8,) * 5, base_channels=8, noise_dim=16,
    embedding_dim=4, batch_size=8, d_every=4, restart_epochs=2, samples_per_class=3, sample_every=1,
    checkpoint_every=2,
)
STEPS_PER_EPOCH = 15


def tiny_config(**overrides):
    return gan_presets.from_preset("3", **{**TINY, **overrides})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    data.prepare(data.DataSpec("phantom_small", data_dir=str(path)))
    return path


@pytest.fixture(scope="module")
def spec(data_dir):
    return data.DataSpec("phantom_small", data_dir=str(data_dir))


@pytest.fixture(scope="module")
def trained(spec, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return gan_training.train_gan(tiny_config(epochs=2), spec, run_dir, verbose=0)


def _csv_epochs(run_dir):
    with open(run_dir / gan_run_dir.LOSS_CSV, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _restored(run_dir, epochs):
    """A fresh GAN with the run's resume point loaded."""
    record = json.loads((run_dir / gan_run_dir.CONFIG_FILE).read_text())
    model = gan_training.build_gan(gan_config.GanConfig.from_dict(record["gan"]), STEPS_PER_EPOCH)
    assert gan_training.restore_train_state(model, run_dir) == epochs
    return model


def test_a_run_leaves_everything_behind(trained):
    run = trained.run_dir
    for name in ("config.json", "losses.csv", "loss_curve.png", "generator.weights.h5", "discriminator.weights.h5",
                 "samples/epoch_00001.png", "samples/epoch_00002.png", "weights/generator-epoch00002.weights.h5",
                 "weights/discriminator-epoch00002.weights.h5", "checkpoints/state.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert _csv_epochs(run) == [0, 1]
    assert [p.name for p in (run / "checkpoints").glob("train_state-*")] == ["train_state-epoch00002.weights.h5"]
    assert trained.class_names == ["Normal", "COVID"]
    grid = np.asarray(Image.open(run / "samples/epoch_00002.png").convert("RGB")).astype(int)
    assert np.array_equal(grid[..., 0], grid[..., 1]) and np.array_equal(grid[..., 1], grid[..., 2]), "grid not grey"


def test_checkpoint_round_trips_optimizer_state_and_step_counter(trained):
    restored = _restored(trained.run_dir, epochs=2)
    steps = 2 * STEPS_PER_EPOCH
    assert int(restored.step_counter.numpy()) == steps
    assert int(restored.g_optimizer.iterations.numpy()) == steps
    assert int(restored.d_optimizer.iterations.numpy()) == math.ceil(steps / 4)
    original = trained.gan
    pairs = list(zip(original.weights + original.g_optimizer.variables + original.d_optimizer.variables,
                     restored.weights + restored.g_optimizer.variables + restored.d_optimizer.variables))
    assert len(pairs) > 50
    for a, b in pairs:
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a), err_msg=a.path)
    # The cosine-restart schedule resumes where it was, not from its start.
    assert float(np.asarray(restored.g_optimizer.learning_rate)) == pytest.approx(
        float(np.asarray(original.g_optimizer.learning_rate))
    )


def test_the_record_says_which_precision_and_why(trained):
    record = json.loads((trained.run_dir / gan_run_dir.CONFIG_FILE).read_text())
    assert record["precision"] == "float32"
    assert record["precision_reason"] == "COVID_KERAS_PRECISION=float32"  # tests/conftest.py pins it


def test_a_resumed_run_keeps_its_recorded_precision_under_auto(tmp_path, monkeypatch):
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)  # conftest pins float32; this tests "auto" itself
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    fresh = gan_training._precision_for(tmp_path / "new", "auto")
    assert fresh == ("mixed_bfloat16", "auto: CPU has avx512_bf16", "auto")
    record = {"gan": {"epochs": 2}, "precision": "float32", "precision_reason": "auto: CPU lacks avx512_bf16/amx_bf16"}
    gan_run_dir.claim_run_dir(tmp_path / "old", record)
    assert gan_training._precision_for(tmp_path / "old", "auto") == (
        "float32", "auto: the resumed run's float32", "auto")
    assert gan_training._precision_for(tmp_path / "old", "mixed_bfloat16").precision == "mixed_bfloat16"
    # The reason is not compared on resume, and the first one stays in the file.
    gan_run_dir.claim_run_dir(tmp_path / "old", {**record, "precision_reason": "precision float32"})
    assert json.loads((tmp_path / "old" / "config.json").read_text())["precision_reason"].startswith("auto: CPU lacks")


def test_a_different_config_or_a_foreign_dir_is_refused(trained, spec, tmp_path):
    with pytest.raises(ValueError, match=r"config\.json belongs to a different run.*epochs: 2 in the file, 3 now"):
        gan_training.train_gan(tiny_config(epochs=3), spec, trained.run_dir, verbose=0)
    with pytest.raises(ValueError, match="too small for 3 upsampling blocks"):
        gan_training.train_gan(tiny_config(image_size=8), spec, tmp_path / "small", verbose=0)
    assert not (tmp_path / "small").exists()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and has no config.json"):
        gan_training.train_gan(tiny_config(epochs=1), spec, tmp_path, verbose=0)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_nan_losses_stop_and_keep_the_last_good_checkpoint(trained, tmp_path):
    guard = gan_callbacks.StopOnNonFiniteLoss()
    checkpoint = gan_callbacks.AtomicCheckpoint(tmp_path, keep_every=1, nan_guard=guard)
    for callback in (guard, checkpoint):
        callback.set_model(trained.gan)
    checkpoint.on_epoch_end(0, {"g_loss": 0.5, "d_loss": 0.7})
    guard.on_epoch_begin(1)
    guard.on_train_batch_end(3, {"g_loss": float("nan"), "d_loss": 0.7})
    checkpoint.on_epoch_end(1, {"g_loss": float("nan"), "d_loss": 0.7})
    assert trained.gan.stop_training
    trained.gan.stop_training = False
    assert gan_run_dir.completed_epochs(tmp_path) == 1
    assert not (tmp_path / "weights/generator-epoch00002.weights.h5").exists()


def test_load_generator_and_its_errors(trained, tmp_path):
    generator, config, class_names = gan_training.load_generator(trained.run_dir)
    assert generator.output_shape == (None, 32, 32, 1) and class_names == ["Normal", "COVID"]
    assert gan_training.load_generator(trained.run_dir, which=2)[0].count_params() == generator.count_params()
    with pytest.raises(FileNotFoundError, match=r"generator-epoch00004\.weights\.h5 is missing"):
        gan_training.load_generator(trained.run_dir, which=4)
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        gan_training.load_generator(tmp_path)
    # A checkpoint of another architecture under the run's name.
    shutil.copy(trained.run_dir / "config.json", tmp_path / "config.json")
    other = gan_networks.build_generator(32, 16, 2, 4, filters=(8, 16, 8), base_channels=8)
    other.save_weights(tmp_path / "generator.weights.h5")
    with pytest.raises(ValueError, match=r"generator\.weights\.h5 does not fit"):
        gan_training.load_generator(tmp_path)


def test_generated_pngs_are_grey_8bit_seeded_and_never_overwritten(trained, tmp_path):
    generator, config, class_names = gan_training.load_generator(trained.run_dir)
    counts = generate.write_generated(generator, class_names, 3, tmp_path / "a", seed=5, batch_size=2, verbose=0)
    assert counts == {"Normal": 3, "COVID": 3}
    files = sorted((tmp_path / "a").rglob("*.png"))
    assert len(files) == 6
    for path in files:
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (32, 32)
            assert np.asarray(image).dtype == np.uint8
    generate.write_generated(generator, class_names, 3, tmp_path / "b", seed=5, batch_size=3, verbose=0)
    for a in files:
        b = tmp_path / "b" / a.relative_to(tmp_path / "a")
        # Same seed, other batching: the same images up to float rounding (at most one grey level).
        difference = np.abs(np.asarray(Image.open(a), int) - np.asarray(Image.open(b), int))
        assert difference.max() <= 1 and difference.mean() < 0.01, a.name
    before = files[0].read_bytes()
    with pytest.raises(FileExistsError, match="not empty"):
        generate.write_generated(generator, class_names, 3, tmp_path / "a", seed=6, verbose=0)
    assert files[0].read_bytes() == before and len(list((tmp_path / "a").rglob("*.png"))) == 6


def test_data_with_one_class_is_a_clear_error(tmp_path):
    covid = tmp_path / "root" / "COVID"
    covid.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.full((40, 40), 40 * i, np.uint8)).save(covid / f"{i}.png")
    spec = data.DataSpec("folder", path=str(tmp_path / "root"), data_dir=str(tmp_path / "tfds"))
    with pytest.raises(ValueError, match="1 class"):
        gan_training.train_gan(tiny_config(epochs=1), spec, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_a_killed_run_resumes_with_the_same_command(project_root, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    epochs = 6
    flags = []
    for name, value in {**TINY, "epochs": epochs}.items():
        flags.append("--" + name.replace("_", "-"))
        flags += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
    command = [sys.executable, str(project_root / "scripts" / "train_gan.py"), "--run", "3", "--data", "phantom_small",
               "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--verbose", "2", *flags]
    state = run_dir / "checkpoints" / "state.json"

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not state.exists():
        assert first.poll() is None, f"training ended before its first checkpoint:\n{first.stdout.read()[-3000:]}"
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    first.kill()  # SIGKILL: no cleanup, whatever it was writing stays half-written
    first.wait()
    killed_at = gan_run_dir.completed_epochs(run_dir)
    assert 1 <= killed_at < epochs

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    resumed = re.search(r"resuming \S+ from epoch (\d+) \(step (\d+)\)", second.stdout)
    assert resumed, second.stdout[-2000:]
    assert int(resumed.group(1)) == killed_at and int(resumed.group(2)) == killed_at * STEPS_PER_EPOCH
    assert gan_run_dir.completed_epochs(run_dir) == epochs
    assert _csv_epochs(run_dir) == list(range(epochs))

    # The K counter and both optimizers carried on across the kill: as if it had never happened.
    restored = _restored(run_dir, epochs)
    steps = epochs * STEPS_PER_EPOCH
    assert int(restored.step_counter.numpy()) == steps
    assert int(restored.g_optimizer.iterations.numpy()) == steps
    assert int(restored.d_optimizer.iterations.numpy()) == math.ceil(steps / 4)


def test_a_nan_stop_before_any_checkpoint_says_there_is_none(data_dir, tmp_path, monkeypatch):
    class NanAtOnce(gan_callbacks.StopOnNonFiniteLoss):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, {**(logs or {}), "g_loss": float("nan")})

    monkeypatch.setattr(gan_training, "StopOnNonFiniteLoss", NanAtOnce)
    spec = data.DataSpec("phantom_small", data_dir=str(data_dir))
    with pytest.raises(FloatingPointError, match="no epoch had completed, so there is no checkpoint to resume from"):
        gan_training.train_gan(tiny_config(epochs=2), spec, tmp_path / "run", verbose=0)
    assert gan_training.completed_epochs(tmp_path / "run") == 0

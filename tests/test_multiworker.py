"""Training on several workers (tf.distribute.MultiWorkerMirroredStrategy, TF_CONFIG): two CPU workers on
loopback started by scripts/launch_local_workers.sh, compared with one process at the same global batch,
and killed and restarted mid-run. Tiny phantoms at 32 px; each run takes some 20-40 s on two cores.
"""

import csv
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from test_cli import assert_user_error, run_script
from test_gan_training import TINY

from covid_keras import data, distribute
from covid_keras.gan import run_dir as gan_run_dir
from covid_keras.gan import training as gan_training

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCHER = PROJECT_ROOT / "scripts" / "launch_local_workers.sh"
# Dropout draws its masks per replica, so with it two workers equal one process only in distribution.
GAN_FLAGS = {**TINY, "dropout": 0.0}


def gan_command(data_dir, run_dir, epochs):
    flags = []
    for name, value in {**GAN_FLAGS, "epochs": epochs}.items():
        flags.append("--" + name.replace("_", "-"))
        flags += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
    return [sys.executable, str(PROJECT_ROOT / "scripts" / "train_gan.py"), "--run", "3", "--data", "phantom_small",
            "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--verbose", "2", *flags]


def environment(scratch: pathlib.Path) -> dict:
    """This checkout's package, float32, and TMPDIR in `scratch`, where a worker's temporary run folder goes."""
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
            "TF_CPP_MIN_LOG_LEVEL": "2", "COVID_KERAS_PRECISION": "float32", "TMPDIR": str(scratch),
            "PYTHON": sys.executable}


def launch(workers, command, env, **kwargs):
    return subprocess.Popen(["bash", str(LAUNCHER), str(workers), "--", *command], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def finish(process, timeout=300):
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def losses(run_dir):
    with open(run_dir / gan_run_dir.LOSS_CSV, newline="") as f:
        return list(csv.DictReader(f))


def step_counts(run_dir):
    """(G steps, D steps, the GAN's step counter) at the run's resume point."""
    config, _ = gan_run_dir.read_run_config(run_dir)
    gan = gan_training.build_gan(config)
    gan_training.restore_train_state(gan, run_dir)
    return (int(gan.g_optimizer.iterations.numpy()), int(gan.d_optimizer.iterations.numpy()),
            int(gan.step_counter.numpy()))


def worker_pid(launcher_pid: int, task: int) -> int:
    """The pid of the launcher's worker with TF_CONFIG task index `task`."""
    children = subprocess.run(["pgrep", "-P", str(launcher_pid)], capture_output=True, text=True).stdout.split()
    for pid in map(int, children):
        environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        config = [item[len(b"TF_CONFIG="):] for item in environ if item.startswith(b"TF_CONFIG=")]
        if config and json.loads(config[0])["task"]["index"] == task:
            return pid
    raise AssertionError(f"no worker {task} among the launcher's children {children}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    data.prepare(data.DataSpec("phantom_small", data_dir=str(path)))  # once, before any worker reads it
    return path


@pytest.fixture(scope="module")
def gan_runs(data_dir, tmp_path_factory):
    """The same 2-epoch run (global batch 8) in one process and on two workers of 4 each."""
    root = tmp_path_factory.mktemp("gan")
    env = environment(root / "tmp")
    one = subprocess.run(gan_command(data_dir, root / "one", 2), env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    started = time.monotonic()
    # A budget never reached: every epoch's end asks the chief's clock, a collective the workers must agree on.
    code, out = finish(launch(2, gan_command(data_dir, root / "two", 2) + ["--minutes", "600"], env))
    assert code == 0, out[-5000:]
    return {"root": root, "one": root / "one", "two": root / "two", "log": out, "seconds": time.monotonic() - started}


def test_two_gan_workers_follow_the_one_process_loss_curve(gan_runs):
    """Same initial weights (one seed), same data order (sharded by data, not file), same noise (drawn for the
    global batch from (seed, step)): only the order of floating-point sums differs, so 1e-4 relative."""
    one, two = losses(gan_runs["one"]), losses(gan_runs["two"])
    assert [row["epoch"] for row in two] == [row["epoch"] for row in one] == ["0", "1"]
    for a, b in zip(one, two):
        for key in ("g_loss", "d_loss", "d_real_accuracy", "d_fake_accuracy"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4, abs=1e-6), (a["epoch"], key)
    assert step_counts(gan_runs["two"]) == step_counts(gan_runs["one"])
    assert "batch 8 over 2 replica(s)" in gan_runs["log"]


def test_only_the_chief_writes_the_run_folder(gan_runs):
    two = gan_runs["two"]
    expected = {gan_run_dir.CONFIG_FILE, gan_run_dir.LOSS_CSV, gan_run_dir.LOSS_CURVE, gan_run_dir.GENERATOR_WEIGHTS,
                gan_run_dir.DISCRIMINATOR_WEIGHTS, gan_run_dir.SAMPLES_DIR, gan_run_dir.CHECKPOINT_DIR,
                gan_run_dir.SNAPSHOT_DIR, gan_run_dir.TENSORBOARD_DIR}
    assert {p.name for p in two.iterdir()} == expected
    assert sorted(p.name for p in (two / gan_run_dir.SAMPLES_DIR).iterdir()) == ["epoch_00001.png", "epoch_00002.png"]
    assert gan_run_dir.completed_epochs(two) == 2
    # One process writes TensorBoard (the chief: its scalars and its sample images, one event file each;
    # the writer's pid is in the file name), and the worker's temporary run folder is gone.
    events = list((two / gan_run_dir.TENSORBOARD_DIR).rglob("events.out.tfevents.*"))
    assert events and len({path.name.split(".")[-3] for path in events}) == 1, [path.name for path in events]
    assert list((gan_runs["root"] / "tmp").iterdir()) == []


def test_a_killed_gan_worker_resumes_to_the_same_steps(gan_runs, data_dir, tmp_path):
    """SIGKILL worker 1 after the first checkpoint; the launcher stops worker 0; the same command resumes both."""
    run_dir, epochs = tmp_path / "run", 3
    env = environment(tmp_path / "tmp")
    state = run_dir / gan_run_dir.CHECKPOINT_DIR / gan_run_dir.STATE_FILE
    first = launch(2, gan_command(data_dir, run_dir, epochs), env)
    deadline = time.monotonic() + 240
    while not state.exists():
        assert first.poll() is None, f"training ended before its first checkpoint:\n{first.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    os.kill(worker_pid(first.pid, task=1), signal.SIGKILL)
    code, out = finish(first)
    assert code != 0, out[-3000:]
    killed_at = gan_run_dir.completed_epochs(run_dir)
    assert 1 <= killed_at < epochs, f"the kill came after the run ended (epoch {killed_at})"
    left_by_the_kill = set((tmp_path / "tmp").iterdir())  # a killed worker cannot remove its scratch folder

    code, out = finish(launch(2, gan_command(data_dir, run_dir, epochs), env))
    assert code == 0, out[-5000:]
    assert f"resuming {run_dir} from epoch {killed_at}" in out
    assert gan_run_dir.completed_epochs(run_dir) == epochs
    assert [row["epoch"] for row in losses(run_dir)] == [str(e) for e in range(epochs)]
    # As an uninterrupted run: a G step per batch, a D step at every d_every-th (the phase kept across the kill).
    g_steps, _, counter = step_counts(gan_runs["one"])
    per_epoch = g_steps // 2
    total = per_epoch * epochs
    assert step_counts(run_dir) == (total, len(range(0, total, GAN_FLAGS["d_every"])), total)
    assert set((tmp_path / "tmp").iterdir()) == left_by_the_kill


# --------------------------------------------------------------------------- choosing the strategy


def test_strategy_choice_from_tf_config():
    two = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}})
    assert distribute.cluster_workers({}) == 0
    assert distribute.cluster_workers({"TF_CONFIG": two}) == 2
    assert distribute.cluster_workers({"TF_CONFIG": json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}})}) == 2
    one = distribute.choose_strategy("auto", environ={})
    assert one.num_replicas_in_sync == 1 and distribute.is_chief(one) and distribute.worker_count(one) == 1
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.choose_strategy("multi-worker", environ={})
    with pytest.raises(ValueError, match="unknown strategy 'many'"):
        distribute.choose_strategy("many")
    with pytest.raises(ValueError, match="not a JSON object"):
        distribute.cluster_workers({"TF_CONFIG": "[1, 2"})


def test_the_chief_keeps_its_folder_and_a_worker_loses_its_scratch(tmp_path):
    one = distribute.choose_strategy("one", environ={})
    with distribute.worker_scratch_dir(tmp_path / "run", one) as out:
        assert out == tmp_path / "run"

    class Resolver:  # what MultiWorkerMirroredStrategy.cluster_resolver answers for worker 1
        task_type, task_id = "worker", 1

        def cluster_spec(self):
            import tensorflow as tf
            return tf.train.ClusterSpec({"worker": ["a:1", "b:1"]})

    class Worker:
        cluster_resolver = Resolver()

    assert not distribute.is_chief(Worker()) and distribute.worker_count(Worker()) == 2
    with pytest.raises(RuntimeError):
        with distribute.worker_scratch_dir(tmp_path / "run", Worker()) as out:
            assert out != tmp_path / "run" and out.is_dir()
            (out / "losses.csv").write_text("x")
            raise RuntimeError("a failed epoch")
    assert not out.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("script, arguments", [
    ("train_gan.py", ["--data", "phantom_small", "--epochs", "1", "--run-dir", "{tmp}/run"]),
    ("train_classifier.py", ["--backbone", "vgg16", "--weights", "none", "--data", "phantom_small", "--out", "{tmp}/run"]),
])
def test_multi_worker_without_tf_config_is_a_usage_error(tmp_path, script, arguments):
    result = run_script(script, "--strategy", "multi-worker", *[a.format(tmp=tmp_path) for a in arguments])
    assert_user_error(result, "--strategy multi-worker", "TF_CONFIG")
    assert not (tmp_path / "run").exists()

def test_commands_not_built_for_several_workers_refuse_a_cluster(tmp_path, monkeypatch, capsys):
    from covid_keras.commands import augment_experiment, augment_study, reproduce, train_gan, tune_classifier

    two = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}})
    monkeypatch.setenv("TF_CONFIG", two)
    assert augment_experiment.run(["--quick", "--generated", str(tmp_path), "--out", str(tmp_path / "experiment")]) == 2
    assert tune_classifier.run(["--backbone", "vgg16", "--out", str(tmp_path / "tune")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("TF_CONFIG names 2 processes" in line for line in errors)
    assert not (tmp_path / "experiment").exists() and not (tmp_path / "tune").exists()
    with pytest.raises(SystemExit) as help_exit:  # --help still answers
        tune_classifier.run(["--help"])
    assert help_exit.value.code == 0
    # The commands that train across workers are not refused for it: here a bad flag is what they name.
    assert train_gan.run(["--epochs", "0"]) == 2
    assert augment_study.run(["--out", str(tmp_path / "study")]) == 2  # no --weights
    with pytest.raises(SystemExit) as bad_flag:
        reproduce.run(["--quick", "--seeds", "0"])
    assert bad_flag.value.code == 2
    assert "TF_CONFIG" not in capsys.readouterr().err


# --------------------------------------------------------------------------- the classifier's head


def classifier_command(data_dir, out, epochs):
    return [sys.executable, str(PROJECT_ROOT / "scripts" / "train_classifier.py"), "--backbone", "vgg16",
            "--weights", "none", "--data", "phantom_small", "--data-dir", str(data_dir), "--image-size", "32",
            "--epochs", str(epochs), "--batch-size", "8", "--feature-cache", str(out.parent / "features"),
            "--out", str(out)]


def head_history(out):
    return json.loads((out / "classifier.json").read_text())["training"]["history"]


@pytest.fixture(scope="module")
def classifier_runs(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("classifier")
    env = environment(root / "tmp")
    one = subprocess.run(classifier_command(data_dir, root / "one", 2), env=env, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    code, out = finish(launch(2, classifier_command(data_dir, root / "two", 2), env))
    assert code == 0, out[-5000:]
    return {"root": root, "one": root / "one", "two": root / "two"}


def test_two_classifier_workers_follow_the_one_process_head(classifier_runs):
    """Same features (each worker computes them; one cache), same initial head (one seed), same shuffle:
    1e-4 relative. The phantom splits fill whole batches of 8, so both workers always hold 4."""
    one, two = head_history(classifier_runs["one"]), head_history(classifier_runs["two"])
    assert two["optimizer_steps"] == one["optimizer_steps"] > 0
    for key in ("loss", "val_loss", "accuracy"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    assert sorted(p.name for p in classifier_runs["two"].iterdir()) == ["classifier.json", "model.keras", "roc.png"]
    # No backup left beside OUT, no worker folder left in TMPDIR.
    assert sorted(p.name for p in classifier_runs["root"].iterdir()) == ["features", "one", "tmp", "two"]
    assert list((classifier_runs["root"] / "tmp").iterdir()) == []


def test_a_killed_classifier_worker_resumes_to_the_same_steps(classifier_runs, data_dir, tmp_path):
    out, epochs = tmp_path / "out", 8  # the kill comes within 20 ms of the first backup, epochs before the end
    env = environment(tmp_path / "tmp")
    state = tmp_path / ".out.backup" / "state.json"
    first = launch(2, classifier_command(data_dir, out, epochs), env)
    deadline = time.monotonic() + 240
    while not state.exists():
        assert first.poll() is None, f"training ended before its first backup:\n{first.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "no backup within 240 s"
        time.sleep(0.02)
    os.kill(worker_pid(first.pid, task=1), signal.SIGKILL)
    code, log = finish(first)
    assert code != 0 and not out.exists(), log[-3000:]
    killed_at = json.loads(state.read_text())["epoch"]
    assert 1 <= killed_at < epochs

    code, log = finish(launch(2, classifier_command(data_dir, out, epochs), env))
    assert code == 0, log[-5000:]
    history = head_history(out)
    per_epoch = head_history(classifier_runs["one"])["optimizer_steps"] // 2
    assert history["optimizer_steps"] == per_epoch * epochs  # as uninterrupted
    assert len(history["loss"]) == epochs - killed_at  # the restart trained only the epochs left
    assert not state.parent.exists()


# --------------------------------------------------------------------------- the augmentation study

# The quick study cut to one subset (all images), one GAN epoch and two classifier seeds: 8 cells, 16 heads.
STUDY_FLAGS = ["--quick", "--sizes", "all", "--classifier-seeds", "2", "--gan-epochs", "1"]


def study_command(data_dir, out):
    return [sys.executable, str(PROJECT_ROOT / "scripts" / "augment_study.py"), *STUDY_FLAGS,
            "--data-dir", str(data_dir), "--out", str(out)]


def test_a_study_on_two_workers_trains_its_gan_across_them(data_dir, tmp_path):
    """The guided GAN (class guide, moving-average generator) trains across both workers, to the steps its
    config asks; the chief alone writes the study and trains its heads; run again, both agree that the
    GAN is done. (Its losses equal one process's only in distribution: DiffAugment, dropout and the
    guide's BatchNorm work per replica.)"""
    env = environment(tmp_path / "tmp")
    out = tmp_path / "study"
    code, log = finish(launch(2, study_command(data_dir, out), env))
    assert code == 0, log[-5000:]
    assert "[w1] the GANs are trained; the chief goes on alone" in log
    assert "[w1] done: this worker's share of the GANs" in log and "[w0] done: " in log
    record = json.loads((out / "results.json").read_text())
    assert len(record["cells"]) == 8 and not record["unfinished_cells"]
    assert len(list((out / "classifiers").glob("*/seed*/model.keras"))) == 16
    run_dir = out / "gans" / "nall-seed0"
    config, _ = gan_run_dir.read_run_config(run_dir)
    g_steps = config.epochs * (config.epoch_images // config.batch_size)
    assert step_counts(run_dir) == (g_steps, len(range(0, g_steps, config.d_every)), g_steps)
    assert all(math.isfinite(float(row["g_loss"])) for row in losses(run_dir))
    assert list((tmp_path / "tmp").iterdir()) == []  # the worker's temporary run folder is gone

    # Both again: the GAN is the chief's "done" on both, so nothing trains and both end.
    before = {p: p.stat().st_mtime_ns for p in out.glob("classifiers/*/*/model.keras")}
    code, log = finish(launch(2, study_command(data_dir, out), env))
    assert code == 0, log[-5000:]
    assert {p: p.stat().st_mtime_ns for p in out.glob("classifiers/*/*/model.keras")} == before
    assert "generator steps on" not in log and "seed 0: test accuracy" not in log


# --------------------------------------------------------------------------- the one-command reproduction

REPRODUCE_SCRIPT = """
import sys
from covid_keras import distribute
strategy = distribute.choose_strategy("auto")  # before any other TensorFlow op
from covid_keras import reproduce
profile = reproduce.Profile(
    "two-workers", data="phantom_small", gan_evaluation=None, per_class=5, backbones=("vgg16",), seeds=(0,),
    image_size=32, epochs=1, batch_size=4,
    gan_overrides={"image_size": 32, "epochs": 2, "batch_size": 4, "generator_filters": (8, 8),
                   "discriminator_filters": (8, 8, 8), "base_channels": 8, "sample_every": 1, "checkpoint_every": 1},
)
record = reproduce.reproduce(sys.argv[1], data_dir=sys.argv[2], profile=profile, weights="none", verbose=0,
                             strategy=strategy)
print("worker ended after the GAN" if record.get("worker") else "chief wrote the report", flush=True)
"""


def test_a_reproduction_on_two_workers_trains_its_gan_across_them(data_dir, tmp_path):
    """The GAN across both workers, to its configured steps; the rest is the chief's, the other ends."""
    out = tmp_path / "out"
    command = [sys.executable, "-c", REPRODUCE_SCRIPT, str(out), str(data_dir)]
    code, log = finish(launch(2, command, environment(tmp_path / "tmp")))
    assert code == 0, log[-5000:]
    assert "[w0] chief wrote the report" in log and "[w1] worker ended after the GAN" in log
    assert (out / "report" / "README.md").is_file() and (out / "generated.json").is_file()
    config, _ = gan_run_dir.read_run_config(out / "gan")
    g_steps, d_steps, counter = step_counts(out / "gan")
    assert g_steps == counter > 0 and g_steps % config.epochs == 0 and d_steps == len(range(0, g_steps, config.d_every))
    assert [row["epoch"] for row in losses(out / "gan")] == ["0", "1"]
    # The worker's temporary run folder is gone (TFDS leaves a folder of its own in TMPDIR on the chief).
    assert not [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("gan-worker")]

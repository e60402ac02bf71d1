"""A conditional-GAN run folder `runs/<name>/`: its layout, its record (config.json), its resume point.

What a run directory holds:

    config.json                       the GanConfig, the data it trained on, the class names, the
                                      precision and why it was chosen (runtime.choose_precision)
    losses.csv                        per-epoch G/D losses, D accuracies and learning rates (CSVLogger)
    tensorboard/                      TensorBoard logs
    samples/epoch_00010.png           fixed noise, one row per label, every `sample_every` epochs and the last
    loss_curve.png                    smoothed G and D losses, written at the end
    generator.weights.h5              latest generator / discriminator weights
    discriminator.weights.h5
    weights/generator-epoch00010.weights.h5   kept every `checkpoint_every` epochs (and D's)
    checkpoints/state.json            {"epoch": N, "train_state": FILE}: the resume point, every epoch
    checkpoints/train_state-epoch0000N.weights.h5   both models, both optimizers, the step counter
    class_guide.json                  with class_guide_weight > 0: the class guide's accuracy on real
                                      images (it is trained once, before the first epoch; its weights
                                      travel in the train state)
    class_guide.weights.h5            the trained guide alone (`load_class_guide`: filtering samples)
    init_from.json                    with `init_from`: the run and epoch the weights started from

Every file is written to a temporary name and moved into place (`os.replace`), and state.json is
moved last, so a kill at any moment leaves the previous resume point intact. Re-running the same
command resumes from it: optimizer slots and iterations (hence the learning-rate schedule), and the
GAN's step counter (hence the D-every-K phase) come back with the weights. Data order after a
resume restarts from the shuffle's first permutation.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
from typing import TYPE_CHECKING, Sequence

from covid_keras.files import atomic_write_text, read_json
from covid_keras.gan.config import GanConfig

if TYPE_CHECKING:  # no TensorFlow at run time
    from covid_keras import data

CONFIG_FILE = "config.json"
LOSS_CSV = "losses.csv"
LOSS_CURVE = "loss_curve.png"
TENSORBOARD_DIR = "tensorboard"
SAMPLES_DIR = "samples"
SNAPSHOT_DIR = "weights"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
GENERATOR_WEIGHTS = "generator.weights.h5"
DISCRIMINATOR_WEIGHTS = "discriminator.weights.h5"
GUIDE_REPORT = "class_guide.json"
GUIDE_WEIGHTS = "class_guide.weights.h5"
INIT_REPORT = "init_from.json"
WEIGHTS_SUFFIX = ".weights.h5"
PRECISION_REASON = "precision_reason"  # config.json's key for why `precision` was chosen
CLASSES_DIR = "classes"  # a class-separate run's folder of per-class runs (covid_keras.gan.class_separate)



def run_record(
    config: GanConfig, data_spec: data.DataSpec, class_names: Sequence[str], precision: str, init_from: str | None,
    train_files: Sequence[str] | None = None, precision_reason: str | None = None,
) -> dict:
    record = {
        "gan": config.to_dict(),
        "precision": precision,
        "data": {"config": data_spec.config, "path": data_spec.path},
        "class_names": list(class_names),
    }
    if init_from is not None:  # absent otherwise, so older run dirs keep matching their command
        record["init_from"] = init_from
    if precision_reason is not None:
        record[PRECISION_REASON] = precision_reason
    if train_files is not None:  # the whole list: a run on a subset says which images it saw
        record["data"]["train_files"] = sorted(train_files)
    return record



def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key, "<missing>"), wanted.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} in the file, {b!r} now")
    return out


def claim_run_dir(run_dir: pathlib.Path, record: dict) -> None:
    """Create the run dir with config.json, or accept an existing one holding the same run."""
    config_path = run_dir / CONFIG_FILE
    if config_path.exists():
        saved = read_run_record(run_dir)
        if not isinstance(saved, dict):
            raise ValueError(f"{config_path} is not a GAN run record (a JSON object); fix or move it")
        # Why the precision was chosen is not what the run is: a resume may be asked differently.
        differences = _differences({k: v for k, v in saved.items() if k != PRECISION_REASON},
                                   {k: v for k, v in record.items() if k != PRECISION_REASON})
        if differences:
            raise ValueError(
                f"{config_path} belongs to a different run ({'; '.join(differences)}): "
                "refusing to overwrite it; choose another run dir"
            )
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"{run_dir} is not empty and has no {CONFIG_FILE}: refusing to write a GAN run into it")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, json.dumps(record, indent=2) + "\n")


def class_run_dir(run_dir: str | os.PathLike, class_name: str) -> pathlib.Path:
    """The folder of `class_name`'s run inside a class-separate run."""
    return pathlib.Path(run_dir) / CLASSES_DIR / class_name


def read_run_record(run_dir: pathlib.Path) -> dict:
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} is missing: {run_dir} is not a GAN run directory")
    try:
        with open(config_path) as f:
            return json.load(f)
    except ValueError as e:
        raise ValueError(f"{config_path} is not valid JSON: {e}") from e


def run_precision(run_dir: str | os.PathLike) -> dict | None:
    """The precision a run trained in and why ({"precision", "reason"}); None for a folder without a
    readable record (e.g. a translation run keeps its own)."""
    try:
        record = read_run_record(pathlib.Path(run_dir))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "precision" not in record:
        return None
    return {"precision": record["precision"], "reason": record.get(PRECISION_REASON)}


def resume_point(run_dir: pathlib.Path) -> dict | None:
    """{"epoch": N, "train_state": FILE} from checkpoints/state.json; None when the run has none yet.

    A damaged file is a ValueError naming it, never restarted over: the run's epochs are behind it."""
    state_path = run_dir / CHECKPOINT_DIR / STATE_FILE
    if not state_path.exists():
        return None
    state = read_json(state_path, "a GAN run's resume point")
    if not (isinstance(state, dict) and isinstance(state.get("epoch"), int) and state["epoch"] >= 0
            and isinstance(state.get("train_state"), str) and state["train_state"]):
        raise ValueError(f"{state_path}: not a resume point (expected {{\"epoch\": N, \"train_state\": FILE}}, got "
                         f"{json.dumps(state)[:80]}); restore it from a backup or choose another run dir")
    return state


def refuse_lost_resume_point(run_dir: pathlib.Path) -> None:
    """A run that trained epochs but has no state.json lost its resume point: refuse to start it over.

    The checkpoint writes the train state first, then the weights, then state.json, so weights with no
    train state beside them, or losses of a second epoch (written after the first's state.json), mean
    the resume point was there and is gone; a kill during the first checkpoint leaves neither."""
    checkpoints = run_dir / CHECKPOINT_DIR
    has_train_state = checkpoints.is_dir() and any(checkpoints.glob(f"train_state-*{WEIGHTS_SUFFIX}"))
    weights = [name for name in (GENERATOR_WEIGHTS, DISCRIMINATOR_WEIGHTS) if (run_dir / name).exists()]
    evidence = []
    if weights and not has_train_state:
        evidence.append(" and ".join(weights))
    if _logged_epochs(run_dir / LOSS_CSV) > 1:
        evidence.append(f"{LOSS_CSV} of {_logged_epochs(run_dir / LOSS_CSV)} epochs")
    if evidence:
        raise ValueError(f"{checkpoints / STATE_FILE} is missing but {run_dir} holds {', '.join(evidence)}: its "
                         "resume point was lost; restore checkpoints/ or choose another run dir (starting over "
                         "would rewrite them)")


def _logged_epochs(path: pathlib.Path) -> int:
    """Epochs with a row in losses.csv (0 when it is absent or unreadable)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0
    return sum(1 for row in rows[1:] if row and row[0].isdigit())


def completed_epochs(run_dir: str | os.PathLike) -> int:
    """Epochs completed according to the run's resume point (0 when it has none)."""
    state = resume_point(pathlib.Path(run_dir))
    return int(state["epoch"]) if state else 0


def truncate_csv(path: pathlib.Path, epochs: int) -> None:
    """Drop rows of epochs >= `epochs`: written after the resume point, they are about to be redone."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    if any(row and not row[0].isdigit() for row in rows[1:]):
        bad = next(i for i, row in enumerate(rows[1:], 2) if row and not row[0].isdigit())
        raise ValueError(f"{path}: line {bad} is not an epoch's row ({','.join(rows[bad - 1])[:60]}); "
                         "remove it to resume the run")
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) < epochs]
    if len(kept) != len(rows):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(kept)


def read_run_config(run_dir: str | os.PathLike) -> tuple[GanConfig, list[str]]:
    """(GanConfig, class names) from a run's config.json; clear errors for a missing or foreign file."""
    run_dir = pathlib.Path(run_dir)
    record = read_run_record(run_dir)
    try:
        return GanConfig.from_dict(record["gan"]), list(record["class_names"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{run_dir / CONFIG_FILE} is not a GAN run config: {e}") from e

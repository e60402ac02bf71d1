"""Drive every command with realistic misuse and count how each case ends (issues #25 and #44).

    python experiments/misuse_probes.py --out reports/misuse-probes          # ~15 min on 2 cores

Each case runs a script in a fresh interpreter (as a user would) inside a scratch workspace that
holds an earlier output of every kind (a classifier, a GAN run, a report folder, a file). A case
is *clean* when it exits as expected (2 and one `error:` line naming the problem for misuse; 0
for the controls) without a traceback, and every earlier output is byte-identical afterwards.
It is a *traceback* when stderr holds one, *data lost* when any earlier output changed. Issue #44's
classes: an output that is, holds or sits inside an input (with --overwrite, through a symbolic
link), numbers that mean nothing, a lost or damaged resume point, a second writer of a run folder,
hand-edited and broken models.config files, a file size limit hit by a checkpoint (ulimit -f, as a
full disk), and a killed run's leftover temporary output.
Writes OUT/probes.json (every case, its exit code and last stderr line) and OUT/probes.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from covid_keras import cli  # noqa: E402

CLASSIFIER = ["--backbone", "vgg16", "--data", "phantom_small", "--weights", "none", "--image-size", "32", "--epochs", "1"]
TINY_GAN = ["--run", "3", "--data", "phantom_small", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
            "--generator-filters", "8", "8", "8", "--discriminator-filters", "8", "8", "8", "8", "8",
            "--base-channels", "8", "--noise-dim", "16", "--sample-every", "1", "--checkpoint-every", "1"]


def run_script(name: str, args, timeout: float = 600, cwd=None, file_limit: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(cli.TRACEBACK_VARIABLE, None)

    def limit():  # ulimit -f: writes past it fail with EFBIG (SIGXFSZ ignored), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                          preexec_fn=limit if file_limit else None)


def snapshot(root: pathlib.Path, keep: list[pathlib.Path]) -> dict[str, bytes]:
    files = {}
    for path in keep:
        items = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files.update({str(p.relative_to(root)): p.read_bytes() for p in items})
    return files


def png_bytes(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG (zlib-compressed zeros)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def workspace(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Earlier outputs a careless command could destroy, and inputs good and bad."""
    w = {name: root / name for name in ("clf", "gan", "report", "afile", "images", "badimages", "oneclass", "bigpng")}
    print("making the workspace: a tiny classifier and a tiny GAN run", flush=True)
    assert run_script("train_classifier.py", [*CLASSIFIER, "--out", w["clf"]]).returncode == 0
    assert run_script("train_gan.py", [*TINY_GAN, "--out", w["gan"]]).returncode == 0
    w["report"].mkdir()
    (w["report"] / "results.md").write_text("an earlier report\n")
    w["afile"].write_text("not a folder\n")
    for name in ("Normal", "COVID"):
        (w["images"] / name).mkdir(parents=True)
        (w["images"] / name / "a.png").write_bytes(png_bytes(64, 64))
    w["badimages"].mkdir()
    (w["badimages"] / "tiny.png").write_bytes(png_bytes(1, 1))
    (w["badimages"] / "cut.png").write_bytes(png_bytes(64, 64)[:60])
    (w["badimages"] / "anim.gif").write_bytes(b"GIF89a" + b"\x00" * 40)
    (w["badimages"] / "good.png").write_bytes(png_bytes(64, 64))
    (w["oneclass"] / "Normal").mkdir(parents=True)
    for i in range(6):
        (w["oneclass"] / "Normal" / f"{i}.png").write_bytes(png_bytes(40 + i, 40))
    w["bigpng"].mkdir()
    (w["bigpng"] / "huge.png").write_bytes(png_bytes(12000, 12000))
    assert run_script("export.py", ["--classifier", w["clf"], "--base", root / "saved"]).returncode == 0
    w["saved"] = root / "saved"
    w["zero_model"] = root / "zero_model"
    shutil.copytree(w["clf"], w["zero_model"])
    (w["zero_model"] / "model.keras").write_bytes(b"")
    # Issue #44's inputs: a judge in a report, a link to the classifier, runs with a damaged resume point.
    (w["report"] / "judge.keras").write_bytes(b"a judge the user passes with --judge")
    w["clf_link"] = root / "clf_link"
    w["clf_link"].symlink_to(w["clf"])
    for name, damage in (("gan_no_checkpoints", None), ("gan_state_no_key", '{"epoch": 1}\n'),
                         ("gan_state_cut", '{"epoch": 1, "train_st'), ("gan_locked", "")):
        w[name] = root / name
        shutil.copytree(w["gan"], w[name])
        if damage is None:
            shutil.rmtree(w[name] / "checkpoints")
        elif damage:
            (w[name] / "checkpoints" / "state.json").write_text(damage)
    w["saved_edited"], w["saved_broken"] = root / "saved_edited", root / "saved_broken"
    shutil.copytree(w["saved"], w["saved_edited"])
    config = (w["saved"] / "models.config").read_text()
    (w["saved_edited"] / "models.config").write_text("# served by the lab box # ask first\n" + config.replace(
        'model_platform: "tensorflow"', 'model_platform: "tensorflow"  # the default # platform', 1) + "# end\n")
    shutil.copytree(w["saved"], w["saved_broken"])
    (w["saved_broken"] / "models.config").write_text(config[:-3])  # its last brace cut off
    w["leftover_parent"] = root / "previews"
    w["leftover_parent"].mkdir()
    (w["leftover_parent"] / f".p.partial-{socket.gethostname()}-{dead_pid()}-abc123.png").write_bytes(b"half")
    return w


def dead_pid() -> int:
    """A pid no process has: a short-lived child's, once reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


HOLDER = """
import sys, time
from covid_keras import cli
with cli.one_writer(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(3600)
"""


def hold_lock(folder: pathlib.Path) -> subprocess.Popen:
    """Another process writing `folder` (the lock train-gan takes), until killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert holder.stdout.readline().strip() == "holding"
    return holder


def cases(w: dict[str, pathlib.Path], only_issue44: bool = False) -> list[tuple[str, str, list, int]]:
    """(name, script, args, expected exit code); `only_issue44`: only the cases issue #44 added."""
    clf, gan, report, afile = w["clf"], w["gan"], w["report"], w["afile"]
    new = w["clf"].parent / "new"  # never created by a refused case
    other_weights = PROJECT_ROOT / "weights" / "resnet50_notop.weights.h5"
    saved, good = w["saved"] / "clf", w["images"] / "Normal" / "a.png"
    c = [
        # train_gan
        ("train_gan --epochs 0", "train_gan.py", [*TINY_GAN, "--epochs", "0", "--out", new], 2),
        ("train_gan --epochs many", "train_gan.py", [*TINY_GAN, "--epochs", "many", "--out", new], 2),
        ("train_gan --out a file", "train_gan.py", [*TINY_GAN, "--out", afile], 2),
        ("train_gan --out below a file", "train_gan.py", [*TINY_GAN, "--out", afile / "run"], 2),
        ("train_gan --out another run", "train_gan.py", [*TINY_GAN, "--seed", "5", "--out", gan], 2),
        ("train_gan --out a report folder", "train_gan.py", [*TINY_GAN, "--out", report], 2),
        ("train_gan --run unknown", "train_gan.py", ["--run", "9", "--out", new], 2),
        ("train_gan --image-size 7", "train_gan.py", [*TINY_GAN, "--image-size", "7", "--out", new], 2),
        ("train_gan --batch-size 0", "train_gan.py", [*TINY_GAN, "--batch-size", "0", "--out", new], 2),
        ("train_gan folder without a path", "train_gan.py", [*TINY_GAN, "--data", "folder", "--out", new], 2),
        ("train_gan folder, missing tree", "train_gan.py", [*TINY_GAN, "--data", "folder", "--data-path", new / "x", "--out", new], 2),
        ("train_gan phantom with a path", "train_gan.py", [*TINY_GAN, "--data-path", report, "--out", new], 2),
        ("train_gan projected without weights", "train_gan.py", [*TINY_GAN, "--discriminator-backbone", "inception_v3",
                                                                 "--discriminator-conditioning", "projection",
                                                                 "--discriminator-norm", "spectral", "--weights-dir", new,
                                                                 "--out", new], 2),
        ("train_gan --strategy unknown", "train_gan.py", [*TINY_GAN, "--strategy", "ring", "--out", new], 2),
        ("train_gan --diff-augment unknown", "train_gan.py", [*TINY_GAN, "--diff-augment", "zoom", "--out", new], 2),
        ("train_gan resume (control)", "train_gan.py", [*TINY_GAN, "--out", gan], 0),
        # generate
        ("generate --run-dir not a run", "generate.py", ["--run-dir", report, "--out", new], 2),
        ("generate --out non-empty", "generate.py", ["--run-dir", gan, "--per-class", "2", "--out", report], 2),
        ("generate --out the run itself", "generate.py", ["--run-dir", gan, "--per-class", "2", "--out", gan, "--overwrite"], 2),
        ("generate --per-class 0", "generate.py", ["--run-dir", gan, "--per-class", "0", "--out", new], 2),
        ("generate --which missing epoch", "generate.py", ["--run-dir", gan, "--which", "99", "--out", new], 2),
        ("generate --min-guide-confidence, unguided run", "generate.py", ["--run-dir", gan, "--min-guide-confidence", "0.9", "--out", new], 2),
        # train_classifier
        ("train_classifier --out non-empty", "train_classifier.py", [*CLASSIFIER, "--out", report], 2),
        ("train_classifier --out an earlier classifier", "train_classifier.py", [*CLASSIFIER, "--out", clf], 2),
        ("train_classifier --out a file", "train_classifier.py", [*CLASSIFIER, "--out", afile], 2),
        ("train_classifier --out below a file", "train_classifier.py", [*CLASSIFIER, "--out", afile / "x"], 2),
        ("train_classifier --epochs 0", "train_classifier.py", [*CLASSIFIER, "--epochs", "0", "--out", new], 2),
        ("train_classifier --batch-size -1", "train_classifier.py", [*CLASSIFIER, "--batch-size", "-1", "--out", new], 2),
        ("train_classifier --image-size 10", "train_classifier.py", [*CLASSIFIER, "--image-size", "10", "--out", new], 2),
        ("train_classifier --weights missing file", "train_classifier.py", [*CLASSIFIER[:-6], "--weights", new / "w.h5", "--image-size", "32", "--epochs", "1", "--out", new], 2),
        ("train_classifier another backbone's weights", "train_classifier.py", [*CLASSIFIER[:-6], "--weights", other_weights, "--image-size", "32", "--epochs", "1", "--out", new], 2),
        ("train_classifier --hyperparameters missing", "train_classifier.py", [*CLASSIFIER, "--hyperparameters", new / "h", "--out", new], 2),
        ("train_classifier --target-sensitivity 1.5", "train_classifier.py", [*CLASSIFIER, "--target-sensitivity", "1.5", "--out", new], 2),
        ("train_classifier --backbone unknown", "train_classifier.py", ["--backbone", "vgg19", "--data", "phantom_small", "--out", new], 2),
        ("train_classifier a one-class folder", "train_classifier.py", [*CLASSIFIER[:2], "--data", "folder", "--data-path", w["oneclass"], *CLASSIFIER[4:], "--out", new], 2),
        ("train_classifier --fine-tune -3", "train_classifier.py", [*CLASSIFIER, "--fine-tune", "-3", "--out", new], 2),
        # tune_classifier
        ("tune --out non-empty", "tune_classifier.py", [*CLASSIFIER, "--trials", "1", "--out", report], 2),
        ("tune --trials 0", "tune_classifier.py", [*CLASSIFIER, "--trials", "0", "--out", new], 2),
        ("tune min lr > max lr", "tune_classifier.py", [*CLASSIFIER, "--min-learning-rate", "0.1", "--max-learning-rate", "0.01", "--out", new], 2),
        ("tune --optimizers unknown", "tune_classifier.py", [*CLASSIFIER, "--optimizers", "lion", "--out", new], 2),
        ("tune --out a file", "tune_classifier.py", [*CLASSIFIER, "--out", afile], 2),
        # evaluate_classifier
        ("evaluate_classifier --model missing", "evaluate_classifier.py", ["--model", new, "--data", "phantom_small"], 2),
        ("evaluate_classifier 0-byte model.keras", "evaluate_classifier.py", ["--model", w["zero_model"], "--data", "phantom_small"], 2),
        ("evaluate_classifier --data unknown", "evaluate_classifier.py", ["--model", clf, "--data", "mnist"], 2),
        ("evaluate_classifier --data with two paths", "evaluate_classifier.py", ["--model", clf, "--data", "folder", "a", "b"], 2),
        ("evaluate_classifier --report non-empty", "evaluate_classifier.py", ["--model", clf, "--data", "phantom_small", "--report", report], 2),
        ("evaluate_classifier --manifest missing", "evaluate_classifier.py", ["--model", clf, "--data", "phantom_small", "--manifest", new / "m.csv"], 2),
        ("evaluate_classifier one-class folder (control)", "evaluate_classifier.py", ["--model", clf, "--data", "folder", w["oneclass"]], 0),
        # export
        ("export nothing to export", "export.py", ["--base", new], 2),
        ("export --classifier missing", "export.py", ["--classifier", new, "--base", new / "b"], 2),
        ("export --base a file", "export.py", ["--classifier", clf, "--base", afile], 2),
        ("export --name with two models", "export.py", ["--classifier", clf, "--gan-run", gan, "--name", "x", "--base", new], 2),
        ("export 0-byte model.keras", "export.py", ["--classifier", w["zero_model"], "--base", new], 2),
        ("export --gan-run not a run", "export.py", ["--gan-run", report, "--base", new], 2),
        # predict (an exported classifier, in this process)
        ("predict a GIF, a truncated and a 1 px PNG, one good", "predict.py", ["--saved-model", saved, *sorted(w["badimages"].iterdir())], 2),
        ("predict a 12000 x 12000 PNG", "predict.py", ["--saved-model", saved, w["bigpng"] / "huge.png"], 2),
        ("predict --batch-size 0", "predict.py", ["--saved-model", saved, "--batch-size", "0", good], 2),
        ("predict --batch-size -1", "predict.py", ["--saved-model", saved, "--batch-size", "-1", good], 2),
        ("predict a missing file", "predict.py", ["--saved-model", saved, new / "x.png"], 2),
        ("predict --saved-model missing", "predict.py", ["--saved-model", new, good], 2),
        ("predict --explain onto a non-empty folder", "predict.py", ["--saved-model", saved, "--explain", report, good], 2),
        ("predict --server without --model", "predict.py", ["--server", "http://127.0.0.1:9", good], 2),
        ("predict a good image (control)", "predict.py", ["--saved-model", saved, good], 0),
        # prepare_data
        ("prepare folder, missing tree", "prepare_data.py", ["--data", "folder", "--data-path", new / "x"], 2),
        ("prepare phantom with a path", "prepare_data.py", ["--data", "phantom_small", "--data-path", report], 2),
        ("prepare --preview existing file", "prepare_data.py", ["--data", "phantom_small", "--preview", afile], 2),
        ("prepare --preview-per-class 0", "prepare_data.py", ["--data", "phantom_small", "--preview", new / "p.png", "--preview-per-class", "0"], 2),
        ("prepare radiography without a path", "prepare_data.py", ["--data", "radiography", "--data-dir", new / "tfds"], 2),
        # evaluate_gan / evidence
        ("evaluate_gan --run-dir not a run", "evaluate_gan.py", ["--run-dir", report, "--data", "phantom_small", "--out", new], 2),
        ("evaluate_gan --out non-empty", "evaluate_gan.py", ["--run-dir", gan, "--data", "phantom_small", "--out", report], 2),
        ("evidence --run-dir not a run", "gan_evidence.py", ["--run-dir", report, "--data", "phantom_small", "--out", new], 2),
        ("evidence --out non-empty", "gan_evidence.py", ["--run-dir", gan, "--data", "phantom_small", "--out", report], 2),
        ("evidence --split train", "gan_evidence.py", ["--run-dir", gan, "--data", "phantom_small", "--split", "train", "--out", new], 2),
        ("evidence --per-class 0", "gan_evidence.py", ["--run-dir", gan, "--data", "phantom_small", "--per-class", "0", "--out", new], 2),
        # comparisons
        ("compare-gan-reports missing report", "compare_gan_reports.py", [new / "r"], 2),
        ("compare-evidence missing report", "compare_evidence.py", [new / "r"], 2),
        ("compare-evidence not an evidence report", "compare_evidence.py", [report], 2),
        ("compare-evidence --out non-empty", "compare_evidence.py", [report, "--out", report], 2),
        # experiment / study / reproduce
        ("experiment --generated missing", "augment_experiment.py", ["--generated", new / "g", "--quick", "--out", new], 2),
        ("experiment --out non-empty", "augment_experiment.py", ["--generated", w["images"], "--quick", "--out", report], 2),
        ("experiment --seeds 0", "augment_experiment.py", ["--generated", w["images"], "--seeds", "0", "--out", new], 2),
        ("study --out a file", "augment_study.py", ["--out", afile], 2),
        ("study --sizes 0", "augment_study.py", ["--sizes", "0", "--out", new], 2),
        ("reproduce --seeds 0", "reproduce.py", ["--quick", "--seeds", "0", "--out", new], 2),
        ("reproduce --gan-run unknown", "reproduce.py", ["--quick", "--gan-run", "9", "--out", new], 2),
        ("reproduce --out a file", "reproduce.py", ["--quick", "--out", afile], 2),
        # translation GAN
        ("train-translation-gan --out a translation run's folder that is a file", "train_translation_gan.py",
         ["--data", "phantom_small", "--out", afile], 2),
        ("train-translation-gan --image-size 30", "train_translation_gan.py", ["--data", "phantom_small", "--image-size", "30", "--out", new], 2),
    ]
    images, judge = w["images"], report / "judge.keras"
    if only_issue44:
        c = []
    c += [  # issue #44: an output is, holds or sits inside an input, even with --overwrite
        ("evaluate_classifier --report the --model folder", "evaluate_classifier.py",
         ["--model", clf, "--data", "folder", images, "--report", clf, "--overwrite"], 2),
        ("evaluate_classifier --report the --data-path folder", "evaluate_classifier.py",
         ["--model", clf, "--data", "folder", "--data-path", images, "--report", images, "--overwrite"], 2),
        ("evaluate_classifier --report inside --model", "evaluate_classifier.py",
         ["--model", clf, "--data", "phantom_small", "--report", clf / "report"], 2),
        ("evaluate_classifier --report a link to --model", "evaluate_classifier.py",
         ["--model", clf, "--data", "phantom_small", "--report", w["clf_link"], "--overwrite"], 2),
        ("predict --explain the folder of the images", "predict.py",
         ["--saved-model", saved, "--explain", images / "Normal", "--overwrite", good], 2),
        ("predict --explain the --saved-model", "predict.py", ["--saved-model", saved, "--explain", saved, "--overwrite", good], 2),
        ("compare-gan-reports R --out R", "compare_gan_reports.py", [report, "--out", report, "--overwrite"], 2),
        ("compare-evidence R --out R --overwrite", "compare_evidence.py", [report, "--out", report, "--overwrite"], 2),
        ("evaluate_gan --judge R/judge.keras --out R", "evaluate_gan.py",
         ["--run-dir", gan, "--data", "phantom_small", "--judge", judge, "--out", report, "--overwrite"], 2),
        ("generate --out RUN/checkpoints", "generate.py", ["--run-dir", gan, "--out", gan / "checkpoints", "--overwrite"], 2),
        ("evidence --out the --run-dir", "gan_evidence.py", ["--run-dir", gan, "--data", "phantom_small", "--out", gan, "--overwrite"], 2),
        ("train_classifier --out the --data-path", "train_classifier.py",
         [*CLASSIFIER[:2], "--data", "folder", "--data-path", images, *CLASSIFIER[4:], "--out", images, "--overwrite"], 2),
        ("tune --out holds --data-path", "tune_classifier.py",
         [*CLASSIFIER[:2], "--data", "folder", "--data-path", images / "Normal", *CLASSIFIER[4:], "--out", images, "--overwrite"], 2),
        ("experiment --out the --generated folder", "augment_experiment.py", ["--generated", images, "--quick", "--out", images, "--overwrite"], 2),
        ("train_gan --out the --data-path", "train_gan.py", [*TINY_GAN, "--data", "folder", "--data-path", images, "--out", images], 2),
        ("export --base the --classifier folder", "export.py", ["--classifier", clf, "--base", clf], 2),
        ("prepare --preview inside --data-path", "prepare_data.py", ["--data", "folder", "--data-path", images, "--preview", images / "p.png"], 2),
        ("study --out the --weights folder", "augment_study.py", ["--weights", clf, "--out", clf], 2),
        ("reproduce --out the --fallback-weights folder", "reproduce.py", ["--quick", "--fallback-weights", clf, "--out", clf], 2),
        ("generate --out .", "generate.py", ["--run-dir", gan, "--out", "."], 2),
        ("generate --out ''", "generate.py", ["--run-dir", gan, "--out", ""], 2),
        ("train_classifier --out .", "train_classifier.py", [*CLASSIFIER, "--out", "."], 2),
        # numbers that mean nothing
        ("train_classifier --learning-rate nan", "train_classifier.py", [*CLASSIFIER, "--learning-rate", "nan", "--out", new], 2),
        ("train_classifier --learning-rate inf", "train_classifier.py", [*CLASSIFIER, "--learning-rate", "inf", "--out", new], 2),
        ("train_classifier --learning-rate 0", "train_classifier.py", [*CLASSIFIER, "--learning-rate", "0", "--out", new], 2),
        ("train_classifier --learning-rate -0.001", "train_classifier.py", [*CLASSIFIER, "--learning-rate", "-0.001", "--out", new], 2),
        ("train_gan --minutes nan", "train_gan.py", [*TINY_GAN, "--minutes", "nan", "--out", new], 2),
        ("train_gan --minutes -5", "train_gan.py", [*TINY_GAN, "--minutes", "-5", "--out", new], 2),
        ("train_gan --leaky-relu-slope nan", "train_gan.py", [*TINY_GAN, "--leaky-relu-slope", "nan", "--out", new], 2),
        ("train_gan --learning-rate 0", "train_gan.py", [*TINY_GAN, "--learning-rate", "0", "--out", new], 2),
        ("evaluate_gan --tstr-blur-sigma -1", "evaluate_gan.py", ["--run-dir", gan, "--data", "phantom_small", "--tstr-blur-sigma", "-1", "--out", new], 2),
        ("generate --min-guide-confidence 2", "generate.py", ["--run-dir", gan, "--min-guide-confidence", "2", "--out", new], 2),
        ("train-translation-gan --minutes inf", "train_translation_gan.py", ["--data", "phantom_small", "--minutes", "inf", "--out", new], 2),
        ("tune --max-learning-rate nan", "tune_classifier.py", [*CLASSIFIER, "--max-learning-rate", "nan", "--out", new], 2),
        # resume points, writers, files that must survive
        ("train_gan, the run's checkpoints/ gone", "train_gan.py", [*TINY_GAN, "--out", w["gan_no_checkpoints"]], 2),
        ("train_gan, state.json without train_state", "train_gan.py", [*TINY_GAN, "--out", w["gan_state_no_key"]], 2),
        ("train_gan, state.json cut short", "train_gan.py", [*TINY_GAN, "--out", w["gan_state_cut"]], 2),
        ("train_gan, another process writing the run", "train_gan.py", [*TINY_GAN, "--out", w["gan_locked"]], 2),
        ("train_gan, a checkpoint past the file size limit", "train_gan.py", [*TINY_GAN, "--out", new], 2),
        ("export into a broken models.config", "export.py", ["--classifier", clf, "--base", w["saved_broken"]], 2),
        ("export into a hand-edited models.config (control)", "export.py", ["--classifier", clf, "--base", w["saved_edited"]], 0),
        ("prepare --preview over a killed run's leftover (control)", "prepare_data.py",
         ["--data", "phantom_small", "--preview", w["leftover_parent"] / "p.png"], 0),
    ]
    return c


# Cases run in the workspace's root, or under a file size limit (bytes).
CWD_CASES = {"generate --out .", "generate --out ''", "train_classifier --out ."}
FILE_LIMITS = {"train_gan, a checkpoint past the file size limit": 64 * 1024}


def extra_check(name: str, w: dict[str, pathlib.Path]) -> str | None:
    """What a control must have done besides exiting 0 (None: done)."""
    if name.startswith("prepare --preview over a killed run's leftover"):
        left = sorted(p.name for p in w["leftover_parent"].iterdir())
        return None if left == ["p.png"] else f"left in the folder: {left}"
    if name.startswith("export into a hand-edited models.config"):
        text = (w["saved_edited"] / "models.config").read_text()
        return None if "# ask first" in text and "# the default # platform" in text and "# end" in text else "comments lost"
    return None


def classify(result: subprocess.CompletedProcess, expected: int, lost: bool) -> str:
    if lost:
        return "data lost"
    if "Traceback" in result.stderr:
        return "traceback"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if expected == 2 and not (result.returncode == 2 and lines and lines[-1].startswith("error: ")):
        return "unclear"
    if expected != 2 and result.returncode != expected:
        return "unclear"
    return "clean"


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for probes.json and probes.md")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--issue44", action="store_true", help="only the cases issue #44 added (about 45 of them)")
    args = parser.parse_args(argv)
    out = cli.OutputFolder(args.out, args.overwrite)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        w = workspace(root)
        guarded = [w[k] for k in ("clf", "gan", "report", "afile", "images", "zero_model", "saved", "gan_no_checkpoints",
                                  "gan_state_no_key", "gan_state_cut", "gan_locked", "saved_broken")]
        guarded.append(w["saved_edited"] / "models.config")  # nothing new to name: byte-identical
        holder = hold_lock(w["gan_locked"])
        for name, script, arguments, expected in cases(w, args.issue44):
            before = snapshot(root, guarded)
            start = time.monotonic()
            result = run_script(script, arguments, cwd=root if name in CWD_CASES else None, file_limit=FILE_LIMITS.get(name))
            lost = snapshot(root, guarded) != before
            if name.startswith("train_gan resume"):
                lost = False  # the control resumes its own finished run: nothing may change, but a
                # rewritten loss curve image is not a loss; counted on its exit code alone
            outcome = classify(result, expected, lost)
            if outcome == "clean" and expected == 0 and (why := extra_check(name, w)):
                outcome, result.stderr = "unclear", result.stderr + f"\nprobe: {why}"
            last = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "")
            results.append({"case": name, "script": script, "expected_exit": expected, "exit": result.returncode,
                            "outcome": outcome, "last_stderr_line": last[:300], "seconds": round(time.monotonic() - start, 1)})
            print(f"{outcome:>9}  exit {result.returncode}  {name}: {last[:120]}", flush=True)
            new = root / "new"
            if new.exists():
                shutil.rmtree(new)
        holder.kill()
        holder.wait()
    counts = {kind: sum(r["outcome"] == kind for r in results) for kind in ("clean", "unclear", "traceback", "data lost")}
    lines = ["# Misuse probes", "", f"{len(results)} cases: " + ", ".join(f"{v} {k}" for k, v in counts.items()), "",
             "| case | exit (expected) | outcome | last stderr line |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['exit']} ({r['expected_exit']}) | {r['outcome']} | {r['last_stderr_line'].replace('|', '/')[:140]} |"
              for r in results]
    with out.writing() as folder:
        (folder / "probes.json").write_text(json.dumps({"counts": counts, "cases": results}, indent=2) + "\n")
        (folder / "probes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))

#!/usr/bin/env python3
"""The README's first command end to end, as a new user runs it: wall time on this CPU (issue #46).

    python -m bench.first_command                 # ~5-10 min on 2 cores; runs alone (python -m bench --only first_command)

A fresh local clone of this checkout's HEAD (committed files only, as a user would get them) in a
temporary folder, with its own TFDS data folder and no weights folder (COVID_KERAS_WEIGHTS_DIR
unset), then, timed in two parts, the README's first command:

    python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[tfds]"     (install)
    python scripts/reproduce.py --quick                                             (report)

pip uses whatever cache and index this machine has (offline here, so its cache). The folder is
removed afterwards unless --keep. Prints one JSON object: the seconds of each part and in all, the
exit codes, the report's stage timings and headline figures (from its reproduce.json and the
GAN's metrics), the load average before and after, and the CPU model and its speed-relevant flags.
The load average says whether the cores were idle: on shared cores the figure is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
INSTALL = 'python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[tfds]"'
REPORT = ". .venv/bin/activate && python scripts/reproduce.py --quick"
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu() -> dict:
    """The CPU model and the flags that change TensorFlow's speed, from /proc/cpuinfo (no TensorFlow
    here: this process only times)."""
    model, flags = None, set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": {flag: flag in flags for flag in FLAGS}}


def timed(command: str, cwd: pathlib.Path, env: dict) -> dict:
    load, start = os.getloadavg(), time.perf_counter()
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
    return {"command": command, "seconds": round(time.perf_counter() - start, 1), "exit_code": done.returncode,
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "stdout_tail": done.stdout.strip().splitlines()[-3:], "stderr_tail": done.stderr.strip().splitlines()[-5:]}


def report_figures(clone: pathlib.Path) -> dict | None:
    state_path = clone / "runs" / "reproduce-quick" / "reproduce.json"
    if not state_path.is_file():
        return None
    state = json.loads(state_path.read_text())
    results = json.loads((clone / "runs" / "reproduce-quick" / "report" / "results.json").read_text())
    accuracy = {f"{model} {setting}": result["summary"][setting]["test_accuracy"]["mean"]
                for model, result in results["backbones"].items() for setting in result["summary"]}
    return {"timings_s": {k: round(v, 1) for k, v in state["timings_s"].items()},
            "classifiers": state["weights"], "gan_evaluation": state.get("gan_evaluation"),
            "test_accuracy_mean": accuracy}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the clone (its report) afterwards")
    args = parser.parse_args(argv)

    scratch = pathlib.Path(tempfile.mkdtemp(prefix="first-command-"))
    clone = scratch / "covid-keras"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                            text=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "COVID_KERAS_WEIGHTS_DIR", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env["TFDS_DATA_DIR"] = str(scratch / "tensorflow_datasets")  # nothing built before, as for a new user
    try:
        install = timed(INSTALL, clone, env)
        report = timed(REPORT, clone, env) if install["exit_code"] == 0 else None
        figures = report_figures(clone)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "benchmark": "first_command",
        "commit": commit,
        "install": install,
        "report": report,
        "total_seconds": round(install["seconds"] + (report["seconds"] if report else 0), 1),
        "exit_code": report["exit_code"] if report else install["exit_code"],
        "figures": figures,
        "cpu": cpu(),
        "kept": str(clone) if args.keep else None,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["exit_code"] == 0 else 1)

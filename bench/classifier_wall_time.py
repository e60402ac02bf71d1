#!/usr/bin/env python3
"""The whole classifier training, float32 against mixed_bfloat16 backbone features: wall time of
the command a user runs, with no feature cache (issue #26).

    python -m bench.classifier_wall_time --data radiography --data-path ../shared/data/radiography \\
        --weights-dir weights                      # VGG16 224 px --mirror, ~40 min on 2 cores
    python -m bench.classifier_wall_time --data phantom_small --weights-dir none --image-size 32 \\
        --epochs 1                                 # the plumbing only

Each round runs `scripts/train_classifier.py` once per precision in a fresh process, alternating
which goes first, with the recipe of docs/results.md's best VGG16 row (224 px, --mirror, lr 1e-4,
batch 32, 12 epochs, best_validation) into a temporary folder that is removed afterwards. Nothing
is cached between runs, so each pays its backbone passes (train, its mirror, validation, test):
what a first run costs. Prints one JSON object: seconds per precision and round, the speed-up
(median of per-round ratios), the load average before and after each run, and the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from bench.feature_precision import machine

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "mixed_bfloat16")
RECIPE = ("--backbone", "vgg16", "--learning-rate", "1e-4", "--batch-size", "32",
          "--keep-epoch", "best_validation", "--mirror", "--seed", "0")


def train_command(args, precision: str, out: pathlib.Path) -> list[str]:
    command = [sys.executable, str(REPO_ROOT / "scripts" / "train_classifier.py"), *RECIPE,
               "--data", args.data, "--weights", args.weights_dir, "--image-size", str(args.image_size),
               "--epochs", str(args.epochs), "--precision", precision, "--out", str(out)]
    if args.data_path:
        command += ["--data-path", args.data_path]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    return command


def timed_run(command: list[str]) -> dict:
    load_before, start = os.getloadavg()[0], time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise SystemExit(f"error: {' '.join(command[1:3])} ... exited {done.returncode}: {tail}")
    return {"seconds": round(seconds, 1), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="radiography")
    parser.add_argument("--data-path")
    parser.add_argument("--data-dir")
    parser.add_argument("--weights-dir", default="weights", help="DIR of backbone_weights.py's files, or none")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)

    runs = {precision: [] for precision in PRECISIONS}
    with tempfile.TemporaryDirectory(prefix="clf-wall-") as scratch:
        for round_index in range(args.rounds):
            order = PRECISIONS if round_index % 2 == 0 else PRECISIONS[::-1]
            for precision in order:
                out = pathlib.Path(scratch) / f"{precision}-{round_index}"
                runs[precision].append(timed_run(train_command(args, precision, out)))
                metrics = json.loads((out / "classifier.json").read_text()).get("metrics", {})
                runs[precision][-1]["test_accuracy"] = metrics.get("test", {}).get("accuracy")
    ratios = [f["seconds"] / b["seconds"] for f, b in zip(runs["float32"], runs["mixed_bfloat16"])]
    result = {
        "benchmark": "classifier_wall_time",
        "recipe": " ".join(RECIPE) + f" --image-size {args.image_size} --epochs {args.epochs} (no feature cache)",
        "data": args.data,
        "runs": runs,
        "median_seconds": {p: statistics.median(r["seconds"] for r in runs[p]) for p in PRECISIONS},
        "speed_up_bfloat16": round(statistics.median(ratios), 2),
        "machine": machine(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

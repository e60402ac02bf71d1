"""Run every benchmark, one after the other, within a time budget; print one JSON line per benchmark, then a summary.

    python -m bench                        # all, CPU settings sized for 10 minutes on 2 idle cores
    python -m bench --only gan_vs_torch    # a subset (comma-separated)
    python -m bench --list                 # names and commands

Each benchmark is a script in bench/ that prints one JSON object; it runs in its own process
(`python -m bench.<name> ARGS`, so one benchmark's TensorFlow threads and memory do not leak into
the next) with a timeout of min(its own limit, the time left in the budget). A benchmark that
fails, times out or prints no JSON is reported as such and the others still run; the exit code
is 1 if any failed. The summary quotes the headline figures and the issue's targets.

Three run alone, being longer than the budget (commands in their docstrings and docs/results.md):
`bench.classifier_wall_time` (a whole VGG16 224 px training per precision, ~14 min),
`bench.precision_accuracy` (accuracy over five seeds per precision), and `bench.first_command`
(the README's first command in a fresh clone and venv, listed here: `--only first_command`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_BUDGET_S = 570  # under the 10 minutes, leaving time for the summary


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str  # module bench.<name>
    args: tuple[str, ...]
    timeout_s: int  # its own limit; the runner also caps it by the budget left
    alone: bool = False  # longer than the budget: run only when named in --only


# Sequential and ordered by importance: if the budget runs out, the last ones are skipped.
BENCHMARKS = (
    Benchmark("gan_vs_torch", ("--rounds", "1"), 330),
    Benchmark("data_pipeline", ("--epochs", "2"), 90),
    Benchmark("serving_latency", ("--calls", "20", "--batch-calls", "2"), 90),
    Benchmark("classifier_features", ("--images", "32"), 90),
    Benchmark("feature_precision", ("--quick",), 90),
    Benchmark("gan_step", ("--cycles", "1"), 90),
    Benchmark("phantom_speed", ("--images", "200"), 30),
    Benchmark("first_command", (), 1800, alone=True),
)
BY_NAME = {b.name: b for b in BENCHMARKS}


def last_json_object(stdout: str) -> dict | None:
    """The benchmark's result: the last stdout line that is a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_benchmark(benchmark: Benchmark, timeout_s: float, extra_args: tuple[str, ...] = ()) -> dict:
    """Run one benchmark; return {"benchmark", "status", "seconds", "result" or "error"}."""
    command = [sys.executable, "-m", f"bench.{benchmark.name}", *benchmark.args, *extra_args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    start = time.perf_counter()
    record: dict = {"benchmark": benchmark.name, "command": " ".join(command[1:])}
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        record.update(status="timeout", error=f"no result within {timeout_s:.0f} s")
    else:
        result = last_json_object(done.stdout)
        if done.returncode == 0 and result is not None:
            record.update(status="ok", result=result)
        else:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            record.update(status="failed", error=f"exit code {done.returncode}: " + " | ".join(tail))
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def _get(record: dict | None, *keys):
    value = (record or {}).get("result")
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def summarize(records: dict[str, dict], seconds: float) -> dict:
    """Headline figures and the issue's targets (None where the benchmark did not run)."""
    gan = records.get("gan_vs_torch")
    keras_f32 = _get(gan, "results", "keras_float32", "images_per_s")
    pipeline = _get(records.get("data_pipeline"), "gan_images_per_s")
    headline = {
        "gan_step_images_per_s": {
            name: _get(gan, "results", name, "images_per_s")
            for name in ("torch_float32", "keras_float32", "keras_mixed_bfloat16", "keras_float32_xla")
            if _get(gan, "results", name) is not None
        },
        "keras_vs_torch": {
            name: _get(gan, "results", name, "speed_vs_torch")
            for name in ("keras_float32", "keras_mixed_bfloat16", "keras_float32_xla")
            if _get(gan, "results", name) is not None
        },
        "gan_equality_passed": {k: v.get("passed") for k, v in (_get(gan, "equality") or {}).items()},
        "gan_pipeline_images_per_s": pipeline,
        "classifier_pipeline_images_per_s": _get(records.get("data_pipeline"), "classifier_images_per_s"),
        "serving_batch_1_p50_ms": _get(records.get("serving_latency"), "batch_1_png", "p50_ms"),
        "serving_batch_1_p99_ms": _get(records.get("serving_latency"), "batch_1_png", "p99_ms"),
        "serving_batch_32_images_per_s": _get(records.get("serving_latency"), "batch_32_png", "images_per_s"),
        "features_bf16_speedup": _get(records.get("feature_precision"), "bf16_speedup"),
    }
    targets = dict(_get(gan, "targets") or {})
    if keras_f32 and pipeline:
        targets["gan pipeline >= 10x the float32 training step"] = pipeline >= 10 * keras_f32
    return {
        "summary": True,
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(),
                    "cpu": _get(gan, "machine", "cpu") or platform.processor()},
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "status": {name: record["status"] for name, record in records.items()},
        "headline": headline,
        "targets": targets,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BY_NAME)}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help=f"total seconds for all benchmarks (default {DEFAULT_BUDGET_S})")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and their arguments, run nothing")
    args = parser.parse_args(argv)

    names = [n.strip() for n in (args.only.split(",") if args.only else BY_NAME) if n.strip()]
    if not args.only and not args.list:
        names = [n for n in names if not BY_NAME[n].alone]
    unknown = sorted(set(names + [n.strip() for n in args.skip.split(",") if n.strip()]) - set(BY_NAME))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BY_NAME)}")
    selected = [BY_NAME[n] for n in names if n not in args.skip.split(",")]
    if args.list:
        for b in selected:
            alone = "; runs alone: --only " + b.name if b.alone else ""
            print(f"{b.name}: python -m bench.{b.name} {' '.join(b.args)}  (limit {b.timeout_s} s{alone})")
        return 0

    start, records = time.perf_counter(), {}
    for benchmark in selected:
        left = args.budget - (time.perf_counter() - start)
        if left < 5:
            records[benchmark.name] = {"benchmark": benchmark.name, "status": "skipped", "error": "time budget spent"}
        else:
            records[benchmark.name] = run_benchmark(benchmark, min(benchmark.timeout_s, left))
        print(json.dumps(records[benchmark.name]), flush=True)
    print(json.dumps(summarize(records, time.perf_counter() - start)), flush=True)
    return 0 if all(r["status"] == "ok" for r in records.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

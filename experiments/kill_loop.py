"""SIGKILL `train-gan`, `export` and `evidence` at random moments and check that nothing earlier is lost.

    python experiments/kill_loop.py --kills 24 --out reports/kill-loop        # tiny settings, ~20 min on idle cores
    python experiments/kill_loop.py --kills 21 --quick --max-delay 60 --out reports/kill-loop   # a loaded machine

In a scratch workspace: a tiny classifier, a tiny GAN run (phantom_small, 32 px) and a first export
and evidence report made whole. Then, `--kills` times, one of the three commands (in turn, in a
seeded random order) is started and killed with SIGKILL after a random delay drawn up to how long
its own complete run took. After every kill:

- every earlier output is byte-identical: each exported version folder and models.config, the
  evidence report (or, when the kill fell between the two renames that replace it, found whole in
  its `.old-` sibling), every kept GAN snapshot and sample grid of an epoch the resume point had passed;
- the GAN run's resume point is valid (state.json names an existing train state);
- the next run of the same command works: every command is run once more to the end after the
  loop, and any run that ended by itself before its kill must have exited 0.

--quick: the earlier evidence report is a stand-in folder (evidence takes minutes even on tiny
settings), delays are drawn up to --max-delay, and evidence's final run is skipped: the kills of
evidence then check its earlier output only.

Writes OUT/kill_loop.json (every kill: command, delay, what was checked) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from covid_keras import cli, commands  # noqa: E402

CLASSIFIER = ["--backbone", "vgg16", "--data", "phantom_small", "--weights", "none", "--image-size", "32", "--epochs", "1"]
TINY_GAN = ["--run", "3", "--data", "phantom_small", "--image-size", "32", "--batch-size", "8",
            "--generator-filters", "8", "8", "8", "--discriminator-filters", "8", "8", "8", "8", "8",
            "--base-channels", "8", "--noise-dim", "16", "--sample-every", "1", "--checkpoint-every", "1",
            "--epochs", "400"]
EVIDENCE = ["--data", "phantom_small", "--per-class", "16", "--classifiers", "2", "--classifier-epochs", "1",
            "--judge-input-size", "32", "--min-guide-confidence", "0"]


def command(name: str, *args) -> list[str]:
    """scripts/<module>.py for subcommand `name`, in a fresh interpreter as a user would run it."""
    script = PROJECT_ROOT / "scripts" / f"{commands.SUBCOMMANDS[name]}.py"
    return [sys.executable, str(script), *map(str, args)]


def environment() -> dict:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(cli.TRACEBACK_VARIABLE, None)
    return env


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=environment(), timeout=1800)


def files_of(folder: pathlib.Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class Workspace:
    def __init__(self, root: pathlib.Path, weights_dir: str):
        self.root, self.weights_dir = root, weights_dir
        self.clf, self.run_dir = root / "clf", root / "gan"
        self.base, self.report = root / "saved_models", root / "evidence"
        self.epoch = 1

    def commands(self) -> dict[str, list[str]]:
        return {
            # each train-gan run adds one epoch and resumes from the last resume point
            "train-gan": command("train-gan", *TINY_GAN, "--until-epoch", self.epoch + 1, "--out", self.run_dir),
            "export": command("export", "--classifier", self.clf, "--base", self.base),
            "evidence": command("evidence", "--run-dir", self.run_dir, *EVIDENCE, "--weights-dir", self.weights_dir,
                                "--out", self.report, "--overwrite"),
        }

    def make(self, quick: bool = False) -> dict[str, float]:
        """The earlier outputs, each made whole once; -> each command's time for a complete run."""
        seconds = {}
        steps = [("classifier", command("train-classifier", *CLASSIFIER, "--out", self.clf)),
                 ("train-gan", command("train-gan", *TINY_GAN, "--until-epoch", 1, "--out", self.run_dir))]
        for name, argv in steps:
            self._complete(name, argv, seconds)
        for name, argv in self.commands().items():
            if quick and name == "evidence":
                self.report.mkdir()  # a stand-in earlier report: what --overwrite must not lose to a kill
                (self.report / "evidence.json").write_text('{"stand-in": "an earlier report"}\n')
                (self.report / "evidence.md").write_text("an earlier report\n")
                continue
            self._complete(name, argv, seconds)
        return seconds

    def _complete(self, name, argv, seconds):
        print(f"making: {name}", flush=True)
        start = time.monotonic()
        result = run(argv)
        if result.returncode != 0:
            raise SystemExit(f"{name} failed while making the workspace:\n{result.stderr[-3000:]}")
        seconds[name] = time.monotonic() - start
        if name == "train-gan":
            self.epoch = self.resume_epoch()

    def resume_epoch(self) -> int:
        state = json.loads((self.run_dir / "checkpoints" / "state.json").read_text())
        if not (self.run_dir / "checkpoints" / state["train_state"]).is_file():
            raise AssertionError(f"state.json names a missing train state: {state}")
        return int(state["epoch"])

    def guarded(self) -> dict[str, dict[str, bytes]]:
        """What a kill may not change: exported versions and models.config, the evidence report, the
        GAN run's kept snapshots and samples up to its resume point."""
        kept = {name: data for name, data in files_of(self.run_dir).items()
                if name.startswith(("weights/", "samples/")) and self._epoch_of(name) <= self.epoch}
        exports = {name: data for name, data in files_of(self.base).items()
                   if name == "models.config" or name.split("/")[1].isdigit()}
        return {"gan": kept, "export": exports, "evidence": files_of(self.report)}

    @staticmethod
    def _epoch_of(name: str) -> int:
        digits = "".join(ch for ch in pathlib.Path(name).name if ch.isdigit())
        return int(digits) if digits else 0

    def evidence_whole_elsewhere(self, before: dict[str, bytes]) -> bool:
        """A kill between the two renames leaves the earlier report whole in a `.old-` sibling."""
        return any(files_of(old / self.report.name) == before for old in self.root.glob(f".{self.report.name}.old-*"))


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=cli.positive_int, default=24)
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    parser.add_argument("--weights-dir", default=str(PROJECT_ROOT.parent / "weights"),
                        help="exact ImageNet VGG16 weights for evidence's judge (default ../weights)")
    parser.add_argument("--quick", action="store_true", help="see the docstring: for a loaded machine")
    parser.add_argument("--max-delay", type=cli.positive_float, default=None, metavar="SECONDS",
                        help="kill at most this long after the start (default: the command's complete run time)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.quick and not args.max_delay:
        parser.error("--quick needs --max-delay (evidence's complete run is not timed)")
    out = cli.OutputFolder(args.out, args.overwrite)
    rng = random.Random(args.seed)
    records, problems = [], []
    with tempfile.TemporaryDirectory() as scratch:
        w = Workspace(pathlib.Path(scratch), args.weights_dir)
        seconds = w.make(args.quick)
        print(f"complete runs (s): { {k: round(v, 1) for k, v in seconds.items()} }", flush=True)
        names = ["train-gan", "export", "evidence"]
        order = [names[i % 3] for i in range(args.kills)]
        rng.shuffle(order)
        for i, name in enumerate(order, 1):
            before = w.guarded()
            delay = rng.uniform(0.5, min(seconds.get(name, float("inf")), args.max_delay or float("inf")))
            process = subprocess.Popen(w.commands()[name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       text=True, env=environment())
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
            stderr = process.communicate()[1]
            code = process.returncode
            checks, bad = [], []
            if code not in (0, -signal.SIGKILL):
                bad.append(f"exit {code} (the run after a kill must work): {stderr.strip().splitlines()[-1:]}")
            after = w.guarded()
            for part in ("gan", "export"):
                lost = {k for k, v in before[part].items() if after[part].get(k) != v}
                checks.append(f"{part}: {len(before[part])} earlier files")
                if lost:
                    bad.append(f"{part}: changed or lost {sorted(lost)[:5]}")
            if name == "evidence" and code != 0 and after["evidence"] != before["evidence"]:
                if not w.evidence_whole_elsewhere(before["evidence"]):
                    bad.append("evidence: the earlier report changed")
            checks.append(f"evidence: {len(before['evidence'])} earlier files")
            try:
                w.epoch = w.resume_epoch()
                checks.append(f"resume point valid at epoch {w.epoch}")
            except (OSError, ValueError, KeyError, AssertionError) as error:
                bad.append(f"resume point: {error}")
            record = {"kill": i, "command": name, "delay_s": round(delay, 2), "killed": code == -signal.SIGKILL,
                      "exit": code, "checks": checks, "problems": bad}
            records.append(record)
            problems += [f"kill {i} ({name}): {p}" for p in bad]
            print(f"{i:>3} {name:<9} after {delay:5.1f} s: {'killed' if record['killed'] else f'exit {code}'}; "
                  f"{'OK' if not bad else 'PROBLEM: ' + '; '.join(bad)}", flush=True)
        final = {}
        for name, argv in w.commands().items():  # the next run of every command works
            if args.quick and name == "evidence":
                continue
            result = run(argv)
            final[name] = result.returncode
            if result.returncode != 0:
                problems.append(f"final {name}: exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
        leftovers = sorted(p.name for p in w.root.iterdir() if ".partial-" in p.name)
        if leftovers:
            problems.append(f"temporary folders left after the final runs: {leftovers}")
    killed = sum(r["killed"] for r in records)
    summary = {"kills": killed, "runs": len(records), "ended_before_the_kill": len(records) - killed,
               "final_runs": final, "gan_epoch_reached": w.epoch, "problems": problems}
    with out.writing() as folder:
        (folder / "kill_loop.json").write_text(json.dumps({"summary": summary, "records": records}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(cli.run(main))

"""Misuse every command shares, checked at parse time by covid_keras.cli: no output may be, hold or sit
inside an input; numbers are finite and in range; one writer per run folder; no leftovers of killed runs.

No TensorFlow and no training here: every refusal happens before any work starts.
"""

import argparse
import importlib
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

from covid_keras import cli, commands
from test_cli import snapshot

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]

# String options that name no path (names, URLs, words, expressions): the walk below fails on any
# other undeclared string option, so a new path flag cannot be added without saying what it is.
NOT_PATHS = {
    "--name", "--serving-root", "--server", "--label", "--which", "--split", "--source-column",
    "--gan-preset", "--gan-precision", "--verbose", "--extractor",
}
# `predict --model` is the model's name on a server, not a path.
NOT_PATHS_OF = {"predict": {"--model"}}


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def parser_of(name: str, monkeypatch) -> cli.ArgumentParser:
    """The parser subcommand `name` builds (caught as it is about to parse)."""
    module = importlib.import_module(f"covid_keras.commands.{commands.SUBCOMMANDS[name]}")

    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    with monkeypatch.context() as patch:
        patch.setattr(cli.ArgumentParser, "parse_args", capture)
        with pytest.raises(_Captured) as caught:
            module.parse_args([])
    return caught.value.parser


def label(name: str) -> str:
    return name if name.startswith("-") else name.upper()


def filler(parser: cli.ArgumentParser, given: set[str]) -> list[str]:
    """The other required arguments, with values that parse (they name nothing that exists)."""
    options, positionals = [], []
    taken = {parser.action_of(name).dest for name in given}
    for action in parser._actions:
        if not action.required or action.dest in taken:
            continue
        value = str(next(iter(action.choices))) if action.choices else "1" if action.type in cli.NUMERIC_TYPES else "x"
        if action.option_strings:
            options += [action.option_strings[0], value]
        else:
            positionals.append(value)
    for group in parser._mutually_exclusive_groups:
        if group.required and not any(action.dest in taken for action in group._group_actions):
            options += [group._group_actions[0].option_strings[0], "x"]
    return options + positionals


def argv_of(parser, values: dict[str, str]) -> list[str]:
    argv = filler(parser, set(values))
    for name, value in values.items():
        argv = ([name, value] + argv) if name.startswith("-") else (argv + [value])
    if "--overwrite" in parser._option_string_actions:
        argv.append("--overwrite")
    return argv


def cases(tmp_path: pathlib.Path):
    """(output path, input path) pairs: the same folder, the output inside the input, the input inside the
    output, and a symbolic link to the input."""
    yield "same", tmp_path / "same" / "input", tmp_path / "same" / "input"
    yield "inside", tmp_path / "inside" / "input" / "sub", tmp_path / "inside" / "input"
    yield "holds", tmp_path / "holds" / "outer", tmp_path / "holds" / "outer" / "input"
    yield "link", tmp_path / "link" / "link", tmp_path / "link" / "input"


@pytest.mark.parametrize("name", list(commands.SUBCOMMANDS))
def test_every_output_flag_is_checked_against_every_input_flag(name, tmp_path, monkeypatch, capsys):
    parser = parser_of(name, monkeypatch)
    assert parser.path_outputs, f"{name} declares no output"
    assert parser.path_inputs, f"{name} declares no input"
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    checked = 0
    for output_flag in parser.path_outputs:
        for input_flag in parser.path_inputs:
            for how, output, source in cases(tmp_path / f"{output_flag}-{input_flag}".strip("-")):
                source.mkdir(parents=True)
                (source / "x-ray.png").write_bytes(b"the user's data")
                if how == "link":
                    output.symlink_to(source)
                top = source.parent if how != "holds" else output
                before = snapshot(top)
                argv = argv_of(parser, {output_flag: str(output), input_flag: str(source)})
                with pytest.raises(SystemExit) as exited:
                    parser.parse_args(argv)
                err = capsys.readouterr().err.strip().splitlines()
                assert exited.value.code == 2, (name, argv)
                assert len(err) == 1 and err[0].startswith("error: "), (name, argv, err)
                assert output_flag in err[0] and label(input_flag) in err[0], (name, argv, err)
                assert snapshot(top) == before
                checked += 1
    assert checked == 4 * len(parser.path_outputs) * len(parser.path_inputs)


@pytest.mark.parametrize("name", list(commands.SUBCOMMANDS))
def test_every_string_option_is_declared_a_path_or_known_not_to_be_one(name, monkeypatch):
    parser = parser_of(name, monkeypatch)
    declared = set(parser.path_inputs) | set(parser.path_outputs)
    declared_dests = {parser.action_of(n).dest for n in declared}
    for action in parser._actions:
        if action.nargs == 0 or action.choices or action.type is not None or action.dest in declared_dests:
            continue
        flags = set(action.option_strings) or {action.dest}
        assert flags & (NOT_PATHS | NOT_PATHS_OF.get(name, set())), f"{name}: {flags} is neither declared nor known"


@pytest.mark.parametrize("name", list(commands.SUBCOMMANDS))
def test_every_number_is_parsed_by_the_shared_types_and_refuses_nan(name, monkeypatch, capsys, tmp_path):
    parser = parser_of(name, monkeypatch)
    monkeypatch.chdir(tmp_path)
    for action in parser._actions:
        if action.type in (int, float):
            assert action.choices, f"{name} {action.option_strings}: a bare {action.type.__name__}, not a cli type"
        if action.type not in cli.NUMERIC_TYPES:
            continue
        for bad in ("nan", "inf", "-1"):
            argv = [action.option_strings[0], bad] + filler(parser, {action.option_strings[0]})
            with pytest.raises(SystemExit) as exited:
                parser.parse_args(argv)
            err = capsys.readouterr().err.strip()
            assert exited.value.code == 2 and err.startswith("error: argument ") and action.option_strings[0] in err, (
                name, argv, err)


@pytest.mark.parametrize("text, kind, message", [
    ("nan", cli.positive_float, "must be a finite number"),
    ("inf", cli.finite_float, "must be a finite number"),
    ("0", cli.positive_float, "must be above 0"),
    ("-0.001", cli.positive_float, "must be above 0"),
    ("-5", cli.non_negative_float, "must be at least 0"),
    ("1.5", cli.probability, "must be between 0 and 1"),
    ("-1", cli.non_negative_int, "must be at least 0"),
    ("x", cli.finite_float, "expected a number"),
])
def test_the_numeric_types_refuse_what_cannot_mean_anything(text, kind, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        kind(text)
    assert cli.positive_float("1e-4") == 1e-4 and cli.probability("1") == 1.0 and cli.non_negative_float("0") == 0


@pytest.mark.parametrize("argv, named", [
    (["train-classifier", "--backbone", "vgg16", "--data", "phantom_small", "--out", "o", "--learning-rate", "nan"],
     "--learning-rate"),
    (["train-classifier", "--backbone", "vgg16", "--data", "phantom_small", "--out", "o", "--learning-rate", "0"],
     "--learning-rate"),
    (["train-classifier", "--backbone", "vgg16", "--data", "phantom_small", "--out", "o", "--learning-rate", "-0.001"],
     "--learning-rate"),
    (["train-gan", "--minutes", "nan", "--out", "o"], "--minutes"),
    (["train-gan", "--minutes", "-5", "--out", "o"], "--minutes"),
    (["train-gan", "--leaky-relu-slope", "nan", "--out", "o"], "--leaky-relu-slope"),
    (["train-gan", "--learning-rate", "inf", "--out", "o"], "--learning-rate"),
    (["evaluate-gan", "--run-dir", "r", "--data", "phantom", "--out", "o", "--tstr-blur-sigma", "nan"],
     "--tstr-blur-sigma"),
])
def test_the_issue_s_numbers_are_refused_before_anything_runs(argv, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        commands.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: argument {named}"), err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the issue's examples, end to end


@pytest.fixture
def user_files(tmp_path):
    """A classifier folder, a folder of X-rays, a GAN run with its resume point, a report with its judge."""
    made = {}
    for name, files in {
        "model": ["model.keras", "classifier.json"],
        "xrays": ["COVID/a.png", "Normal/b.png"],
        "run": ["config.json", "checkpoints/state.json", "generator.weights.h5"],
        "report": ["metrics.json", "judge.keras"],
        "saved": ["1/saved_model.pb"],
    }.items():
        for file in files:
            (tmp_path / name / file).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / file).write_bytes(f"the user's {file}".encode())
        made[name] = tmp_path / name
    return made


@pytest.mark.parametrize("argv, flags", [
    ("evaluate-classifier --model {model} --data folder {xrays} --report {model} --overwrite", ("--report", "--model")),
    ("evaluate-classifier --model {model} --data folder --data-path {xrays} --report {xrays} --overwrite",
     ("--report", "--data-path")),
    ("evaluate-classifier --model {model} --data folder {xrays} --report {xrays} --overwrite", ("--report", "--data")),
    ("predict --saved-model {saved} --explain {xrays}/COVID --overwrite {xrays}/COVID/a.png", ("--explain", "FILES")),
    ("predict --saved-model {saved} --explain {saved} --overwrite {xrays}/COVID/a.png", ("--explain", "--saved-model")),
    ("compare-gan-reports {report} --out {report} --overwrite", ("--out", "REPORTS")),
    ("evaluate-gan --run-dir {run} --data phantom --judge {report}/judge.keras --out {report} --overwrite",
     ("--out", "--judge")),
    ("generate --run-dir {run} --out {run}/checkpoints --overwrite", ("--out", "--run-dir")),
])
def test_the_issue_s_examples_are_refused_and_delete_nothing(argv, flags, user_files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exited:
        commands.main(argv.format(**user_files).split())
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert all(flag in err[0] for flag in flags), err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("out", [".", "", "./"])
def test_an_output_that_is_the_working_folder_or_empty_is_refused(out, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        commands.main(["generate", "--run-dir", "run", "--out", out])
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and err.startswith("error: --out") and "\n" not in err
    with pytest.raises(cli.UsageError, match="name the output itself"):
        cli.OutputFolder(".")


# --------------------------------------------------------------------------- leftovers of killed writers


def test_a_killed_writer_s_partial_folder_is_removed_by_the_next_run(tmp_path):
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import pathlib, time
        from covid_keras import cli
        with cli.OutputFolder({str(tmp_path / 'out')!r}).writing() as folder:
            (folder / "model.keras").write_bytes(b"half")
            pathlib.Path({str(ready)!r}).write_text("writing")
            time.sleep(3600)  # until the test kills it
    """)
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    deadline = time.time() + 30
    while not ready.exists():
        assert child.poll() is None and time.time() < deadline, "the writer never started"
        time.sleep(0.02)
    ready.unlink()
    # While the writer lives, another run leaves its partial alone.
    assert cli.remove_leftover_partials(tmp_path, "out") == []
    child.kill()
    child.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")]
    assert len(leftovers) == 1
    with cli.OutputFolder(tmp_path / "out").writing() as folder:
        (folder / "model.keras").write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert snapshot(tmp_path / "out") == {"model.keras": b"whole"}


# --------------------------------------------------------------------------- one writer per folder


HOLDER = textwrap.dedent("""
    import pathlib, sys, time
    from covid_keras import cli
    with cli.one_writer(sys.argv[1]):
        pathlib.Path(sys.argv[2]).write_text("holding")
        time.sleep(3600)  # until the test kills it
""")


def _start_holder(folder, ready):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(ready)],
                             env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    deadline = time.time() + 30
    while not ready.exists():
        assert child.poll() is None and time.time() < deadline, "the holder never started"
        time.sleep(0.02)
    return child


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_s_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "runs" / "gan"
    child = _start_holder(run, tmp_path / "ready")
    try:
        with pytest.raises(cli.UsageError) as refused:
            with cli.one_writer(run):
                pytest.fail("two writers held one folder")
        message = str(refused.value)
        assert f"pid {child.pid} on " in message and str(run) in message and "one writer per folder" in message
    finally:
        child.kill()
        child.wait()
    assert cli.lock_path(run).exists()  # a killed holder leaves its record
    with cli.one_writer(run) as lock:  # the kill released it: taken over, and said so
        assert f'"pid": {os.getpid()}' in lock.read_text()
    assert f"taking over the lock of pid {child.pid}" in capsys.readouterr().err
    assert list(run.parent.iterdir()) == []  # a clean end removes the lock; it never lives in the folder


TRAIN_GAN = ["train-gan", "--run", "3", "--data", "phantom_small", "--image-size", "32", "--epochs", "4"]


def test_train_gan_refuses_a_second_writer_naming_it(tmp_path, capsys):
    run = tmp_path / "run"
    child = _start_holder(run, tmp_path / "ready")
    try:
        assert commands.main([*TRAIN_GAN, "--until-epoch", "1", "--out", str(run)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"error: --out {run} is being written by pid {child.pid} on ")
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
    assert not run.exists()

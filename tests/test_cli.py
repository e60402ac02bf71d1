"""covid_keras.cli: one-line errors with exit code 2, and outputs that are refused, replaced whole or kept.

No TensorFlow here. The helpers at the top drive the real scripts for the test_cli_<family>.py files.
"""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from covid_keras import cli

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers for the script tests


def run_script(name: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """scripts/<name> in a fresh interpreter, importing this checkout's package."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(cli.TRACEBACK_VARIABLE, None)
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def assert_user_error(result: subprocess.CompletedProcess, *named) -> str:
    """Exit code 2, no traceback, one `error:` line, the last of stderr, naming each of `named`."""
    report = f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 2, report
    assert "Traceback" not in result.stderr, report
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), report
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]], report
    for name in named:
        assert str(name) in lines[-1], f"{name} not named in: {lines[-1]}"
    return lines[-1]


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    """Every file under `folder` (names and bytes), to show that a refused command left it alone."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def earlier_output(tmp_path) -> pathlib.Path:
    """A user's earlier output folder, which no refused command may touch."""
    folder = tmp_path / "earlier"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"the user's earlier model")
    (folder / "sub" / "notes.txt").write_text("hand-written notes")
    return folder


# --------------------------------------------------------------------------- OutputFolder


def test_a_non_empty_folder_is_refused_unless_overwrite(earlier_output):
    before = snapshot(earlier_output)
    with pytest.raises(cli.UsageError) as refused:
        cli.OutputFolder(earlier_output)
    assert str(refused.value) == f"{earlier_output} is not empty; pass --overwrite to replace it"
    assert cli.OutputFolder(earlier_output, overwrite=True).path == earlier_output
    assert snapshot(earlier_output) == before  # checking writes nothing


def test_an_absent_or_empty_folder_is_accepted_and_nothing_is_created_before_writing(tmp_path):
    (tmp_path / "empty").mkdir()
    cli.OutputFolder(tmp_path / "empty")
    cli.OutputFolder(tmp_path / "new" / "deeper")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


@pytest.mark.parametrize("where, message", [
    ("a_file", "--out {tmp}/a_file is a file, not a folder"),
    ("a_file/below", "--out {tmp}/a_file/below: {tmp}/a_file is a file, not a folder"),
])
def test_a_folder_that_cannot_be_made_is_refused_by_flag(tmp_path, where, message):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(cli.UsageError) as refused:
        cli.OutputFolder(tmp_path / where)
    assert str(refused.value) == message.format(tmp=tmp_path)


def test_an_input_inside_the_output_is_refused_even_with_overwrite(earlier_output):
    with pytest.raises(cli.UsageError, match=r"--out .*earlier holds --run-dir .*earlier/sub: .*choose another --out"):
        cli.OutputFolder(earlier_output, overwrite=True, inputs={"--run-dir": str(earlier_output / "sub")})
    with pytest.raises(cli.UsageError, match=r"--out .*earlier sits inside --run-dir "):
        cli.OutputFolder(earlier_output, overwrite=True, inputs={"--run-dir": str(earlier_output.parent)})
    (earlier_output.parent / "elsewhere").mkdir()
    cli.OutputFolder(earlier_output, overwrite=True, inputs={"--run-dir": str(earlier_output.parent / "elsewhere"),
                                                             "--x": None})


def test_writing_renames_into_place_only_on_success(tmp_path, earlier_output):
    before = snapshot(earlier_output)
    out = cli.OutputFolder(earlier_output, overwrite=True)
    with pytest.raises(RuntimeError, match="training died"):
        with out.writing() as folder:
            assert folder.parent == earlier_output.parent and folder.name.startswith(".earlier.partial-")
            (folder / "model.keras").write_bytes(b"half a model")
            raise RuntimeError("training died")
    assert snapshot(earlier_output) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]  # no partial left behind

    with out.writing() as folder:
        (folder / "model.keras").write_bytes(b"the new model")
    assert snapshot(earlier_output) == {"model.keras": b"the new model"}  # replaced whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]

    new = cli.OutputFolder(tmp_path / "fresh" / "out")
    with new.writing() as folder:
        (folder / "a").write_text("1")
    assert snapshot(tmp_path / "fresh" / "out") == {"a": b"1"}
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "fresh" / "out").stat().st_mode & 0o777 == 0o777 & ~umask  # not tempfile's owner-only


def test_writing_refuses_a_folder_filled_meanwhile_and_keeps_the_new_output(tmp_path):
    out = cli.OutputFolder(tmp_path / "out")
    with pytest.raises(cli.UsageError, match="something wrote into it meanwhile; the new output is in"):
        with out.writing() as folder:
            (folder / "new").write_text("new")
            (tmp_path / "out").mkdir()
            (tmp_path / "out" / "theirs").write_text("theirs")
    assert snapshot(tmp_path / "out") == {"theirs": b"theirs"}
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")]
    assert len(kept) == 1 and snapshot(kept[0]) == {"new": b"new"}


def test_a_resumable_output_keeps_its_partial_work_for_the_next_try(tmp_path):
    out = cli.OutputFolder(tmp_path / "out")
    with pytest.raises(RuntimeError):
        with out.writing(resumable=True) as folder:
            (folder / "feature_cache").mkdir()
            (folder / "feature_cache" / "vgg16.npz").write_bytes(b"features")
            raise RuntimeError("killed")
    assert not (tmp_path / "out").exists()
    with cli.OutputFolder(tmp_path / "out").writing(resumable=True) as folder:
        assert (folder / "feature_cache" / "vgg16.npz").read_bytes() == b"features"
        (folder / "results.json").write_text("{}")
    assert sorted(snapshot(tmp_path / "out")) == ["feature_cache/vgg16.npz", "results.json"]
    with pytest.raises(RuntimeError):
        with cli.OutputFolder(tmp_path / "other").writing(resumable=True):
            raise RuntimeError("failed before writing anything")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # an empty partial is not kept


def test_a_kill_while_writing_leaves_the_earlier_output_whole(tmp_path, earlier_output):
    before = snapshot(earlier_output)
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import pathlib, time
        from covid_keras import cli
        with cli.OutputFolder({str(earlier_output)!r}, overwrite=True).writing() as folder:
            (folder / "model.keras").write_bytes(b"half")
            pathlib.Path({str(ready)!r}).write_text("writing")
            time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 30
    while not ready.exists():
        assert child.poll() is None and time.time() < deadline, "the writer never started"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert snapshot(earlier_output) == before


# --------------------------------------------------------------------------- OutputFile


def test_an_output_file_is_refused_when_it_exists_and_replaced_atomically(tmp_path):
    target = tmp_path / "preview.png"
    target.write_bytes(b"the earlier preview")
    with pytest.raises(cli.UsageError, match=r"preview.png exists; pass --overwrite to replace it$"):
        cli.OutputFile(target, flag="--preview")
    with pytest.raises(cli.UsageError, match="--preview .* is a folder, not a file"):
        cli.OutputFile(tmp_path, flag="--preview")
    with pytest.raises(ValueError):
        with cli.OutputFile(target, overwrite=True).writing() as path:
            path.write_bytes(b"half")
            raise ValueError("plot failed")
    assert target.read_bytes() == b"the earlier preview"
    with cli.OutputFile(target, overwrite=True).writing() as path:
        assert path.suffix == ".png" and path.parent == tmp_path  # formats chosen by suffix still work
        path.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["preview.png"]


# --------------------------------------------------------------------------- run, ArgumentParser


def test_run_turns_user_errors_into_one_line_and_exit_code_2(capsys, monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)

    def failing(error):
        def main(argv):
            print("progress")
            raise error
        return main

    assert cli.run(failing(FileNotFoundError("data/x.png is missing"))) == 2
    captured = capsys.readouterr()
    assert captured.out == "progress\n" and captured.err == "error: data/x.png is missing\n"
    assert cli.run(failing(ValueError("first line\n  second line\n"))) == 2
    assert capsys.readouterr().err == "error: first line; second line\n"
    assert cli.run(failing(RuntimeError("server down")), errors=(RuntimeError,)) == 2
    with pytest.raises(KeyError):  # a bug keeps its traceback
        cli.run(failing(KeyError("bug")))
    monkeypatch.setenv(cli.TRACEBACK_VARIABLE, "1")
    with pytest.raises(cli.UsageError):
        cli.run(failing(cli.UsageError("debugging")))
    assert cli.run(lambda argv: {"metrics": 1}) == 0 and cli.run(lambda argv: 3) == 3


def test_argument_errors_are_one_line(capsys):
    parser = cli.ArgumentParser(prog="tool")
    parser.add_argument("--epochs", type=cli.positive_int, default=3)
    parser.add_argument("--out", required=True)
    for argv, message in [
        (["--out", "x", "--epochs", "0"], "error: argument --epochs: must be at least 1, got 0\n"),
        (["--out", "x", "--epochs", "two"], "error: argument --epochs: expected a whole number, got 'two'\n"),
        (["--epochs", "2"], "error: the following arguments are required: --out\n"),
    ]:
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(argv)
        assert exited.value.code == 2 and capsys.readouterr().err == message
    assert parser.parse_args(["--out", "x", "--epochs", "5"]).epochs == 5

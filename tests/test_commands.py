"""The `covid-keras` command: its subcommands, fast help, and the scripts that wrap the same code."""

import importlib
import pathlib
import subprocess
import sys

import pytest

from covid_keras import commands

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_subcommand_has_a_module_with_run_and_a_wrapping_script():
    for name, module in commands.SUBCOMMANDS.items():
        assert (PROJECT_ROOT / "covid_keras" / "commands" / f"{module}.py").is_file(), name
        assert f"from covid_keras.commands.{module} import main, run" in (PROJECT_ROOT / "scripts" / f"{module}.py").read_text()
    wrapped = {path.stem for path in (PROJECT_ROOT / "scripts").glob("*.py")}
    assert wrapped == set(commands.SUBCOMMANDS.values())


def test_help_lists_every_subcommand_without_loading_tensorflow():
    code = "import sys; from covid_keras import commands; commands.main(['--help']); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    for name in commands.SUBCOMMANDS:
        assert f"  {name} " in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_every_subcommand_answers_help_without_loading_tensorflow():
    # One process for all: each --help runs in turn, and TensorFlow must still not be loaded at the end.
    code = (
        "import contextlib, io, sys\n"
        "from covid_keras import commands\n"
        "for name in commands.SUBCOMMANDS:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            commands.main([name, '--help'])\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, (name, e.code)\n"
        "    assert f'covid-keras {name}' in out.getvalue(), name\n"
        "    print(name, sorted(m for m in ('tensorflow', 'keras', 'tensorflow_datasets') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = [line for line in out.stdout.splitlines() if not line.endswith("[]")]
    assert not loaded, f"--help loaded TensorFlow: {loaded}"


def test_an_unknown_or_missing_subcommand_is_one_error_line(capsys):
    assert commands.main(["train-gun"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: unknown subcommand 'train-gun'")
    assert commands.main([]) == 2


@pytest.mark.parametrize("name", ["train-gan", "study", "predict"])
def test_a_subcommand_runs_its_module(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        commands.main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"covid-keras {name}" in capsys.readouterr().out
    assert importlib.import_module(f"covid_keras.commands.{commands.SUBCOMMANDS[name]}").run


@pytest.mark.parametrize("run, batch_size", [("3", 8), ("stable", 32)])
def test_train_gan_help_shows_the_chosen_presets_values(run, batch_size, capsys):
    from covid_keras.commands import train_gan

    with pytest.raises(SystemExit):
        train_gan.parse_args(["--run", run, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"--batch-size BATCH_SIZE (preset {run}: {batch_size})" in text

"""Misuse of the GAN commands (generate, train_gan) through the real scripts: one `error:` line naming
the flag or path, exit code 2, no traceback, a user's earlier output untouched. train_gan's run
folder is resumed, not refused (tests/test_gan_training.py kills and resumes it).
"""

import pytest
from test_cli import assert_user_error, earlier_output, run_script, snapshot  # noqa: F401
from test_gan_training import TINY, tiny_config

from covid_keras import data
from covid_keras.gan import training as gan_training


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    gan_training.train_gan(tiny_config(epochs=1), data.DataSpec.parse("phantom_small"), run_dir, verbose=0)
    return run_dir


def test_generate_refuses_a_non_empty_out_and_replaces_it_whole_with_overwrite(run_dir, tmp_path):
    out = tmp_path / "generated"
    assert run_script("generate.py", "--run-dir", run_dir, "--per-class", "2", "--out", out).returncode == 0
    first = snapshot(out)
    assert sorted(first) == [f"{name}/gen-s0-{i:05d}.png" for name in ("COVID", "Normal") for i in range(2)]

    refused = run_script("generate.py", "--run-dir", run_dir, "--per-class", "1", "--seed", "1", "--out", out)
    assert assert_user_error(refused) == f"error: {out} is not empty; pass --overwrite to replace it"
    assert snapshot(out) == first

    replaced = run_script("generate.py", "--run-dir", run_dir, "--per-class", "1", "--seed", "1", "--out", out,
                          "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    # Replaced, not written into: the seed-0 images are gone, not mixed with the new ones.
    assert sorted(snapshot(out)) == ["COVID/gen-s1-00000.png", "Normal/gen-s1-00000.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated"]


@pytest.mark.parametrize("change, named", [
    (["--per-class", "0"], ["--per-class"]),
    (["--batch-size", "x"], ["--batch-size", "'x'"]),
    (["--run-dir", "{tmp}/no-run"], ["{tmp}/no-run"]),
    (["--out", "{tmp}/a_file"], ["--out", "{tmp}/a_file is a file"]),
    (["--min-guide-confidence", "0.9"], ["class guide"]),  # the tiny run has none
])
def test_generate_misuse_is_one_line_naming_it(run_dir, tmp_path, change, named):
    (tmp_path / "a_file").write_text("not a folder")
    change = [item.format(tmp=tmp_path) for item in change]
    arguments = {"--run-dir": str(run_dir), "--out": str(tmp_path / "out")}
    arguments.update(zip(change[::2], change[1::2]))
    result = run_script("generate.py", *[item for pair in arguments.items() for item in pair])
    assert_user_error(result, *(name.format(tmp=tmp_path) for name in named))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no out, no partial


def test_generate_never_replaces_the_run_it_reads(run_dir):
    before = snapshot(run_dir)
    result = run_script("generate.py", "--run-dir", run_dir, "--out", run_dir, "--overwrite")
    assert_user_error(result, "--out", "--run-dir", run_dir)
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("change, named", [
    (["--run-dir", "{tmp}/a_file"], ["--run-dir", "{tmp}/a_file is a file"]),
    (["--out", "{tmp}/a_file/run"], ["--out", "{tmp}/a_file is a file"]),
    (["--data", "folder", "--data-path", "{tmp}/no-such-tree"], ["{tmp}/no-such-tree"]),
    (["--epochs", "many"], ["--epochs", "'many'"]),
])
def test_train_gan_misuse_is_one_line_naming_it(tmp_path, change, named):
    (tmp_path / "a_file").write_text("not a folder")
    change = [item.format(tmp=tmp_path) for item in change]
    flags = ["--image-size", str(TINY["image_size"]), "--epochs", "1"]
    result = run_script("train_gan.py", "--run", "3", "--data", "phantom_small", *flags,
                        *(["--run-dir", tmp_path / "run"] if "--run-dir" not in change else []), *change)
    assert_user_error(result, *(name.format(tmp=tmp_path) for name in named))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] and (tmp_path / "a_file").read_text() == "not a folder"


def test_gan_evidence_refuses_a_non_run_and_a_non_empty_out_before_any_work(run_dir, tmp_path, earlier_output):
    (tmp_path / "not-a-run").mkdir()
    not_a_run = run_script("gan_evidence.py", "--run-dir", tmp_path / "not-a-run", "--data", "phantom_small",
                           "--out", tmp_path / "r")
    expected = f"error: --run-dir {tmp_path / 'not-a-run'} is not a GAN run (no config.json or translation.json)"
    assert assert_user_error(not_a_run) == expected
    out = earlier_output
    before = snapshot(out)
    refused = run_script("gan_evidence.py", "--run-dir", run_dir, "--data", "phantom_small", "--out", out)
    assert assert_user_error(refused) == f"error: {out} is not empty; pass --overwrite to replace it"
    assert snapshot(out) == before


def test_compare_evidence_answers_misuse_in_one_line(tmp_path, capsys):
    from covid_keras import cli
    from covid_keras.commands import compare_evidence

    (tmp_path / "a").mkdir()
    assert cli.run(compare_evidence.main, [str(tmp_path / "a"), "--label", "x", "--label", "y"]) == 2
    assert capsys.readouterr().err.strip() == "error: --label: 2 labels for 1 reports; give one per report"
    assert cli.run(compare_evidence.main, [str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'a' / 'evidence.json'} is missing (an evidence report)"


@pytest.mark.parametrize("script, args", [
    ("train_translation_gan.py", ["--data", "phantom_small", "--out", "{tmp}/a_file"]),
    ("reproduce.py", ["--quick", "--seeds", "0", "--out", "{tmp}/new"]),
])
def test_translation_and_reproduce_misuse_is_one_error_line(tmp_path, script, args):
    (tmp_path / "a_file").write_text("not a folder")
    result = run_script(script, *(a.format(tmp=tmp_path) for a in args))
    assert_user_error(result)
    assert (tmp_path / "a_file").read_text() == "not a folder" and not (tmp_path / "new").exists()

"""A GAN run folder whose resume point is lost or damaged is refused with one line naming the file,
never started over (which would rewrite its weights and losses). No training: refused before any work."""

import pathlib

import pytest
from test_cli import snapshot
from test_cli_misuse import TRAIN_GAN

from covid_keras import commands


def gan_run_with_epochs(folder: pathlib.Path, state: str | None) -> pathlib.Path:
    """A run folder that trained 3 epochs: its record, weights, losses and (when given) state.json."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "generator.weights.h5").write_bytes(b"G")
    (folder / "losses.csv").write_text("epoch,d_loss,g_loss\n0,1,1\n1,1,1\n2,1,1\n")
    if state is not None:
        (folder / "checkpoints" / "train_state-epoch00003.weights.h5").write_bytes(b"state")
        (folder / "checkpoints" / "state.json").write_text(state)
    return folder


@pytest.mark.parametrize("state, message", [
    (None, "checkpoints/state.json is missing but {run} holds generator.weights.h5, losses.csv of 3 epochs"),
    ('["epoch", 3]', "checkpoints/state.json: not a resume point"),
    ('{"epoch": 3}', "checkpoints/state.json: not a resume point"),
    ('{"epoch": "3", "train_state": "x"}', "checkpoints/state.json: not a resume point"),
    ('{"epoch": 3, "train_st', "checkpoints/state.json is not valid JSON"),
])
def test_a_run_whose_resume_point_is_lost_or_damaged_is_refused_not_restarted(state, message, tmp_path, capsys):
    from covid_keras.gan import run_dir as gan_run_dir

    run = gan_run_with_epochs(tmp_path / "run", state)
    before = snapshot(run)
    with pytest.raises(ValueError) as refused:
        gan_run_dir.resume_point(run) or gan_run_dir.refuse_lost_resume_point(run)
    assert str(refused.value).startswith(str(run / "checkpoints")) and message.format(run=run) in str(refused.value)
    if state in (None, '{"epoch": 3}'):  # the same through the command, before any data is read or model built
        assert commands.main([*TRAIN_GAN, "--out", str(run)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"error: {run / 'checkpoints'}") and "Traceback" not in "".join(err)
    assert snapshot(run) == before


def test_a_kill_during_the_first_checkpoint_still_starts_the_run_afresh(tmp_path):
    from covid_keras.gan import run_dir as gan_run_dir

    run = gan_run_with_epochs(tmp_path / "run", None)
    (run / "losses.csv").write_text("epoch,d_loss,g_loss\n0,1,1\n")  # epoch 1 logged, its checkpoint cut short
    (run / "checkpoints" / "train_state-epoch00001.weights.h5").write_bytes(b"state")
    assert gan_run_dir.resume_point(run) is None
    gan_run_dir.refuse_lost_resume_point(run)  # nothing to refuse: epoch 1 is redone


def test_a_second_header_in_the_losses_is_named(tmp_path):
    from covid_keras.gan import run_dir as gan_run_dir

    losses = tmp_path / "losses.csv"
    losses.write_text("epoch,d_loss\n0,1\nepoch,d_loss\n1,1\n")
    with pytest.raises(ValueError, match=f"{losses}: line 3 is not an epoch's row"):
        gan_run_dir.truncate_csv(losses, 1)

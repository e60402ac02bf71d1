"""A full disk or a read-only folder ends in one error line naming the file, never a crash, and the
earlier file stays as it was (simulated: chmod does not stop root)."""

import pytest

from covid_keras import cli


@pytest.mark.parametrize("where, error", [
    ("fsync", OSError(28, "No space left on device")),
    ("replace", PermissionError(13, "Permission denied")),
])
def test_a_failed_write_names_the_file_and_keeps_the_earlier_one(where, error, tmp_path, monkeypatch, capsys):
    from covid_keras import files

    target = tmp_path / "state.json"
    target.write_text("the earlier resume point")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(files.os, where, fail)
    with pytest.raises(OSError) as raised:
        files.atomic_write_text(target, "the new one")
    monkeypatch.undo()
    assert str(target) in str(raised.value) and error.strerror in str(raised.value)
    assert target.read_text() == "the earlier resume point" and sorted(tmp_path.iterdir()) == [target]

    def main(argv):
        files.atomic_write_text(target, "the new one")

    monkeypatch.setattr(files.os, where, fail)
    assert cli.run(main, []) == 2
    assert capsys.readouterr().err == f"error: [Errno {error.errno}] {error.strerror}: '{target}'\n"


def test_weights_are_not_handed_to_h5py_when_the_disk_cannot_hold_them(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from covid_keras import files

    class Model:
        weights = [SimpleNamespace(shape=(1000, 1000), dtype="float32")]  # 4 MB

        def save_weights(self, path, overwrite=True):
            raise AssertionError("handed to h5py on a full disk")

    target = tmp_path / "generator.weights.h5"
    target.write_bytes(b"the earlier weights")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: SimpleNamespace(free=2 << 20))
    with pytest.raises(OSError, match=r"No space left on device \(about 5 MB needed, 2 MB free\)") as raised:
        files.atomic_save_weights(Model(), target)
    assert raised.value.errno == 28 and raised.value.filename == str(target)
    assert target.read_bytes() == b"the earlier weights" and sorted(tmp_path.iterdir()) == [target]


def test_a_full_disk_while_a_command_writes_its_output_names_the_output(tmp_path):
    earlier = tmp_path / "report"
    earlier.mkdir()
    (earlier / "results.md").write_text("the earlier report")
    with pytest.raises(OSError) as raised:
        with cli.OutputFolder(earlier, overwrite=True).writing() as folder:
            (folder / "half.md").write_text("half")
            raise OSError(28, "No space left on device")  # what a write(2) on a full disk raises
    assert raised.value.filename == str(earlier) and "No space left on device" in str(raised.value)
    assert (earlier / "results.md").read_text() == "the earlier report" and sorted(tmp_path.iterdir()) == [earlier]
    with pytest.raises(OSError) as raised:
        with cli.OutputFile(tmp_path / "p.png").writing():
            raise OSError(28, "No space left on device")
    assert raised.value.filename == str(tmp_path / "p.png")

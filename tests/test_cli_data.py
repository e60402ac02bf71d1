"""Misuse of prepare_data through the real script: one `error:` line naming the flag or path, exit
code 2, no traceback, an existing --preview file untouched unless --overwrite.
"""

import pytest
from test_cli import assert_user_error, run_script


def test_an_existing_preview_is_refused_unless_overwrite(tmp_path):
    preview = tmp_path / "preview.png"
    preview.write_bytes(b"the user's earlier preview")
    refused = run_script("prepare_data.py", "--data", "phantom_small", "--preview", preview)
    assert assert_user_error(refused) == f"error: {preview} exists; pass --overwrite to replace it"
    assert preview.read_bytes() == b"the user's earlier preview"

    replaced = run_script("prepare_data.py", "--data", "phantom_small", "--preview", preview, "--preview-per-class",
                          "2", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert preview.read_bytes().startswith(b"\x89PNG") and sorted(p.name for p in tmp_path.iterdir()) == ["preview.png"]


@pytest.mark.parametrize("arguments, named", [
    (["--data", "folder", "--manual-dir", "{tmp}/no-such-tree"], ["{tmp}/no-such-tree"]),
    (["--data", "phantom_small", "--manual-dir", "{tmp}"], ["'phantom_small' takes no path"]),
    (["--data", "phantom_small", "--preview", "{tmp}/p.png", "--preview-per-class", "0"], ["--preview-per-class"]),
    (["--data", "phantom_small", "--preview", "{tmp}"], ["--preview", "is a folder"]),
    (["--data", "phantom_small", "--preview", "{tmp}/a_file/p.png"], ["--preview", "{tmp}/a_file is a file"]),
    (["--data", "nope"], ["--data"]),
])
def test_prepare_data_misuse_is_one_line_naming_it(tmp_path, arguments, named):
    (tmp_path / "a_file").write_text("x")
    result = run_script("prepare_data.py", *(item.format(tmp=tmp_path) for item in arguments))
    assert_user_error(result, *(name.format(tmp=tmp_path) for name in named))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]

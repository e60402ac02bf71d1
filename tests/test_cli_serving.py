"""Misuse of the serving commands (export, predict) through the real scripts: one `error:` line
naming the flag or file, exit code 2, no traceback, an existing export base untouched.
"""

import json

import numpy as np
import pytest
from test_cli import assert_user_error, run_script, snapshot
from test_export import IMAGE_SIZE, build_tiny_classifier, encode

from covid_keras import export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A base folder with one exported classifier, and image files good and bad."""
    root = tmp_path_factory.mktemp("serving")
    base = root / "saved_models"
    export.export_classifier(build_tiny_classifier(), backbone="vgg16", image_size=IMAGE_SIZE, name="clf",
                             base_dir=base)
    image = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)
    files = {"good": root / "good.png", "gif": root / "scan.gif", "truncated": root / "cut.png",
             "text": root / "notes.png"}
    files["good"].write_bytes(encode(image, "PNG"))
    files["gif"].write_bytes(encode(image, "GIF"))
    files["truncated"].write_bytes(encode(image, "PNG")[:60])
    files["text"].write_text("not an image")
    return {"base": base, "model": base / "clf", **files}


def test_predict_scores_good_files(exported):
    result = run_script("predict.py", "--saved-model", exported["model"], exported["good"], exported["good"])
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == [str(exported["good"])] * 2 and 0 < float(rows[0][1]) < 1


@pytest.mark.parametrize("bad, named", [
    ("gif", ["scan.gif", "is not a PNG or JPEG file"]),
    ("text", ["notes.png", "is not a PNG or JPEG file"]),
    ("truncated", ["cut.png", "Invalid PNG"]),
])
def test_predict_names_the_file_the_model_refuses(exported, bad, named):
    # The bad file sits in a batch after a good one: the error must name it, not the batch.
    result = run_script("predict.py", "--saved-model", exported["model"], exported["good"], exported[bad])
    line = assert_user_error(result, *named)
    assert line.startswith(f"error: {exported[bad]}: ") and str(exported["good"]) not in line
    assert "codec can't decode" not in line


@pytest.mark.parametrize("arguments, named", [
    (["--saved-model", "{model}", "{root}/absent.png"], ["{root}/absent.png"]),
    (["--saved-model", "{root}/no-model", "{good}"], ["{root}/no-model"]),
    (["--saved-model", "{model}", "--batch-size", "0", "{good}"], ["--batch-size"]),
    (["--saved-model", "{model}", "--batch-size", "-1", "{good}"], ["--batch-size"]),
    (["--server", "http://127.0.0.1:9", "{good}"], ["--model"]),
    (["--server", "http://127.0.0.1:9", "--model", "clf", "{good}"], ["cannot reach http://127.0.0.1:9"]),
    (["{good}"], ["--server", "--saved-model"]),
])
def test_predict_misuse_is_one_line_naming_it(exported, arguments, named):
    names = {"model": exported["model"], "root": exported["good"].parent, "good": exported["good"]}
    result = run_script("predict.py", *(item.format(**names) for item in arguments))
    assert_user_error(result, *(name.format(**names) for name in named))
    assert result.stdout == ""


def classifier_folder(folder, model_bytes: bytes | None = None):
    """A classifier folder as train_classifier.py writes it (its model a tiny stand-in, or given bytes)."""
    folder.mkdir()
    if model_bytes is None:
        build_tiny_classifier().save(folder / "model.keras")
    else:
        (folder / "model.keras").write_bytes(model_bytes)
    (folder / "classifier.json").write_text(json.dumps(
        {"backbone": "vgg16", "image_size": IMAGE_SIZE, "class_names": ["Normal", "COVID"], "weights": {"name": "none"}}))
    return folder


@pytest.mark.parametrize("classifiers, named", [
    (["{tmp}/absent"], ["{tmp}/absent"]),
    (["{tmp}/good", "{tmp}/absent"], ["{tmp}/absent"]),  # checked before the first export: nothing exported
    (["{tmp}/zero"], ["{tmp}/zero/model.keras", "empty"]),
    (["{tmp}/no_metadata"], ["{tmp}/no_metadata/classifier.json"]),
])
def test_export_misuse_leaves_the_base_untouched(exported, tmp_path, classifiers, named):
    classifier_folder(tmp_path / "good")
    classifier_folder(tmp_path / "zero", b"")
    (tmp_path / "no_metadata").mkdir()
    before = snapshot(exported["base"])
    arguments = [item for path in classifiers for item in ("--classifier", path.format(tmp=tmp_path))]
    result = run_script("export.py", *arguments, "--base", exported["base"])
    assert_user_error(result, *(name.format(tmp=tmp_path) for name in named))
    assert snapshot(exported["base"]) == before


def test_export_refuses_a_base_that_is_a_file(tmp_path):
    classifier_folder(tmp_path / "good")
    (tmp_path / "base").write_text("a file")
    result = run_script("export.py", "--classifier", tmp_path / "good", "--base", tmp_path / "base")
    assert_user_error(result, "--base", f"{tmp_path / 'base'} is a file")
    assert (tmp_path / "base").read_text() == "a file"


def _zero_png(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of zeros, built row by row: small on disk, huge once decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor, row = zlib.compressobj(9), b"\x00" * (width + 1)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_predict_scores_every_good_file_around_the_bad_ones(exported, tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (40, 40), dtype=np.uint8)
    jpeg = tmp_path / "scan.jpg"
    jpeg.write_bytes(encode(image, "JPEG"))
    huge = tmp_path / "huge.png"
    huge.write_bytes(_zero_png(12000, 12000))  # 144 megapixels declared in ~150 KB
    files = [exported["good"], exported["gif"], jpeg, exported["truncated"], huge, exported["good"]]
    result = run_script("predict.py", "--saved-model", exported["model"], "--batch-size", "2", *files)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    scored = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert scored == [str(exported["good"]), str(jpeg), str(exported["good"])]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [line.split(": ")[1] for line in errors] == [str(exported["gif"]), str(exported["truncated"]), str(huge)]
    assert "12000 x 12000 pixels, more than the limit of 50000000 pixels" in errors[-1]

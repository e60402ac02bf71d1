"""covid_keras.sources: layouts, bad input, de-duplication and splits, on tiny trees made here."""

import io
import os
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from covid_keras import labels, sources

BINARY = labels.BINARY_CLASSES
SIZE = 32


def random_pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


def write_png(path: pathlib.Path, pixels: np.ndarray) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def make_tree(root: pathlib.Path, per_class: dict[str, int], images_folder: bool = True, seed: int = 0) -> pathlib.Path:
    """root/<class>/[images/]<class>-<i>.png with distinct random pixels."""
    for c, (class_name, count) in enumerate(per_class.items()):
        folder = root / class_name / ("images" if images_folder else "")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_png(folder / f"{class_name}-{i}.png", random_pixels(seed * 100_000 + c * 1000 + i))
    return root


def zip_folder(folder: pathlib.Path, zip_path: pathlib.Path, top: str = "") -> pathlib.Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, os.path.join(top, path.relative_to(folder).as_posix()))
    return zip_path


def split_of(prepared: sources.PreparedSource) -> dict[str, str]:
    return {item.key: name for name, items in prepared.splits.items() for item in items}


# --- decoding: every kind of bad or odd file ------------------------------------------------


def png_bytes(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def test_zero_byte_file_is_unreadable():
    with pytest.raises(sources.UnreadableImageError, match="empty file"):
        sources.decode_grey(b"")


def test_truncated_png_is_unreadable():
    data = png_bytes(Image.fromarray(random_pixels(1)))
    with pytest.raises(sources.UnreadableImageError, match="truncated or corrupt PNG"):
        sources.decode_grey(data[: len(data) // 2])
    with pytest.raises(sources.UnreadableImageError, match="truncated or corrupt PNG"):
        sources.decode_grey(data[:40])  # cut inside the header


def test_text_file_is_not_an_image():
    with pytest.raises(sources.UnreadableImageError, match="not an image"):
        sources.decode_grey(b"patient notes\n")


def test_rgb_and_rgba_png_become_grey():
    grey = random_pixels(2)
    rgb = np.stack([grey] * 3, axis=-1)
    assert np.array_equal(sources.decode_grey(png_bytes(Image.fromarray(rgb))).pixels, grey)
    rgba = np.concatenate([rgb, np.full((SIZE, SIZE, 1), 255, np.uint8)], axis=-1)
    decoded = sources.decode_grey(png_bytes(Image.fromarray(rgba)))
    assert decoded.mode == "RGBA" and decoded.pixels.shape == (SIZE, SIZE)
    assert np.array_equal(decoded.pixels, grey)


def test_16_bit_png_is_scaled_to_8_bit():
    wide = np.array([[0, 257 * 128, 65535, 257 * 7]], dtype=np.uint16)
    decoded = sources.decode_grey(png_bytes(Image.fromarray(wide)))
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.tolist() == [[0, 128, 255, 7]]


def test_jpeg_named_png_is_read_by_content():
    data = png_bytes(Image.fromarray(np.full((SIZE, SIZE), 100, np.uint8)), format="JPEG")
    decoded = sources.decode_grey(data)
    assert decoded.format == "JPEG"
    assert abs(int(decoded.pixels.mean()) - 100) <= 2


def test_bad_files_are_skipped_and_listed_with_reasons(tmp_path):
    root = make_tree(tmp_path / "data", {"Normal": 5, "COVID": 5})
    covid = root / "COVID" / "images"
    good = png_bytes(Image.fromarray(random_pixels(77)))
    (covid / "truncated.png").write_bytes(good[: len(good) // 2])
    (covid / "empty.png").write_bytes(b"")
    (covid / "notes.txt").write_text("not an image")
    (covid / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    write_png(covid / "rgb.png", np.stack([random_pixels(78)] * 3, -1))
    write_png(covid / "rgba.png", np.dstack([random_pixels(79)] * 3 + [np.full((SIZE, SIZE), 255, np.uint8)]))
    Image.fromarray(np.arange(SIZE * SIZE, dtype=np.uint16).reshape(SIZE, SIZE) * 60).save(covid / "deep.png")
    Image.fromarray(random_pixels(80)).save(covid / "really_a_jpeg.png", format="JPEG")

    prepared = sources.read_image_tree(root, BINARY)

    reasons = {entry["file"]: entry["reason"] for entry in prepared.report["skipped"]}
    assert set(reasons) == {f"COVID/images/{n}" for n in ("truncated.png", "empty.png", "notes.txt", ".DS_Store")}
    assert "truncated" in reasons["COVID/images/truncated.png"]
    assert "empty file" in reasons["COVID/images/empty.png"]
    assert "not an image file" in reasons["COVID/images/notes.txt"]
    assert "not an image file" in reasons["COVID/images/.DS_Store"]
    assert prepared.skipped_count == 4
    keys = set(split_of(prepared))
    assert {"COVID/rgb.png", "COVID/rgba.png", "COVID/deep.png", "COVID/really_a_jpeg.png"} <= keys
    assert len(keys) == 14
    conversions = prepared.report["conversions"]
    assert conversions["JPEG data named .png"] == 1
    assert conversions["RGB -> L"] == 1 and conversions["RGBA -> L"] == 1
    items = {item.key: item for split in prepared.splits.values() for item in split}
    for item in items.values():
        pixels = item.pixels()
        assert pixels.dtype == np.uint8 and pixels.shape == (SIZE, SIZE)
    # A plain 8-bit grey PNG is stored as it is; anything else is re-encoded as one.
    assert items["COVID/COVID-0.png"].png() == (covid / "COVID-0.png").read_bytes()
    assert Image.open(io.BytesIO(items["COVID/rgba.png"].png())).mode == "L"
    assert Image.open(io.BytesIO(items["COVID/deep.png"].png())).mode == "L"


# --- layouts ---------------------------------------------------------------------------------


def test_old_and_new_layout_zip_and_top_folder_give_the_same_splits(tmp_path):
    new = make_tree(tmp_path / "new", {"Normal": 10, "COVID": 10, "Viral Pneumonia": 2})
    old = make_tree(tmp_path / "old", {"Normal": 10, "COVID": 10, "Viral Pneumonia": 2}, images_folder=False)
    write_png(new / "COVID" / "masks" / "COVID-0.png", random_pixels(999))
    download = tmp_path / "download"
    download.mkdir()
    zip_folder(new, download / "archive.zip", top="COVID-19_Radiography_Dataset")
    extracted_with_top = tmp_path / "extracted"
    shutil.copytree(new, extracted_with_top / "COVID-19_Radiography_Dataset")

    results = [
        sources.read_image_tree(path, BINARY)
        for path in (new, old, download, download / "archive.zip", extracted_with_top)
    ]

    expected = split_of(results[0])
    assert len(expected) == 20
    for prepared in results[1:]:
        assert split_of(prepared) == expected
    assert results[2].report["source"].endswith("archive.zip")
    assert results[2].report["root"] == "COVID-19_Radiography_Dataset"


def test_masks_other_classes_and_loose_files_are_reported_as_ignored(tmp_path):
    root = make_tree(tmp_path / "data", {"Normal": 5, "COVID": 5, "Lung_Opacity": 3})
    write_png(root / "COVID" / "masks" / "COVID-0.png", random_pixels(500))
    write_png(root / "COVID" / "masks" / "COVID-1.png", random_pixels(501))
    (root / "COVID.metadata.xlsx").write_bytes(b"xlsx")

    report = sources.read_image_tree(root, BINARY).report

    ignored = {(entry["path"], entry["reason"]): entry["files"] for entry in report["ignored"]}
    assert ignored == {
        ("COVID/masks", "lung masks"): 2,
        ("Lung_Opacity", "class not in this config"): 3,
        ("COVID.metadata.xlsx", "not in a class folder"): 1,
    }
    assert report["ignored_classes"] == ["Lung_Opacity"]


def test_class_folders_match_case_insensitively(tmp_path):
    root = make_tree(tmp_path / "data", {"normal": 5, "CoViD": 5})
    prepared = sources.read_image_tree(root, BINARY)
    keys = split_of(prepared)
    assert "COVID/CoViD-0.png" in keys and "Normal/normal-0.png" in keys
    assert prepared.report["layout"] == {"Normal": "normal/images", "COVID": "CoViD/images"}


# --- wrong or incomplete sources ----------------------------------------------------------------


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(sources.SourceError, match="does-not-exist.*does not exist"):
        sources.read_image_tree(tmp_path / "does-not-exist", BINARY)


def test_unrecognised_layout_names_path_and_expected_layout(tmp_path):
    write_png(tmp_path / "scans" / "a.png", random_pixels(1))
    with pytest.raises(sources.SourceError) as error:
        sources.read_image_tree(tmp_path, BINARY)
    message = str(error.value)
    assert str(tmp_path) in message and "unrecognised layout" in message
    assert "COVID/images/COVID-1.png" in message  # the expected layout, by example


def test_file_that_is_not_a_zip_is_a_clear_error(tmp_path):
    path = tmp_path / "download.zip"
    path.write_text("<html>login required</html>")
    with pytest.raises(sources.SourceError, match="not a zip"):
        sources.read_image_tree(path, BINARY)


def test_missing_class_folder_is_an_error_for_the_kaggle_configs(tmp_path):
    root = make_tree(tmp_path / "data", {"Normal": 5})
    with pytest.raises(sources.SourceError, match="COVID: no class folder"):
        sources.read_image_tree(root, BINARY)


def test_empty_class_folder_is_an_error_for_the_kaggle_configs(tmp_path):
    root = make_tree(tmp_path / "data", {"Normal": 5})
    (root / "COVID" / "images").mkdir(parents=True)
    with pytest.raises(sources.SourceError, match="COVID: folder 'COVID/images' is empty"):
        sources.read_image_tree(root, BINARY)


def test_class_folder_with_only_bad_files_is_an_error_for_the_kaggle_configs(tmp_path):
    root = make_tree(tmp_path / "data", {"Normal": 5})
    (root / "COVID" / "images").mkdir(parents=True)
    (root / "COVID" / "images" / "broken.png").write_bytes(b"")
    with pytest.raises(sources.SourceError, match="has no readable images"):
        sources.read_image_tree(root, BINARY)


def test_missing_and_empty_classes_are_reported_for_a_plain_folder(tmp_path):
    root = make_tree(tmp_path / "data", {"COVID": 5})
    prepared = sources.read_image_tree(root, BINARY, require_all_classes=False)
    assert prepared.report["missing_classes"] == [{"class": "Normal", "reason": "no class folder"}]
    assert prepared.report["examples"] == 5
    (root / "Normal").mkdir()
    prepared = sources.read_image_tree(root, BINARY, require_all_classes=False)
    assert "has no" in prepared.report["missing_classes"][0]["reason"]


# --- duplicates and splits -------------------------------------------------------------------


def test_splits_are_60_20_20_per_class(tmp_path):
    root = make_tree(tmp_path / "data", {"Normal": 50, "COVID": 23})
    prepared = sources.read_image_tree(root, BINARY)
    assert prepared.report["split_counts"] == {
        "train": {"Normal": 30, "COVID": 14},
        "validation": {"Normal": 10, "COVID": 5},
        "test": {"Normal": 10, "COVID": 4},
    }


def test_study_sized_class_gets_the_study_counts():
    items = [sources.Item(f"COVID/{i}.png", 1, str(i), png=bytes) for i in range(3616)]
    counts = {name: len(split) for name, split in sources.split_items(items).items()}
    assert counts == {"train": 2170, "validation": 723, "test": 723}


def test_identical_pixels_never_span_two_splits(tmp_path):
    root = make_tree(tmp_path / "data", {"Normal": 30, "COVID": 30})
    covid = root / "COVID" / "images"
    for i in range(10):  # copies under new names: same pixels, different file
        shutil.copy(covid / f"COVID-{i}.png", covid / f"copy-{i}.png")
    covid_0 = np.asarray(Image.open(covid / "COVID-0.png"))
    write_png(covid / "rgb-copy.png", np.stack([covid_0] * 3, -1))  # same pixels, RGB-encoded
    shutil.copy(root / "Normal" / "images" / "Normal-0.png", covid / "normal-in-covid.png")

    prepared = sources.read_image_tree(root, BINARY)

    hashes = {name: {i.pixel_hash for i in items} for name, items in prepared.splits.items()}
    assert not hashes["train"] & hashes["validation"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["validation"] & hashes["test"]
    assert len(prepared.report["duplicate_groups"]) == 10
    assert ["COVID/COVID-3.png", "COVID/copy-3.png"] in prepared.report["duplicate_groups"]
    assert ["COVID/COVID-0.png", "COVID/copy-0.png", "COVID/rgb-copy.png"] in prepared.report["duplicate_groups"]
    # The same pixels under two classes is a label conflict: both copies are skipped, with the reason.
    conflicts = {e["file"] for e in prepared.report["skipped"] if "different classes" in e["reason"]}
    assert conflicts == {"Normal/Normal-0.png", "COVID/normal-in-covid.png"}


def test_splits_are_stable_across_builds_and_file_order(tmp_path):
    root = make_tree(tmp_path / "data", {"Normal": 40, "COVID": 40})
    first = split_of(sources.read_image_tree(root, BINARY))
    assert split_of(sources.read_image_tree(root, BINARY)) == first
    # Adding files moves only files near the cut points.
    make_tree(tmp_path / "more", {"Normal": 4, "COVID": 4}, seed=7)
    for path in (tmp_path / "more").rglob("*.png"):
        shutil.copy(path, root / path.relative_to(tmp_path / "more").parent / f"extra-{path.name}")
    grown = split_of(sources.read_image_tree(root, BINARY))
    same = sum(grown[key] == split for key, split in first.items())
    assert same >= 0.85 * len(first)
    assert split_of(sources.read_image_tree(root, BINARY, seed=1)) != first


def test_balanced_keys_downsample_the_larger_class_stably():
    keys = [f"Normal/{i}" for i in range(30)] + [f"COVID/{i}" for i in range(12)]
    labels_ = [0] * 30 + [1] * 12
    kept = sources.balanced_keys(keys, labels_)
    assert sum(k.startswith("Normal/") for k in kept) == 12
    assert sum(k.startswith("COVID/") for k in kept) == 12
    assert sources.balanced_keys(list(reversed(keys)), list(reversed(labels_))) == kept


def test_phantom_source_is_split_like_files():
    prepared = sources.phantom_source(10, BINARY, seed=0, size=SIZE)
    assert prepared.report["split_counts"]["train"] == {"Normal": 6, "COVID": 6}
    item = prepared.splits["test"][0]
    assert item.pixels().shape == (SIZE, SIZE)
    assert sources.pixel_hash(item.pixels()) == item.pixel_hash


def test_broken_links_and_tiny_images_are_skipped_and_listed(tmp_path):
    root = make_tree(tmp_path / "data", {"Normal": 5, "COVID": 5})
    covid = root / "COVID" / "images"
    (covid / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (covid / "loop-a.png").symlink_to(covid / "loop-b.png")
    (covid / "loop-b.png").symlink_to(covid / "loop-a.png")
    write_png(covid / "one-pixel.png", np.full((1, 1), 128, np.uint8))
    write_png(covid / "narrow.png", np.full((SIZE, 31), 128, np.uint8))

    prepared = sources.read_image_tree(root, BINARY)

    reasons = {entry["file"]: entry["reason"] for entry in prepared.report["skipped"]}
    assert "unreadable file" in reasons["COVID/images/dangling.png"]
    assert "unreadable file" in reasons["COVID/images/loop-a.png"] and "unreadable file" in reasons["COVID/images/loop-b.png"]
    assert reasons["COVID/images/one-pixel.png"] == "image too small: 1x1 px (the minimum is 32 px a side)"
    assert "31x32 px" in reasons["COVID/images/narrow.png"]
    assert len(split_of(prepared)) == 10  # the good images all stay


def test_a_folder_with_broken_links_gets_a_stable_id(tmp_path):
    from covid_keras import data

    root = make_tree(tmp_path / "data", {"Normal": 2, "COVID": 2})
    (root / "COVID" / "images" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    assert data._folder_id(str(root)) == data._folder_id(str(root))

"""covid_keras.data: building through TFDS (real radiographs, zip, folders, bad input) and the pipelines."""

import json
import os
import pathlib
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from covid_keras import backbones, data, sources

SIZE = 32


def write_tree(root: pathlib.Path, per_class: dict[str, int], seed: int = 0) -> pathlib.Path:
    for c, (class_name, count) in enumerate(per_class.items()):
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, c])
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return root


def examples(ds: tf.data.Dataset) -> list[dict]:
    return list(ds.as_numpy_iterator())


def file_names(ds: tf.data.Dataset) -> list[str]:
    return sorted(e["file_name"].decode() for e in examples(ds))


# --- the real radiographs (../shared/data/radiography, newer Kaggle layout) -------------------


@pytest.fixture(scope="session")
def radiography_spec(radiography_dir, tmp_path_factory) -> data.DataSpec:
    """`radiography` built once per session from the real folder (about 10-20 s)."""
    spec = data.DataSpec.parse("radiography", str(radiography_dir), str(tmp_path_factory.mktemp("tfds")))
    data.prepare(spec)
    return spec


def test_radiography_builds_from_the_real_folder(radiography_spec, radiography_dir):
    report = data.build_report(radiography_spec)
    counts = report["split_counts"]
    for split, fraction in (("train", 0.6), ("validation", 0.2), ("test", 0.2)):
        for class_name in ("Normal", "COVID"):
            total = sum(counts[s][class_name] for s in counts)
            assert counts[split][class_name] == round(fraction * total)
    assert report["skipped"] == []
    assert {"path": "Viral Pneumonia", "reason": "class not in this config", "files": 150} in report["ignored"]
    assert data.report_path(radiography_spec).endswith(os.path.join("radiography", "1.0.0", "build_report.json"))

    test = examples(data.load_split(radiography_spec, "test").take(3))
    for example in test:
        assert example["image"].dtype == np.uint8 and example["image"].shape == (299, 299, 1)
        # Stored as the source file: TF's decode gives exactly the pixels PIL reads from disk.
        name = example["file_name"].decode()
        class_name, file = name.split("/", 1)
        on_disk = np.asarray(Image.open(radiography_dir / class_name / "images" / file))
        assert np.array_equal(example["image"][..., 0], on_disk)


def test_radiography_splits_share_no_pixels(radiography_spec):
    hashes = {
        split: {sources.pixel_hash(e["image"]) for e in examples(data.load_split(radiography_spec, split))}
        for split in ("train", "validation", "test")
    }
    assert not hashes["train"] & hashes["validation"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["validation"] & hashes["test"]


def test_radiography_from_a_zip_gives_the_same_splits(radiography_spec, radiography_dir, tmp_path):
    download = tmp_path / "download"
    download.mkdir()
    with zipfile.ZipFile(download / "archive.zip", "w") as archive:  # stored, as Kaggle's PNGs are
        for path in sorted(radiography_dir.rglob("*.png")):
            archive.write(path, "COVID-19_Radiography_Dataset/" + path.relative_to(radiography_dir).as_posix())
    zipped = data.DataSpec.parse("radiography", str(download), str(tmp_path / "tfds"))
    for split in ("validation", "test"):
        assert file_names(data.load_split(zipped, split)) == file_names(data.load_split(radiography_spec, split))
    assert data.build_report(zipped)["root"] == "COVID-19_Radiography_Dataset"


def test_manual_dir_may_be_the_zip_itself(tmp_path):
    tree = write_tree(tmp_path / "tree", {"Normal": 5, "COVID": 5})
    with zipfile.ZipFile(tmp_path / "covid19-radiography-database.zip", "w") as archive:
        for path in sorted(tree.rglob("*.png")):
            archive.write(path, "COVID-19_Radiography_Dataset/" + path.relative_to(tree).as_posix())
    spec = data.DataSpec.parse("radiography", str(tmp_path / "covid19-radiography-database.zip"), str(tmp_path / "tfds"))
    data.prepare(spec)
    assert data.build_report(spec)["split_counts"]["test"] == {"Normal": 1, "COVID": 1}


def test_four_classes_need_every_class_folder(radiography_dir, tmp_path):
    spec = data.DataSpec.parse("radiography_4class", str(radiography_dir), str(tmp_path))
    with pytest.raises(sources.SourceError, match="Lung_Opacity: no class folder"):
        data.prepare(spec)


@pytest.mark.parametrize("make_dir", [lambda p: p / "missing", lambda p: p.mkdir() or p])
def test_missing_kaggle_download_says_where_to_put_it_and_how_to_use_phantom(tmp_path, make_dir):
    manual_dir = make_dir(tmp_path / "kaggle")
    spec = data.DataSpec.parse("radiography", str(manual_dir), str(tmp_path / "tfds"))
    with pytest.raises(sources.SourceError) as error:
        data.prepare(spec)
    message = str(error.value)
    assert str(manual_dir) in message
    assert "kaggle.com" in message and "--manual_dir" in message and "--config phantom" in message


def test_wrong_manual_dir_names_the_path_and_the_expected_layout(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"jpeg")
    spec = data.DataSpec.parse("radiography", str(tmp_path / "photos"), str(tmp_path / "tfds"))
    with pytest.raises(sources.SourceError, match=r"unrecognised layout in .*photos.*Expected <root>"):
        data.prepare(spec)


# --- folders, the report and balance -----------------------------------------------------------


def test_folder_build_reports_skipped_files_next_to_the_data(tmp_path):
    root = write_tree(tmp_path / "xrays", {"normal": 10, "covid": 5, "other": 2})
    (root / "covid" / "broken.png").write_bytes(b"")
    rgb = np.random.default_rng(5).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "covid" / "rgb.png")
    spec = data.DataSpec.parse("folder", str(root), str(tmp_path / "tfds"))

    data.prepare(spec)

    report_file = pathlib.Path(data.report_path(spec))
    assert report_file.parent.name == "1.0.0" and report_file.exists()
    report = json.loads(report_file.read_text())
    assert report["skipped"] == [{"file": "covid/broken.png", "reason": "empty file (0 bytes)"}]
    assert report["ignored_classes"] == ["other"]
    assert data.class_names(spec) == ["Normal", "COVID"]
    assert len(examples(data.load_split(spec, "train"))) == 6 + 4
    # Re-encoded as grey: TF reads back exactly the pixels sources decoded.
    stored = [e for e in examples(data.load_split(spec, data.ALL_SPLITS)) if e["file_name"] == b"COVID/rgb.png"]
    assert np.array_equal(stored[0]["image"][..., 0], np.asarray(Image.fromarray(rgb).convert("L")))


def test_two_folders_get_their_own_data_dirs(tmp_path):
    first = data.DataSpec.parse("folder", str(write_tree(tmp_path / "a", {"Normal": 5})), str(tmp_path))
    second = data.DataSpec.parse("folder", str(write_tree(tmp_path / "b", {"Normal": 5})), str(tmp_path))
    assert first.tfds_data_dir() != second.tfds_data_dir()
    assert first.tfds_data_dir().startswith(os.path.join(str(tmp_path), "folders"))


def test_balanced_split_downsamples_the_larger_class(tmp_path):
    spec = data.DataSpec.parse("folder", str(write_tree(tmp_path / "x", {"Normal": 20, "COVID": 10})), str(tmp_path))
    balanced = data.load_split(spec, "train", balanced=True)
    labels = [int(e["label"]) for e in examples(balanced)]
    assert labels.count(0) == labels.count(1) == 6
    assert int(balanced.cardinality()) == 12
    assert file_names(balanced) == file_names(data.load_split(spec, "train", balanced=True))


def test_spec_rejects_unknown_configs_and_missing_paths():
    with pytest.raises(ValueError, match="unknown data config 'kaggle'"):
        data.DataSpec("kaggle")
    with pytest.raises(ValueError, match="needs path"):
        data.DataSpec("folder")


# --- pipelines -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_spec(tmp_path_factory) -> data.DataSpec:
    root = tmp_path_factory.mktemp("real")
    write_tree(root, {"Normal": 10, "COVID": 10})
    return data.DataSpec.parse("folder", str(root), str(tmp_path_factory.mktemp("tfds")))


def test_gan_dataset_is_grey_in_minus_one_to_one(folder_spec):
    ds = data.gan_dataset(data.load_split(folder_spec, "train"), image_size=16, batch_size=4)
    batches = list(ds)
    assert len(batches) == 3  # 12 images, drop_remainder
    images, labels = batches[0]
    assert images.shape == (4, 16, 16, 1) and images.dtype == tf.float32
    assert labels.shape == (4,) and labels.dtype == tf.int32
    values = np.concatenate([b[0].numpy().ravel() for b in batches])
    assert values.min() >= -1.0 and values.max() <= 1.0 and values.min() < -0.5 < 0.5 < values.max()


def test_gan_dataset_resizes_with_antialiasing():
    stripes = np.tile(np.array([0, 255], np.uint8), (64, 32))[..., None]  # 1-pixel stripes
    ds = tf.data.Dataset.from_tensors({"image": stripes, "label": np.int64(1), "file_name": "x"})
    images, _ = next(iter(data.gan_dataset(ds, image_size=16, batch_size=1, shuffle_seed=None)))
    interior = images.numpy()[:, :, 1:-1]  # the border columns see one side of the edge only
    assert np.allclose(interior, 0.0, atol=0.02)  # averaged to mid-grey, not aliased to 0 or 255


def test_classifier_dataset_applies_each_backbones_preprocess(folder_spec):
    split = data.load_split(folder_spec, "validation")
    grey = data.gan_dataset(split, 32, 4, shuffle_seed=None, drop_remainder=False)
    rgb_0_255 = np.repeat((next(iter(grey))[0].numpy() + 1.0) * 127.5, 3, axis=-1)
    outputs = {}
    for name in ("vgg16", "resnet50", "inception_v3"):
        images, labels = next(iter(data.classifier_dataset(split, name, 32, 4)))
        assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
        assert labels.dtype == tf.float32 and set(labels.numpy()) <= {0.0, 1.0}
        expected = backbones.get_backbone_spec(name).preprocess(rgb_0_255.copy())
        np.testing.assert_allclose(images.numpy(), np.asarray(expected), atol=1e-3)
        outputs[name] = images.numpy()
    assert outputs["inception_v3"].min() >= -1.0 and outputs["inception_v3"].max() <= 1.0
    assert not np.allclose(outputs["vgg16"], outputs["inception_v3"])


def test_generated_images_join_the_train_split_only(folder_spec, tmp_path):
    generated = write_tree(tmp_path / "generated", {"Normal": 3, "COVID": 4}, seed=9)
    train = data.load_split(folder_spec, "train")
    augmented = data.with_generated(train, str(generated), data_dir=folder_spec.data_dir)

    names = file_names(augmented)
    synthetic = [n for n in names if n.startswith(data.GENERATED_PREFIX)]
    assert len(synthetic) == 7 and len(names) == 12 + 7
    assert "generated/COVID/000.png" in synthetic
    for split in ("validation", "test"):
        assert not any(n.startswith(data.GENERATED_PREFIX) for n in file_names(data.load_split(folder_spec, split)))
    images, labels = next(iter(data.classifier_dataset(augmented, "vgg16", 32, 19)))
    assert images.shape[0] == 19 and float(tf.reduce_sum(labels)) == 6 + 4


def test_a_generated_folder_of_one_or_two_images_per_class_joins_whole(folder_spec, tmp_path):
    # Too few images for a 60/20/20 split: TFDS cannot write the empty splits, so they are left out.
    generated = write_tree(tmp_path / "generated", {"Normal": 1, "COVID": 2}, seed=4)
    train = data.load_split(folder_spec, "train")
    augmented = data.with_generated(train, str(generated), data_dir=folder_spec.data_dir)

    synthetic = [n for n in file_names(augmented) if n.startswith(data.GENERATED_PREFIX)]
    assert synthetic == ["generated/COVID/000.png", "generated/COVID/001.png", "generated/Normal/000.png"]


DUMMY_DATA = pathlib.Path(__file__).resolve().parents[1] / "tfds_builders" / "covid_xray" / "dummy_data"


def test_a_wrong_manual_path_is_not_ignored_once_the_data_is_built(tmp_path, caplog):
    built = data.DataSpec.parse("radiography", str(DUMMY_DATA), str(tmp_path / "tfds"))
    data.prepare(built)
    missing = data.DataSpec.parse("radiography", str(tmp_path / "typo"), str(tmp_path / "tfds"))
    with pytest.raises(sources.SourceError, match=f"{tmp_path / 'typo'} does not exist"):
        data.load_split(missing, "train")
    other = tmp_path / "other_copy"
    other.mkdir()
    with caplog.at_level("WARNING"):
        data.load_split(data.DataSpec.parse("radiography", str(other), str(tmp_path / "tfds")), "train")
    assert f"not {other}: using that build" in caplog.text


def test_the_choices_commands_offer_are_the_implementations_own():
    """covid_keras.choices lists names for --help without TensorFlow; each is what its module implements."""
    from covid_keras import backbones, choices, classifier, distribute, runtime
    from covid_keras.evaluation import embeddings
    from tfds_builders.covid_xray import covid_xray_dataset_builder as covid_xray

    assert choices.DATA_CONFIGS == tuple(c.name for c in covid_xray.Builder.BUILDER_CONFIGS)
    assert choices.BACKBONE_NAMES == tuple(backbones.BACKBONES)
    assert choices.BACKBONE_MIN_SIZES == {name: spec.min_size for name, spec in backbones.BACKBONES.items()}
    assert tuple(classifier.OPTIMIZERS) == choices.CLASSIFIER_OPTIMIZERS
    assert embeddings.EXTRACTORS is choices.KID_EXTRACTORS
    assert runtime.PRECISIONS is choices.PRECISIONS and distribute.STRATEGIES is choices.STRATEGIES

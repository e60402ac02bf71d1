"""The `covid_xray` TFDS splits as tf.data pipelines for the GAN and the classifiers.

    spec = DataSpec("phantom")                      # built-in synthetic images, no download
    spec = DataSpec("radiography", path=KAGGLE)     # the Kaggle zip or extracted folder
    spec = DataSpec("folder", path=ROOT)            # ROOT/<class>/[images/]*.png
    train = load_split(spec, "train", balanced=True)
    gan_ds = gan_dataset(train, image_size=150, batch_size=8)
    clf_ds = classifier_dataset(with_generated(train, "generated/"), "vgg16", 150, 8, shuffle=True)

Examples are `{"image": uint8 [H, W, 1], "label": int64, "file_name": string}` (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from covid_keras import backbones, sources
from covid_keras.choices import ALL_SPLITS, DATA_CONFIGS
from tfds_builders.covid_xray import covid_xray_dataset_builder as covid_xray

CONFIGS = DATA_CONFIGS  # the builder's configs, by name (tests hold them equal)
MANUAL_CONFIGS = ("radiography", "radiography_4class", "folder")
GENERATED_PREFIX = "generated/"
# Shuffle buffers hold whole (small, cached uint8) datasets up to this many images.
MAX_SHUFFLE_BUFFER = 10_000

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which data: a `covid_xray` config, its manual dir or folder root (`path`), a TFDS data dir.

    path: the Kaggle download (zip or folder) for the radiography configs; the tree's root for
    `folder`; unused for the phantom configs. data_dir: where TFDS keeps prepared data (default:
    TFDS's own, `$TFDS_DATA_DIR` or ~/tensorflow_datasets).
    """

    config: str = "phantom"
    path: str | None = None
    data_dir: str | None = None

    def __post_init__(self):
        if self.config not in CONFIGS:
            raise ValueError(f"unknown data config {self.config!r}; choose one of {', '.join(CONFIGS)}")
        if self.config == "folder" and not self.path:
            raise ValueError("the 'folder' data config needs path=ROOT of a ROOT/<class>/[images/]*.png tree")
        if self.path is not None and self.config not in MANUAL_CONFIGS:
            raise ValueError(f"data config {self.config!r} takes no path (got {self.path!r})")

    @classmethod
    def parse(cls, kind: str, path: str | None = None, data_dir: str | None = None) -> "DataSpec":
        """From script arguments: `kind` is a config name; paths are made absolute."""
        absolute = lambda p: os.path.abspath(os.path.expanduser(p)) if p else None  # noqa: E731
        return cls(kind, absolute(path), absolute(data_dir))

    def tfds_data_dir(self) -> str:
        """The TFDS data dir; each `folder` source gets its own, so two folders never collide."""
        root = self.data_dir or tfds.core.constants.DATA_DIR
        if self.config != "folder":
            return root
        return os.path.join(root, "folders", _folder_id(self.path))


def _folder_id(path: str) -> str:
    """sha1 of the absolute path, plus a fingerprint of the listing so a changed folder is rebuilt."""
    path = os.path.abspath(os.path.expanduser(path))
    listing = hashlib.sha1()
    if os.path.isdir(path):
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(filenames):
                stat = _stat_or_link(os.path.join(dirpath, name))
                listing.update(f"{os.path.relpath(os.path.join(dirpath, name), path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    elif os.path.exists(path):
        stat = os.stat(path)
        listing.update(f"{stat.st_size}|{stat.st_mtime_ns}".encode())
    return f"{hashlib.sha1(path.encode()).hexdigest()[:16]}-{listing.hexdigest()[:8]}"


def _stat_or_link(path: str) -> os.stat_result:
    """The file's stat, or the link's own for a dangling link or a loop (the build skips and reports it)."""
    try:
        return os.stat(path)
    except OSError:
        return os.lstat(path)


def builder(spec: DataSpec) -> covid_xray.Builder:
    """The TFDS builder for `spec`, not necessarily prepared."""
    return covid_xray.Builder(config=spec.config, data_dir=spec.tfds_data_dir())


def prepare(spec: DataSpec) -> covid_xray.Builder:
    """Build the dataset if it is not built yet; return its builder. Logs skipped files."""
    dataset = builder(spec)
    prepared = _is_prepared(dataset)
    if prepared and spec.path is not None and not os.path.exists(spec.path):
        # A build exists, so the path would not be read: a mistyped one must not pass silently.
        # (Without a build, the builder's own message says where to get the data.)
        raise sources.SourceError(f"{spec.path} does not exist; expected a folder or a .zip laid out as "
                                  f"{sources.EXPECTED_LAYOUT}")
    if prepared and spec.path is not None and spec.config != "folder":
        built_from = build_report(spec).get("source")
        if built_from and os.path.abspath(built_from) != os.path.abspath(spec.path) \
                and not os.path.abspath(built_from).startswith(os.path.abspath(spec.path) + os.sep):
            _log.warning("%s was prepared from %s, not %s: using that build (pass another --data-dir to build "
                         "from %s)", spec.config, built_from, spec.path, spec.path)
    if not prepared:
        dataset.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=spec.path))
        skipped = build_report(spec)["skipped"]
        if skipped:
            _log.warning("%d files skipped while building %s; see %s", len(skipped), spec.config, report_path(spec))
    return dataset


def _is_prepared(dataset: covid_xray.Builder) -> bool:
    return os.path.exists(os.path.join(os.fspath(dataset.data_dir), "dataset_info.json"))


def report_path(spec: DataSpec) -> str:
    return os.path.join(os.fspath(builder(spec).data_dir), covid_xray.REPORT_FILE)


def build_report(spec: DataSpec) -> dict:
    """The build's report: split counts per class, skipped files (and why), ignored folders, duplicates."""
    with open(report_path(spec)) as f:
        return json.load(f)


def class_names(spec: DataSpec) -> list[str]:
    return list(builder(spec).info.features["label"].names)


def load_split(spec: DataSpec, split: str, balanced: bool = False) -> tf.data.Dataset:
    """One split (any TFDS split expression) of examples, in a fixed order.

    `ALL_SPLITS` means every split the dataset has (a folder of a few images per class may
    have no validation or test split).

    balanced: the study's class balance, each class downsampled to the smallest class's count in
    this split; which examples stay is a seeded hash of the file name, so it is stable.
    """
    dataset = prepare(spec)
    if split == ALL_SPLITS:
        split = "+".join(name for name in ALL_SPLITS.split("+") if name in dataset.info.splits)
    ds = dataset.as_dataset(split=split, shuffle_files=False)
    if not balanced:
        return ds
    names_and_labels = dataset.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    ).map(lambda e: (e["file_name"], e["label"]))
    keys, labels = [], []
    for name, label in names_and_labels.as_numpy_iterator():
        keys.append(name.decode())
        labels.append(int(label))
    keep = sorted(sources.balanced_keys(keys, labels))
    return keep_files(ds, keep)


def keep_files(ds: tf.data.Dataset, keep) -> tf.data.Dataset:
    """The examples of `ds` whose file name is in `keep`, in `ds`'s order (its cardinality known)."""
    keep = sorted(set(keep))
    if not keep:
        return ds.take(0)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keep, tf.string), tf.ones(len(keep), tf.int32)),
        default_value=0,
    )
    ds = ds.filter(lambda e: table.lookup(e["file_name"]) > 0)
    return ds.apply(tf.data.experimental.assert_cardinality(len(keep)))


def file_names_and_labels(ds: tf.data.Dataset) -> list[tuple[str, int]]:
    """(file name, label) of every example of `ds`, in order, without decoding the images."""
    pairs = ds.map(lambda e: (e["file_name"], e["label"]))
    return [(name.decode(), int(label)) for name, label in pairs.as_numpy_iterator()]


def resized_uint8(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Antialiased resize to [S, S, C], back to uint8 so a cache holds 1 byte per pixel."""
    resized = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def mirrored(examples: tf.data.Dataset) -> tf.data.Dataset:
    """The same examples with every image flipped left to right (labels and file names kept)."""
    return examples.map(lambda e: {**e, "image": tf.image.flip_left_right(e["image"])})


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` split across the workers of a multi-worker strategy by element, not by file.

    Every worker reads the whole input and keeps its own share of each global batch, so the
    workers' shares together are exactly the batch one process would see (a split by file could
    not be: the TFDS splits have one file). No effect without a distribution strategy.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _shuffle_buffer(ds: tf.data.Dataset) -> int:
    count = int(ds.cardinality())
    return MAX_SHUFFLE_BUFFER if count < 1 else min(count, MAX_SHUFFLE_BUFFER)


def gan_dataset(
    ds: tf.data.Dataset,
    image_size: int,
    batch_size: int,
    shuffle_seed: int | None = 0,
    cache: bool = True,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """(images float32 [B, S, S, 1] in [-1, 1], labels int32 [B]), shuffled each epoch.

    Scaling is the fixed x / 127.5 - 1 (not the study's per-image min-max, which erases exposure).
    shuffle_seed=None keeps the input order. `batch_size` is the global batch: under a
    multi-worker strategy each worker takes its share of every batch (`shard_by_data`).
    """
    images = ds.map(
        lambda e: (resized_uint8(e["image"], image_size), tf.cast(e["label"], tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if cache:
        images = images.cache()
    if shuffle_seed is not None:
        images = images.shuffle(_shuffle_buffer(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    images = images.batch(batch_size, drop_remainder=drop_remainder)
    images = images.map(
        lambda x, y: (tf.cast(x, tf.float32) / 127.5 - 1.0, y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return shard_by_data(images.prefetch(tf.data.AUTOTUNE))


def classifier_dataset(
    ds: tf.data.Dataset,
    backbone: str,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool = True,
) -> tf.data.Dataset:
    """(images float32 [B, S, S, 3] after the backbone's preprocess, labels float32 [B]).

    Grey is repeated to RGB in [0, 255] and passed through `BackboneSpec.preprocess` (VGG16 and
    ResNet50: BGR mean subtraction; InceptionV3: [-1, 1]), the step the study skipped.
    """
    preprocess = backbones.get_backbone_spec(backbone).preprocess
    images = ds.map(
        lambda e: (resized_uint8(e["image"], image_size), tf.cast(e["label"], tf.float32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if cache:
        images = images.cache()
    if shuffle:
        images = images.shuffle(_shuffle_buffer(images), seed=seed, reshuffle_each_iteration=True)
    images = images.batch(batch_size)
    images = images.map(
        lambda x, y: (preprocess(tf.image.grayscale_to_rgb(tf.cast(x, tf.float32))), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return images.prefetch(tf.data.AUTOTUNE)


def generated_spec(generated_dir: str, data_dir: str | None = None) -> DataSpec:
    return DataSpec.parse("folder", generated_dir, data_dir)


def with_generated(train_ds: tf.data.Dataset, generated_dir: str, data_dir: str | None = None) -> tf.data.Dataset:
    """`train_ds` followed by every image of `generated_dir` (DIR/<class>/*.png, all its splits).

    For the TRAIN split only: validation and test stay real. Generated file names start with
    "generated/" so they can be told apart downstream.
    """
    generated = load_split(generated_spec(generated_dir, data_dir), ALL_SPLITS)
    generated = generated.map(
        lambda e: {**e, "file_name": tf.strings.join([GENERATED_PREFIX, e["file_name"]])}
    )
    return train_ds.concatenate(generated)


def preview_images(ds: tf.data.Dataset, per_class: int, num_classes: int, image_size: int = 128) -> np.ndarray:
    """The first `per_class` images of each class, resized: uint8 [num_classes, per_class, S, S, 1]."""
    resized = ds.map(lambda e: (resized_uint8(e["image"], image_size), e["label"]))
    rows: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    for image, label in resized.as_numpy_iterator():
        if len(rows[label]) < per_class:
            rows[label].append(image)
        if all(len(r) == per_class for r in rows):
            break
    short = [i for i, r in enumerate(rows) if len(r) < per_class]
    if short:
        raise ValueError(f"labels {short} have fewer than {per_class} examples in this split")
    return np.stack([np.stack(r) for r in rows])

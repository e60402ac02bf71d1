"""`covid_xray`: chest X-rays for the COVID GAN-augmentation study, as a TFDS dataset.

Thin on purpose: reading, decoding, layout detection, de-duplication and splits live in
`covid_keras.sources` (testable without TFDS); the synthetic images in `covid_keras.phantom`.

    tfds build tfds_builders/covid_xray --config phantom
    tfds build tfds_builders/covid_xray --config radiography --manual_dir PATH_TO_KAGGLE_DOWNLOAD
    tfds build tfds_builders/covid_xray --config folder --manual_dir ROOT   # ROOT/<class>/[images/]*.png
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import keras
import numpy as np
import tensorflow_datasets as tfds

from covid_keras import labels, sources

KAGGLE_URL = "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database"
REPORT_FILE = "build_report.json"
PHANTOM_SEED = 0
SPLIT_SEED = 0

_log = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class CovidXrayConfig(tfds.core.BuilderConfig):
    """source: "kaggle" (manual download), "phantom" (synthetic) or "folder" (any class tree)."""

    source: str = "kaggle"
    classes: tuple[str, ...] = labels.BINARY_CLASSES
    phantom_per_class: int = 0
    phantom_size: int = 299


def _missing_download_message(given: os.PathLike | None) -> str:
    where = f"The manual dir {given} does not exist or is empty. " if given else ""
    return (
        f"{where}The `radiography` configs need the Kaggle COVID-19 Radiography Database, which TFDS "
        f"cannot download for you: download the zip from {KAGGLE_URL} (no need to extract it) and "
        "pass the folder that holds it (or the extracted folder): "
        "`tfds build tfds_builders/covid_xray --config radiography --manual_dir FOLDER` or "
        "`python scripts/prepare_data.py --data radiography --manual-dir FOLDER`. "
        "To use the built-in SYNTHETIC images instead (no download): "
        "`tfds build tfds_builders/covid_xray --config phantom` or "
        "`python scripts/prepare_data.py --data phantom`."
    )


class Builder(tfds.core.GeneratorBasedBuilder):
    """Chest X-rays (Kaggle COVID-19 Radiography Database, an image folder, or synthetic phantoms)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: 60/20/20 per-class splits, de-duplicated by pixels."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    radiography / radiography_4class: download the COVID-19 Radiography Database from
    {KAGGLE_URL}
    and pass the folder that holds the zip (as downloaded) or the extracted folder as
    --manual_dir. Both layouts are read: <class>/images/*.png (newer) and <class>/*.png (older),
    with or without the COVID-19_Radiography_Dataset/ top folder.
    folder: --manual_dir is the root of any ROOT/<class>/[images/]*.{{png,jpg,jpeg}} tree with
    class folders named like {', '.join(labels.BINARY_CLASSES)} (any case).
    phantom / phantom_small need nothing: they are synthetic images generated on the fly.
    """
    BUILDER_CONFIGS = [
        CovidXrayConfig(
            name="radiography",
            description="Kaggle COVID-19 Radiography Database, classes Normal and COVID (manual download).",
        ),
        CovidXrayConfig(
            name="radiography_4class",
            description="Kaggle COVID-19 Radiography Database, all four classes (manual download).",
            classes=labels.ALL_CLASSES,
        ),
        CovidXrayConfig(
            name="phantom",
            description=(
                "SYNTHETIC chest-X-ray-like phantoms drawn with numpy/PIL (not medical data): "
                "1000 per class, 299x299, deterministic."
            ),
            source="phantom",
            phantom_per_class=1000,
        ),
        CovidXrayConfig(
            name="phantom_small",
            description="SYNTHETIC phantoms (not medical data), 100 per class, 299x299: tests and quick runs.",
            source="phantom",
            phantom_per_class=100,
        ),
        CovidXrayConfig(
            name="folder",
            description="Any ROOT/<class>/[images/]*.{png,jpg,jpeg} tree given as --manual_dir (Normal, COVID).",
            source="folder",
        ),
    ]
    DEFAULT_CONFIG_NAME = "radiography"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                "Frontal chest X-rays labelled by class, stored grey at their source size. The "
                "phantom configs are SYNTHETIC images, not radiographs. Splits are 60/20/20 per "
                "class, stable (a seeded hash of the file name) and de-duplicated by pixels. "
                f"Files that could not be used are listed in {REPORT_FILE} next to the data."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=list(self.builder_config.classes)),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=KAGGLE_URL,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        prepared = self._prepare_source(dl_manager)
        self._write_report(prepared)
        # A folder of a few images per class (a small generated set) leaves some split empty, and
        # TFDS cannot write an empty split: such a split is left out of the dataset.
        return {name: self._generate_examples(items) for name, items in prepared.splits.items() if items}

    def _generate_examples(self, items):
        yield from sources.iter_examples(items)

    def _prepare_source(self, dl_manager) -> sources.PreparedSource:
        config = self.builder_config
        progress = _Progress(f"reading {config.name}")
        if config.source == "phantom":
            return sources.phantom_source(
                config.phantom_per_class, config.classes, seed=PHANTOM_SEED,
                size=config.phantom_size, progress=progress,
            )
        return sources.read_image_tree(
            self._manual_source(dl_manager),
            config.classes,
            require_all_classes=config.source == "kaggle",
            seed=SPLIT_SEED,
            progress=progress,
        )

    def _manual_source(self, dl_manager) -> os.PathLike:
        try:
            return dl_manager.manual_dir
        except (AssertionError, NotADirectoryError):
            # TFDS accepts only a non-empty folder; we also take the downloaded .zip itself. The
            # private attribute is the only place TFDS keeps the path it was given.
            given = getattr(dl_manager, "_manual_dir", None)
            if given is not None and os.path.isfile(given):
                return given
            if self.builder_config.source == "folder":
                raise sources.SourceError(
                    f"the folder config reads the tree given as --manual_dir; {given} does not exist "
                    f"or is empty. Expected {sources.EXPECTED_LAYOUT}"
                ) from None
            raise sources.SourceError(_missing_download_message(given)) from None

    def _write_report(self, prepared: sources.PreparedSource) -> None:
        path = os.path.join(os.fspath(self.data_dir), REPORT_FILE)
        with open(path, "w") as f:
            json.dump(prepared.report, f, indent=2)
        counts = prepared.report["split_counts"]
        log = _log.warning if prepared.skipped_count else _log.info
        log(
            "covid_xray/%s: %d examples %s; %d files skipped (listed in %s in the dataset's folder)",
            self.builder_config.name, prepared.report["examples"], counts, prepared.skipped_count, REPORT_FILE,
        )


class _Progress:
    """progress(done, total) callback drawing a keras Progbar, created on the first call."""

    def __init__(self, title: str):
        self.title = title
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            print(self.title)
            self.bar = keras.utils.Progbar(total, unit_name="image")
        if done == total or done % 50 == 0:
            self.bar.update(done)

"""A saved classifier judged on any labelled images: metrics with 95 % intervals, calibration at
its operating rule, a Grad-CAM shortcut report and a breakdown by source.

A folder may hold one class only (a hospital's COVID-positive series, a not-COVID set): then the
report gives that class's recall under the operating rule and the P(COVID) distribution, since an
accuracy or AUC over one class would mean nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

from covid_keras import data, evaluation, files, plots
from covid_keras.backbones import get_backbone_spec
from covid_keras.classifier.gradcam import GradCam, upsampled
from covid_keras.classifier.operating_rule import OperatingRule
from covid_keras.evaluation import shortcuts
from covid_keras.evaluation.operating_point import rates_with_intervals, wilson_interval
from covid_keras.labels import BINARY_CLASSES

THUMBNAIL_SIZE = 128  # the grey images kept for the heatmap grids
GRID_PER_CLASS = 16
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclasses.dataclass
class ScoredImages:
    """Every image's file name, label, raw P(COVID) and (when explained) Grad-CAM map and thumbnail."""

    file_names: list[str]
    labels: np.ndarray  # int64 [N], 1 is COVID
    raw: np.ndarray  # float64 [N], the model's P(COVID) before calibration
    heatmaps: np.ndarray | None = None  # float32 [N, h, w], the label's class, 0..1
    thumbnails: np.ndarray | None = None  # uint8 [N, t, t]

    def subset(self, keep: np.ndarray) -> "ScoredImages":
        return ScoredImages([name for name, k in zip(self.file_names, keep) if k], self.labels[keep], self.raw[keep],
                            None if self.heatmaps is None else self.heatmaps[keep],
                            None if self.thumbnails is None else self.thumbnails[keep])


def score_images(model: keras.Model, metadata: Mapping, examples: tf.data.Dataset, explain: bool = False,
                 batch_size: int = 32, verbose: int = 1) -> ScoredImages:
    """Run a loaded classifier over TFDS-style examples, with Grad-CAM maps when `explain`."""
    spec = get_backbone_spec(metadata["backbone"])
    size = int(metadata["image_size"])
    rule = OperatingRule.of_metadata(metadata)
    gradcam = GradCam.of(model) if explain else None
    thumb = min(size, THUMBNAIL_SIZE)
    batches = examples.map(
        lambda e: (data.resized_uint8(e["image"], size), e["label"], e["file_name"]), num_parallel_calls=tf.data.AUTOTUNE
    ).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    progress = keras.utils.Progbar(None, unit_name="batch", verbose=verbose)
    names, labels, raw, maps, thumbnails = [], [], [], [], []
    for grey, batch_labels, batch_names in batches:
        images = spec.preprocess(tf.image.grayscale_to_rgb(tf.cast(grey, tf.float32)))
        if gradcam is not None:
            # Temperature 1 and the raw threshold: the same label as the rule, the raw P(COVID) out.
            probability, heatmaps = gradcam(images, threshold=rule.raw_threshold)
            maps.append(np.asarray(heatmaps, dtype=np.float32))
            thumbnails.append(np.asarray(data.resized_uint8(grey, thumb))[..., 0])
        else:
            probability = model.predict_on_batch(images)
        raw.append(np.asarray(probability, dtype=np.float64).reshape(-1))
        labels.append(np.asarray(batch_labels).reshape(-1))
        names += [name.decode() for name in np.asarray(batch_names)]
        progress.add(1)
    if not names:
        raise ValueError("no images to evaluate")
    return ScoredImages(names, np.concatenate(labels).astype(np.int64), np.concatenate(raw),
                        np.concatenate(maps) if maps else None, np.concatenate(thumbnails) if thumbnails else None)


def assess(scored: ScoredImages, rule: OperatingRule) -> dict:
    """Metrics of scored images: both classes -> accuracy/AUC/sensitivity/specificity with 95 %
    intervals, at 0.5 on raw P(COVID) and under the operating rule, and calibration; one class ->
    its recall under the rule and the P(COVID) distribution."""
    present = sorted(set(scored.labels.tolist()))
    calibrated = rule.probabilities(scored.raw)
    distribution = {f"q{int(q * 100):02d}": float(np.quantile(calibrated, q)) for q in QUANTILES}
    if len(present) == 1:
        label = present[0]
        called = int(np.sum(rule.labels(scored.raw) == label))
        return {
            "n": len(scored.labels),
            "one_class": BINARY_CLASSES[label],
            "recall": called / len(scored.labels),
            "recall_interval": wilson_interval(called, len(scored.labels)),
            "threshold": rule.threshold,
            "p_covid_calibrated": distribution,
        }
    at_half = evaluation.classification_metrics(scored.labels, scored.raw)
    return {
        **at_half,
        "accuracy_interval": rates_with_intervals(scored.labels, scored.raw, at_half["threshold"])["accuracy_interval"],
        "auc_interval": evaluation.roc_auc_interval(scored.labels, scored.raw),
        "with_operating_rule": rule.report(scored.labels, scored.raw),
        "p_covid_calibrated": distribution,
    }


def manifest_key(path: str) -> str:
    """`COVID/images/COVID-1.png` or `COVID/COVID-1.png` -> `COVID/COVID-1.png` (how the data names a file)."""
    parts = path.replace("\\", "/").strip("/").split("/")
    if len(parts) > 2 and parts[1].lower() == "images":
        parts = [parts[0]] + parts[2:]
    return "/".join(parts)


def read_sources(manifest: str | os.PathLike, column: str) -> dict[str, str]:
    """file (manifest_key) -> source, from a CSV with a `file` column and the given source column."""
    with open(manifest, newline="") as stream:
        reader = csv.DictReader(stream)
        missing = [name for name in ("file", column) if name not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{manifest} has no column {' and no '.join(repr(m) for m in missing)} "
                             f"(columns: {', '.join(reader.fieldnames or [])})")
        return {manifest_key(row["file"]): row[column] for row in reader}


def by_source(scored: ScoredImages, rule: OperatingRule, sources: Mapping[str, str]) -> dict:
    """`assess` per source; files the manifest does not list are grouped under "(not in manifest)"."""
    names = np.array([sources.get(manifest_key(name), "(not in manifest)") for name in scored.file_names])
    return {source: assess(scored.subset(names == source), rule) for source in sorted(set(names.tolist()))}


def write_explanations(scored: ScoredImages, rule: OperatingRule, out_dir: str | os.PathLike, title: str = "") -> dict:
    """Into out_dir: shortcuts.json (where the maps put their mass, per class), gradcam_<class>.png (the
    GRID_PER_CLASS most confident images of each class with their maps) and reliability.png."""
    if scored.heatmaps is None:
        raise ValueError("the images were scored without explain=True: no heatmaps to report")
    out_dir = pathlib.Path(out_dir)
    calibrated = rule.probabilities(scored.raw)
    # Shares are measured on the maps stretched over the image (what the overlays show), not on the
    # cut layer's coarse grid, where "the outer 10 %" would be whole cells.
    stretched = np.asarray(upsampled(scored.heatmaps, scored.thumbnails.shape[1]))
    report = shortcuts.shortcut_report(stretched, scored.labels, calibrated, rule.threshold)
    for class_name, indices in shortcuts.most_confident(scored.labels, calibrated, GRID_PER_CLASS).items():
        if len(indices) == 0:
            continue
        overlays = [plots.heatmap_overlay(scored.thumbnails[i], scored.heatmaps[i]) for i in indices]
        titles = [f"P(COVID) {calibrated[i]:.2f}" for i in indices]
        plots.save_heatmap_grid(overlays, titles, out_dir / f"gradcam_{class_name}.png",
                                title=f"{title} {class_name}: the {len(indices)} most confident".strip())
    if len(set(scored.labels.tolist())) == 2:
        calibration = rule.report(scored.labels, scored.raw)
        curves = {"raw": (calibration["reliability_before"], calibration["ece_before"]),
                  f"T = {rule.temperature:.2f}": (calibration["reliability_after"], calibration["ece_after"])}
        plots.save_reliability_diagram(curves, out_dir / "reliability.png", title=title or None)
    files.atomic_write_json(out_dir / "shortcuts.json", report, default=files.json_default)
    return report

"""The shortcut audit: does a saved classifier read the lungs or the source of the film?

Each region of `film.AUDIT_REGIONS` (the top corners, the border, burnt-in text and markers, the
lung fields, everything outside them) is hidden at test time, on the same images, and the change
in AUC and accuracy (at the classifier's operating rule) is measured against the unmasked images
with a paired bootstrap interval (`evaluation.metrics.paired_differences`). A model that reads the
lungs loses little when the corners or the border are hidden, keeps its AUC on the lungs alone
and falls towards chance when the lungs are hidden; a model that reads the source does the
opposite. Occlusion sensitivity (a grey patch slid over the film, the drop in P(the true class))
shows at a finer grid than Grad-CAM's where single images are read.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import data, evaluation, files, film, formatting, plots
from covid_keras.backbones import get_backbone_spec
from covid_keras.classifier.gradcam import GradCam
from covid_keras.classifier.operating_rule import OperatingRule
from covid_keras.evaluation import shortcuts
from covid_keras.labels import BINARY_CLASSES

OCCLUSION_PER_CLASS = 3  # images per class in the occlusion grid (each costs a forward pass per patch)
OCCLUSION_GRID = 12  # patch positions per side (Grad-CAM at block5_pool has 7); a patch covers 1/8 of the side


@dataclasses.dataclass
class AuditScores:
    """The same images scored in several views (a region hidden, or a simulated shift): raw
    P(COVID) per view, the share of each image's pixels hidden per region, and the grey images
    (for occlusion)."""

    labels: np.ndarray  # int64 [N]
    raw: dict[str, np.ndarray]  # view -> float64 [N]
    masked_share: dict[str, np.ndarray]  # region -> float64 [N]
    grey: np.ndarray  # uint8 [N, S, S, 1] at the model's input size


def score_views(model: keras.Model, metadata: Mapping, examples: tf.data.Dataset,
                regions: Sequence[str] = film.AUDIT_REGIONS, shifts: Sequence[str] = tuple(film.SHIFTS),
                batch_size: int = 32, verbose: int = 1) -> AuditScores:
    """Score every example with each region hidden (`film.hide`) and under each shift
    (`film.SHIFTS`), at the model's input size. "none" (in `regions`) is the film unchanged."""
    spec = get_backbone_spec(metadata["backbone"])
    size = int(metadata["image_size"])
    batches = examples.map(lambda e: (data.resized_uint8(e["image"], size), e["label"]),
                           num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    progress = keras.utils.Progbar(None, unit_name="batch", verbose=verbose)
    labels, greys = [], []
    raw = {view: [] for view in (*regions, *shifts)}
    shares = {region: [] for region in regions}
    for grey, batch_labels in batches:
        grey = tf.cast(grey, tf.float32)
        views = {}
        for region in regions:
            mask = film.region_mask(grey, region)
            views[region] = film.hide(grey, mask)
            shares[region].append(np.asarray(tf.reduce_mean(mask, axis=(1, 2, 3)), dtype=np.float64))
        for shift in shifts:
            views[shift] = tf.clip_by_value(film.SHIFTS[shift](grey), 0.0, 255.0)
        for view, images in views.items():
            probability = model.predict_on_batch(spec.preprocess(tf.image.grayscale_to_rgb(images)))
            raw[view].append(np.asarray(probability, dtype=np.float64).reshape(-1))
        labels.append(np.asarray(batch_labels).reshape(-1))
        greys.append(np.asarray(grey, dtype=np.uint8))
        progress.add(1)
    if not labels:
        raise ValueError("no images to audit")
    return AuditScores(np.concatenate(labels).astype(np.int64), {r: np.concatenate(v) for r, v in raw.items()},
                       {r: np.concatenate(v) for r, v in shares.items()}, np.concatenate(greys))


def audit_table(scores: AuditScores, rule: OperatingRule, resamples: int = 2000) -> dict:
    """Per view (`score_views`): AUC, accuracy, sensitivity and specificity under the operating rule
    with 95 % intervals for the AUC, paired differences against the unchanged images, the mean share
    of pixels hidden (regions); "regions" and "shifts" apart, then `verdict`."""
    if len(set(scores.labels.tolist())) != 2:
        raise ValueError("the shortcut audit needs images of both classes")
    base = scores.raw["none"]
    # The rule's threshold on the raw P(COVID): the same calls as the calibrated rule.
    threshold = rule.raw_threshold
    rows = {}
    for view, raw in scores.raw.items():
        at_rule = evaluation.classification_metrics(scores.labels, raw, threshold)
        row = {
            "auc": at_rule["auc"],
            "auc_interval": evaluation.roc_auc_interval(scores.labels, raw, resamples=resamples),
            "accuracy": at_rule["accuracy"],
            "sensitivity": at_rule["sensitivity"],
            "specificity": at_rule["specificity"],
        }
        if view in scores.masked_share:
            row["masked_share"] = float(scores.masked_share[view].mean())
        if view != "none":
            row.update(evaluation.paired_differences(scores.labels, base, raw, threshold, resamples=resamples))
        rows[view] = row
    regions = {view: row for view, row in rows.items() if view in scores.masked_share}
    shifts = {view: row for view, row in rows.items() if view not in scores.masked_share}
    return {"threshold_raw": threshold, "n": int(scores.labels.size), "regions": regions, "shifts": shifts,
            "verdict": verdict(regions)}


CHANCE_MARGIN = 0.1  # an AUC interval whose lower end clears 0.5 by this much is not chance


def verdict(rows: Mapping[str, Mapping]) -> str:
    """One sentence: does the model read the source (corners, border, text), the lungs, or both?

    The source wins when hiding the corners, border or text costs more AUC than hiding the lungs.
    Otherwise it reads the lungs, unless the film with its lungs hidden still separates the classes
    (the interval of that AUC clears 0.5 + CHANCE_MARGIN): then it reads what lies outside them too.
    """
    def cost(region):
        return -rows[region]["auc_difference"] if region in rows else None

    source_cost = max((cost(r) for r in ("top_corners", "border", "text") if r in rows), default=None)
    lungs_cost = cost("lungs")
    if source_cost is None or lungs_cost is None:
        return "not enough regions audited for a verdict"
    lungs_only = rows.get("outside_lungs", {}).get("auc")
    tail = f"; on the lungs alone its AUC is {lungs_only:.3f}" if lungs_only is not None else ""
    if source_cost > lungs_cost:
        return (f"the model reads the source: hiding the corners, border or text costs more AUC "
                f"({source_cost:.3f}) than hiding the lungs ({lungs_cost:.3f}){tail}")
    hidden = rows["lungs"]
    low = (hidden.get("auc_interval") or (hidden["auc"], hidden["auc"]))[0]
    if low > 0.5 + CHANCE_MARGIN:
        return (f"the model reads the lungs and what lies outside them: hiding the lungs costs {lungs_cost:.3f} AUC "
                f"and the corners, border or text up to {source_cost:.3f}, but with the lungs hidden the film still "
                f"gives AUC {hidden['auc']:.3f} (at least {low:.3f}), far from chance{tail}")
    return (f"the model reads the lungs more than the source: hiding the lungs costs {lungs_cost:.3f} AUC, "
            f"the corners, border or text at most {source_cost:.3f}{tail}")


def occlusion_maps(model: keras.Model, backbone: str, grey: np.ndarray, labels: np.ndarray,
                   grid: int = OCCLUSION_GRID, batch_size: int = 32) -> np.ndarray:
    """[N, grid, grid] drop in P(the image's true class) when a mean-grey patch of 1/8 of the side
    covers each position (positive: the patch hid evidence for the true class)."""
    spec = get_backbone_spec(backbone)
    grey = np.asarray(grey, dtype=np.float32)
    size = grey.shape[1]
    patch = max(1, size // 8)
    starts = np.linspace(0, size - patch, grid).round().astype(int)
    maps = np.zeros((grey.shape[0], grid, grid), dtype=np.float32)
    for index, (image, label) in enumerate(zip(grey, labels)):
        fill = image.mean()
        variants = [image]
        for top in starts:
            for left in starts:
                covered = image.copy()
                covered[top:top + patch, left:left + patch] = fill
                variants.append(covered)
        stack = tf.image.grayscale_to_rgb(tf.constant(np.stack(variants)))
        p_covid = np.asarray(model.predict(spec.preprocess(stack), batch_size=batch_size, verbose=0)).reshape(-1)
        p_true = p_covid if label == 1 else 1.0 - p_covid
        maps[index] = (p_true[0] - p_true[1:]).reshape(grid, grid)
    return maps


def write_audit(model: keras.Model, metadata: Mapping, scores: AuditScores, table: Mapping,
                out_dir: str | os.PathLike, per_class: int = OCCLUSION_PER_CLASS) -> None:
    """Into out_dir: audit.json, audit.md (the table and verdict) and occlusion_<class>.png (the
    most confident images of each class: the film, Grad-CAM, occlusion sensitivity)."""
    out_dir = pathlib.Path(out_dir)
    files.atomic_write_json(out_dir / "audit.json", table, default=files.json_default)
    files.atomic_write_text(out_dir / "audit.md", audit_markdown(table, metadata))
    spec = get_backbone_spec(metadata["backbone"])
    try:
        gradcam = GradCam.of(model)
    except ValueError:  # not a backbone and our head: occlusion only
        gradcam = None
    rule = OperatingRule.of_metadata(metadata)
    calibrated = rule.probabilities(scores.raw["none"])
    for class_name, indices in shortcuts.most_confident(scores.labels, calibrated, per_class).items():
        if not indices:
            continue
        grey = scores.grey[indices]
        occlusion = occlusion_maps(model, metadata["backbone"], grey, scores.labels[indices])
        heatmaps = None
        if gradcam is not None:
            _, heatmaps = gradcam(spec.preprocess(tf.image.grayscale_to_rgb(tf.cast(grey, tf.float32))),
                                  threshold=rule.raw_threshold)
            heatmaps = np.asarray(heatmaps)
        panels, titles = [], []
        for k, i in enumerate(indices):
            positive = np.clip(occlusion[k], 0.0, None)
            scale = positive.max() if positive.max() > 0 else 1.0
            panels.append(np.repeat(grey[k], 3, axis=-1))
            titles.append(f"P(COVID) {calibrated[i]:.2f}")
            if heatmaps is not None:
                panels.append(plots.heatmap_overlay(grey[k], heatmaps[k]))
                titles.append("Grad-CAM")
            panels.append(plots.heatmap_overlay(grey[k], positive / scale))
            titles.append("occlusion")
        plots.save_heatmap_grid(panels, titles, out_dir / f"occlusion_{class_name}.png",
                                columns=6 if heatmaps is not None else 4,
                                title=f"{metadata['backbone']} {class_name}: film, Grad-CAM, occlusion")


REGION_NAMES = {
    "none": "unmasked",
    "top_corners": "top corners hidden",
    "border": "border hidden",
    "text": "text and markers hidden",
    "outside_lungs": "lungs only",
    "lungs": "lungs hidden",
}


def audit_markdown(table: Mapping, metadata: Mapping) -> str:
    def interval(value, bounds, signed=False):
        if bounds is None:
            return f"{value:+.3f}" if signed else f"{value:.3f}"
        return formatting.interval({"mean": value, "low": bounds[0], "high": bounds[1]}, signed=signed)

    lines = [f"# Shortcut audit: {metadata['backbone']} at {metadata['image_size']} px"
             + (f", film {metadata['training'].get('film')}" if metadata.get("training", {}).get("film") else ""),
             "", f"**{table['verdict'][0].upper() + table['verdict'][1:]}.**", "",
             f"{table['n']} images; accuracy at the operating rule (raw threshold {table['threshold_raw']:.3f}); "
             "differences are paired on the same images, 95 % bootstrap intervals.", "",
             "| images | share hidden | AUC | change in AUC | accuracy | change in accuracy | specificity |",
             "|---|---|---|---|---|---|---|"]
    for region, row in table["regions"].items():
        auc = interval(row["auc"], row["auc_interval"])
        change_auc = (interval(row["auc_difference"], row["auc_difference_interval"], signed=True)
                      if "auc_difference" in row else "")
        change_accuracy = (interval(row["accuracy_difference"], row["accuracy_difference_interval"], signed=True)
                           if "accuracy_difference" in row else "")
        lines.append(f"| {REGION_NAMES.get(region, region)} | {row['masked_share']:.2f} | {auc} | {change_auc} | "
                     f"{row['accuracy']:.3f} | {change_accuracy} | {row['specificity']:.3f} |")
    if table.get("shifts"):
        lines += ["", "Simulated shifts (what films from another hospital may look like), on the same images:", "",
                  "| images | AUC | change in AUC | accuracy | change in accuracy | specificity |",
                  "|---|---|---|---|---|---|"]
        for shift, row in table["shifts"].items():
            lines.append(f"| {shift} | {interval(row['auc'], row['auc_interval'])} | "
                         f"{interval(row['auc_difference'], row['auc_difference_interval'], signed=True)} | "
                         f"{row['accuracy']:.3f} | "
                         f"{interval(row['accuracy_difference'], row['accuracy_difference_interval'], signed=True)} | "
                         f"{row['specificity']:.3f} |")
    lines += ["", "Hidden pixels take the mean grey of what the image still shows. Regions: `covid_keras/film.py` (border and top corners "
              "as in the Grad-CAM report; text: bright high-contrast blobs; lungs: two ellipses fitted per image).",
              "Class names: " + ", ".join(BINARY_CLASSES) + "."]
    return "\n".join(lines) + "\n"

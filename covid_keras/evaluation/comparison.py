"""Several GAN evaluation reports side by side, pooled per configuration, against the goals.

One evaluation's TSTR moves by several points with its seed (the classifiers' seeds and the
draws of samples), so a generator is judged on several evaluations of it: the reports of one
configuration (run folder, checkpoint, sample filter, TSTR classifiers' blur) at different
evaluation seeds are pooled.

The goals (issue 6): class fidelity within `FIDELITY_GOAL` of the judge's accuracy on real test
images, and TSTR within `TSTR_GOAL` of TRTR. Per report the gap is judge - fidelity and
TRTR - TSTR (TSTR: the mean over its classifiers); pooled, the mean gap over reports, each
report weighted once, and its standard error over reports. The margin is goal - mean gap:
positive means met; a margin within a standard error or two of zero is no robust pass. Three
reports give a rough standard error; the classifiers' sd over all reports is beside it.

One generator is one training seed. Configurations whose runs differ only in their training
seed (same GanConfig otherwise, same checkpoint, filter and TSTR blur) are pooled once more: the mean of
their pooled gaps, each training seed weighted once, and its standard error over training seeds.
That is the figure that says whether a preset, not one lucky run, meets a goal.

Reads the `metrics.json` files `evaluation.gan_report.evaluate_gan` writes, through their typed
figures (`evaluation.gan_report_schema`); needs no model.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import statistics
from typing import Mapping, Sequence

from covid_keras.evaluation.gan_report_schema import GanReportFigures
from covid_keras.gan.config import beside_seed
from covid_keras.formatting import fixed, points, significant

FIDELITY_GOAL = 0.10  # class fidelity at most this far below the judge's real test accuracy
TSTR_GOAL = 0.15  # TSTR at most this far below TRTR
# A run folder's config file: gan_run_dir.CONFIG_FILE (not imported: that would load TensorFlow).
RUN_CONFIG_FILE = "config.json"


def load_report(path: str | os.PathLike) -> GanReportFigures:
    """An `evaluate_gan` report's figures: from its output folder or its metrics.json."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such report folder or file")
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no evaluation report there (evaluate_gan.py writes OUT/metrics.json)")
    try:
        report = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{file}: not valid JSON ({error})") from error
    return GanReportFigures.from_json(report, str(file))


def configuration(report: GanReportFigures) -> tuple:
    """What a report evaluated and how: run folder, checkpoint, sample filter (its threshold or
    None) and the blur the TSTR and TRTR classifiers trained with (0: none)."""
    return report.run_dir, report.checkpoint, report.min_confidence, report.tstr_blur_sigma


def run_config(report: GanReportFigures) -> Mapping | None:
    """The evaluated run's GanConfig (as a dict): from the report, or, for reports older than its
    `run_config` key, from the run folder's config file while that still exists; else None."""
    if report.run_config:
        return report.run_config
    path = pathlib.Path(report.run_dir) / RUN_CONFIG_FILE if report.run_dir else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["gan"]
    except (ValueError, KeyError, TypeError):
        return None  # not a run config: such a report is simply not pooled over training seeds


def preset_key(report: GanReportFigures, config: Mapping | None) -> tuple | None:
    """What a report evaluated, but for the run's training seed (`config`: its `run_config`);
    None when the run's config is unknown."""
    if config is None:
        return None
    return (json.dumps(beside_seed(config), sort_keys=True),) + configuration(report)[1:]


def configuration_label(key: tuple, full_path: bool = False) -> str:
    """A configuration's name in tables: its run folder's name (its whole path when `full_path`)."""
    run_dir, checkpoint, min_confidence, tstr_blur_sigma = key
    parts = [(run_dir if full_path else pathlib.Path(run_dir).name) if run_dir else "a generator model"]
    if checkpoint not in ("latest", "None"):
        parts.append(f"epoch {checkpoint}")
    if min_confidence is not None:
        parts.append(f"P≥{min_confidence:g}")
    if tstr_blur_sigma > 0:
        parts.append(f"TSTR blur ≤{tstr_blur_sigma:g} px")
    return ", ".join(parts)


def report_row(name: str, report: GanReportFigures, label: str, config: Mapping | None) -> dict:
    """One report's figures and its gaps to the goals (`label`: its configuration's name in tables;
    `config`: its `run_config`)."""
    row = {
        "name": name,
        "configuration": label,
        "training_seed": None if config is None else config.get("seed"),
        "seed": report.eval_seed,
        "extractor": report.extractor,
        "kid": report.kid,
        "judge_accuracy": report.judge_accuracy,
        "fidelity": report.fidelity,
        "fidelity_per_class": dict(report.fidelity_per_class),
        "fidelity_gap": report.judge_accuracy - report.fidelity,
        "acceptance_per_class": None if report.acceptance_per_class is None else dict(report.acceptance_per_class),
    }
    if report.tstr is not None:
        accuracies = list(report.tstr.accuracies)
        mean_accuracy = statistics.fmean(accuracies)
        row.update({
            "tstr": mean_accuracy,
            "tstr_accuracies": accuracies,
            "tstr_sd": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
            "tstr_auc": report.tstr.auc,
            "trtr": report.tstr.trtr_accuracy,
            "tstr_gap": report.tstr.trtr_accuracy - mean_accuracy,
        })
    return row


def _goal(gaps: list[float], goal: float) -> dict:
    mean_gap = statistics.fmean(gaps)
    se = statistics.stdev(gaps) / math.sqrt(len(gaps)) if len(gaps) > 1 else None
    return {"mean_gap": mean_gap, "gap_se": se, "margin": goal - mean_gap, "met": mean_gap <= goal, "n_reports": len(gaps)}


def _mean_or_none(values: list) -> float | None:
    # evaluate_gan writes a KID of None when no class had two real and two generated images.
    measured = [value for value in values if value is not None]
    return statistics.fmean(measured) if measured else None


def pool(rows: Sequence[dict]) -> dict:
    """One configuration's reports (at different seeds) pooled against the goals."""
    pooled = {
        "configuration": rows[0]["configuration"],
        "training_seed": rows[0].get("training_seed"),
        "reports": [row["name"] for row in rows],
        "seeds": [row["seed"] for row in rows],
        "judge_accuracy": statistics.fmean(row["judge_accuracy"] for row in rows),
        "fidelity": statistics.fmean(row["fidelity"] for row in rows),
        "fidelity_goal": _goal([row["fidelity_gap"] for row in rows], FIDELITY_GOAL),
        "kid_per_extractor": {extractor: _mean_or_none([row["kid"] for row in rows if row["extractor"] == extractor])
                              for extractor in sorted({row["extractor"] for row in rows})},
    }
    with_tstr = [row for row in rows if "tstr" in row]
    if with_tstr:
        accuracies = [accuracy for row in with_tstr for accuracy in row["tstr_accuracies"]]
        pooled.update({
            "tstr": statistics.fmean(row["tstr"] for row in with_tstr),
            "tstr_classifier_sd": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
            "n_tstr_classifiers": len(accuracies),
            "trtr": statistics.fmean(row["trtr"] for row in with_tstr),
            "tstr_goal": _goal([row["tstr_gap"] for row in with_tstr], TSTR_GOAL),
        })
    return pooled


def pool_training_seeds(pooled: Sequence[dict]) -> dict:
    """Pooled configurations of one preset at different training seeds, pooled again: means of
    their figures and gaps, each training seed weighted once, and standard errors over them."""
    result = {
        "configurations": [p["configuration"] for p in pooled],
        "training_seeds": [p["training_seed"] for p in pooled],
        "n_reports": sum(len(p["reports"]) for p in pooled),
        "judge_accuracy": statistics.fmean(p["judge_accuracy"] for p in pooled),
        "fidelity": statistics.fmean(p["fidelity"] for p in pooled),
        "fidelity_goal": _goal([p["fidelity_goal"]["mean_gap"] for p in pooled], FIDELITY_GOAL),
    }
    with_tstr = [p for p in pooled if "tstr" in p]
    if with_tstr:
        result.update({
            "tstr": statistics.fmean(p["tstr"] for p in with_tstr),
            "tstr_per_training_seed": [p["tstr"] for p in with_tstr],
            "trtr": statistics.fmean(p["trtr"] for p in with_tstr),
            "tstr_goal": _goal([p["tstr_goal"]["mean_gap"] for p in with_tstr], TSTR_GOAL),
        })
    return result


def _over_training_seeds(preset_of: Mapping[tuple, tuple | None], pooled: Mapping[tuple, dict]) -> list[dict]:
    """Configurations grouped by preset (all but the training seed); those with two seeds or more pooled."""
    presets = {}
    for key, preset in preset_of.items():
        if preset is not None:
            presets.setdefault(preset, []).append(key)
    result = []
    for keys in presets.values():
        seeds = {}
        for key in keys:
            seed = pooled[key]["training_seed"]
            if seed in seeds:
                raise ValueError(f"{pooled[seeds[seed]]['configuration']} and {pooled[key]['configuration']} are one "
                                 f"preset at one training seed ({seed}): pooling them would count that seed twice")
            seeds[seed] = key
        if len(keys) > 1:
            result.append(pool_training_seeds([pooled[key] for key in keys]))
    return result


def compare(reports: Mapping[str, GanReportFigures | Mapping]) -> dict:
    """Reports by name (their figures, or metrics.json documents) -> each report's row, the pooled
    figures per configuration, and per preset over training seeds (where runs differ only in their seed).

    Two reports of one configuration at one seed are the same measurement twice (their pool
    would count it twice): refused, naming both; so are two runs of one preset at one training seed.
    """
    if not reports:
        raise ValueError("no reports to compare")
    reports = {name: report if isinstance(report, GanReportFigures) else GanReportFigures.from_json(report, name)
               for name, report in reports.items()}
    keys, seen = {}, {}
    for name, report in reports.items():
        key = keys[name] = configuration(report)
        seed_key = (key, report.eval_seed)
        if seed_key in seen:
            raise ValueError(f"{seen[seed_key]} and {name} both evaluate {configuration_label(key)} at seed "
                             f"{seed_key[1]}: pass one of them")
        seen[seed_key] = name
    # Run folders of one name in different parents are different generators: name them by path.
    short = {key: configuration_label(key) for key in keys.values()}
    clashing = {label for label in short.values() if list(short.values()).count(label) > 1}
    labels = {key: configuration_label(key, full_path=True) if label in clashing else label for key, label in short.items()}
    rows, groups, preset_of = [], {}, {}
    for name, report in reports.items():
        key, config = keys[name], run_config(report)
        row = report_row(name, report, labels[key], config)
        rows.append(row)
        groups.setdefault(key, []).append(row)
        preset_of[key] = preset_key(report, config)
    pooled = {key: pool(group) for key, group in groups.items()}
    return {"goals": {"fidelity": FIDELITY_GOAL, "tstr": TSTR_GOAL}, "reports": rows,
            "configurations": list(pooled.values()), "over_training_seeds": _over_training_seeds(preset_of, pooled)}


def compare_paths(paths: Sequence[str | os.PathLike]) -> dict:
    """`compare` over report folders (or metrics.json files), each named by its folder."""
    reports = {}
    for path in paths:
        path = pathlib.Path(path)
        name = (path if path.is_dir() else path.parent).name or str(path)
        if name in reports:
            raise ValueError(f"two reports named {name!r} ({path}): give each report folder its own name")
        reports[name] = load_report(path)
    return compare(reports)


def _verdict(goal: dict) -> str:
    word = "met" if goal["met"] else "missed"
    se = "" if goal["gap_se"] is None else f", SE {points(goal['gap_se'])}"
    return f"{word} by {points(abs(goal['margin']))} pts{se}"


def markdown(comparison: dict) -> str:
    """The per-report table and the pooled table with the goals' verdicts."""
    goals = comparison["goals"]
    lines = [
        "# GAN evaluations compared",
        "",
        f"Goals: class fidelity within {points(goals['fidelity'])} points of the judge's real test accuracy; "
        f"TSTR within {points(goals['tstr'])} points of TRTR. TSTR: mean (± sd) over a report's classifiers. "
        "KID is comparable only under one extractor.",
        "",
        "| report | configuration | eval seed | fidelity (judge) | TSTR | TRTR | TSTR AUC | KID (extractor) | kept per class |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison["reports"]:
        tstr = "n/a" if "tstr" not in row else (
            fixed(row["tstr"]) + ("" if row["tstr_sd"] is None else f" ± {fixed(row['tstr_sd'])} ({len(row['tstr_accuracies'])})"))
        kept = " / ".join(fixed(v) for v in row["acceptance_per_class"].values()) if row["acceptance_per_class"] else "all"
        lines.append(
            f"| {row['name']} | {row['configuration']} | {row['seed']} | {fixed(row['fidelity'])} ({fixed(row['judge_accuracy'])}) "
            f"| {tstr} | {fixed(row.get('trtr'))} | {fixed(row.get('tstr_auc'))} | {significant(row['kid'])} ({row['extractor']}) | {kept} |"
        )
    lines += [
        "",
        "## Pooled per configuration",
        "",
        "Means over the configuration's reports (each weighted once); the gap's standard error is over reports.",
        "",
        "| configuration | training seed | eval seeds | fidelity (judge) | fidelity goal | TSTR (classifiers, sd) | TRTR "
        "| TSTR goal | KID per extractor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pooled in comparison["configurations"]:
        classifiers = f"{pooled.get('n_tstr_classifiers')}, sd {fixed(pooled.get('tstr_classifier_sd'))}"
        kid = ", ".join(f"{name} {significant(value)}" for name, value in pooled["kid_per_extractor"].items())
        lines.append(
            f"| {pooled['configuration']} | {_or_unknown(pooled['training_seed'])} | {', '.join(str(s) for s in pooled['seeds'])} "
            + _goal_cells(pooled, classifiers) + f" {kid} |"
        )
    if comparison["over_training_seeds"]:
        lines += [
            "",
            "## Pooled over training seeds",
            "",
            "Configurations whose runs differ only in their training seed: means over training seeds (each "
            "weighted once); the gap's standard error is over training seeds.",
            "",
            "| configurations | training seeds | reports | fidelity (judge) | fidelity goal | TSTR (per training seed) | TRTR "
            "| TSTR goal |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for pooled in comparison["over_training_seeds"]:
            per_seed = " / ".join(fixed(v) for v in pooled.get("tstr_per_training_seed", []))
            lines.append(
                f"| {' + '.join(pooled['configurations'])} | {', '.join(str(s) for s in pooled['training_seeds'])} "
                f"| {pooled['n_reports']} " + _goal_cells(pooled, per_seed)
            )
    return "\n".join(lines + [""])


def _goal_cells(pooled: dict, tstr_detail: str) -> str:
    """A pooled table's cells from fidelity to the TSTR goal; `tstr_detail` follows the TSTR mean."""
    if "tstr" in pooled:
        tstr = f"{fixed(pooled['tstr'])} ({tstr_detail}) | {fixed(pooled['trtr'])} | {_verdict(pooled['tstr_goal'])}"
    else:
        tstr = "n/a | n/a | not measured"
    return (f"| {fixed(pooled['fidelity'])} ({fixed(pooled['judge_accuracy'])}) | {_verdict(pooled['fidelity_goal'])} "
            f"| {tstr} |")


def _or_unknown(value) -> str:
    return "?" if value is None else str(value)

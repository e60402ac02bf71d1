"""The figures of an `evaluate_gan` report (metrics.json) that other code reads, as typed records.

`gan_report.evaluate_gan` writes a nested JSON document; this module is the one place that
knows where in it each figure lives. `GanReportFigures.from_json` parses a report once and
says which key is missing when it is not one; the comparison (`evaluation.comparison`) reads
attributes, not string paths. Reports written before a setting existed parse with its old
default (no TSTR blur, TSTR as one accuracy rather than one per classifier). No TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping


REQUIRED_KEYS = ("class_fidelity", "kid", "extractor", "settings")  # in every report, old or new


@dataclasses.dataclass(frozen=True)
class TstrFigures:
    """TSTR against TRTR in one report: one accuracy per TSTR classifier, the TRTR accuracy."""

    accuracies: tuple[float, ...]
    trtr_accuracy: float
    auc: float | None = None


@dataclasses.dataclass(frozen=True)
class GanReportFigures:
    """What one evaluation measured and of what (see the module docstring)."""

    run_dir: str | None  # the evaluated run folder (None: a bare generator model)
    checkpoint: str  # "latest", a kept epoch, or "None"
    eval_seed: int  # the evaluation's own seed (samples, classifiers)
    tstr_blur_sigma: float  # the TSTR and TRTR classifiers' training blur (0: none)
    min_confidence: float | None  # the sample filter's threshold (None: unfiltered)
    acceptance_per_class: Mapping[str, float] | None
    extractor: str  # KID's feature extractor
    kid: float | None  # KID averaged over the classes (None: no class had enough images)
    judge_accuracy: float  # the fidelity judge on real held-out images
    fidelity: float  # the judge on generated images
    fidelity_per_class: Mapping[str, float]
    run_config: Mapping | None  # the run's GanConfig as a dict, when the report carries it
    tstr: TstrFigures | None  # None: TSTR was not measured

    @classmethod
    def from_json(cls, report: Mapping, source: str = "the report") -> GanReportFigures:
        """Parses `report` (a metrics.json document); ValueError naming `source` and the missing key."""
        if not isinstance(report, Mapping):
            raise ValueError(f"{source}: not an evaluate_gan report (a JSON object was expected)")
        missing = [key for key in REQUIRED_KEYS if key not in report]
        if missing:
            raise ValueError(f"{source}: not an evaluate_gan report (no {', '.join(missing)})")
        try:
            fidelity = report["class_fidelity"]
            sample_filter = report.get("sample_filter") or None
            tstr = report.get("tstr_trtr") or None
            return cls(
                run_dir=report.get("run_dir"),
                checkpoint=str(report.get("checkpoint")),
                eval_seed=int(report["settings"]["seed"]),
                tstr_blur_sigma=float(report["settings"].get("tstr_blur_sigma", 0.0)),
                min_confidence=None if sample_filter is None else float(sample_filter["min_confidence"]),
                acceptance_per_class=None if sample_filter is None else sample_filter.get("acceptance_per_class"),
                extractor=report["extractor"]["name"],
                kid=report["kid"]["mean_over_classes"],
                judge_accuracy=float(fidelity["judge"]["real_test_accuracy"]),
                fidelity=float(fidelity["overall"]),
                fidelity_per_class=dict(fidelity["per_class"]),
                run_config=report.get("run_config") or None,
                tstr=None if tstr is None else TstrFigures(
                    accuracies=tuple(float(c["accuracy"]) for c in tstr.get("tstr_classifiers", []))
                    or (float(tstr["tstr_accuracy"]),),
                    trtr_accuracy=float(tstr["trtr_accuracy"]),
                    auc=tstr.get("tstr_auc"),
                ),
            )
        except KeyError as error:
            raise ValueError(f"{source}: not an evaluate_gan report (no {error.args[0]!r} where expected)") from error
        except (TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{source}: not an evaluate_gan report ({error})") from error

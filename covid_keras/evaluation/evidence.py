"""GAN evidence a reviewer would accept: one protocol for every figure about a generator.

- **One held-out split per report.** `split="validation"` (the default) is for choices: presets,
  epochs, thresholds, recipes. `split="test"` is for the final table, once per configuration;
  with "validation" the test split is not even loaded. Every report records the splits it
  loaded and the one it scored.
- **An independent judge** (`imagenet_judge.ImagenetJudge`: frozen ImageNet features, a
  head on real train images at the GAN's resolution) beside the small-CNN judge; the run's class
  guide, when it has one, is scored for agreement with the judge on real and generated images.
- **Filtered and unfiltered samples side by side**: the filter is the run's own class guide at
  `min_guide_confidence`; its acceptance rate per class is reported.
- **KID against held-out real images** (the scored split) as well as against train, on one
  named extractor; **memorisation**: nearest-train distances of samples vs held-out real images.
- **TSTR vs TRTR**, plain recipe, over `classifiers` seeds; TRTR over the same seeds so that
  the per-seed difference is paired.
- **Intervals** (`evaluation.intervals`): every accuracy with a 95 % interval over its images
  (and seeds, where there are several).

Nothing here trains on the scored split: judges, guide, TSTR and TRTR classifiers train on real
train (or synthetic) images and stop early on real validation (or synthetic) images.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Mapping, Sequence

import numpy as np

from covid_keras import files, plots
from covid_keras.provenance import provenance
from covid_keras.choices import HELD_OUT_SPLITS
from covid_keras.evaluation import intervals, memorisation
from covid_keras.evaluation.embeddings import EmbeddingExtractor, build_extractor
from covid_keras.evaluation.imagenet_judge import ImagenetJudge
from covid_keras.evaluation.images import (
    LabelledImages,
    balanced_labels,
    generate_images,
    load_real_splits,
    to_uint8_images,
)
from covid_keras.evaluation.judge import (
    ClassifierRecipe,
    judge_classes,
    judge_probabilities,
    train_small_cnn,
)
from covid_keras.evaluation.kid import kid_per_class
from covid_keras.evaluation.metrics import roc_auc, roc_auc_interval
from covid_keras.evaluation.tstr import tstr_classifier_seed
from covid_keras.formatting import interval, significant
from covid_keras.gan import run_dir as gan_run_dir
from covid_keras.gan import sampling
from covid_keras.gan import training as gan_training
from covid_keras.gan import translation

PROTOCOL = "gan-evidence/1"


@dataclasses.dataclass
class EvidenceSettings:
    split: str = "validation"  # the held-out split scored; "test" only for a final configuration
    per_class: int = 500  # generated images per class, per sample set
    min_guide_confidence: float = 0.9  # the filtered set: the run's guide gives the class >= this
    judge_backbone: str = "vgg16"
    judge_input_size: int = 128
    classifiers: int = 3  # TSTR and TRTR classifier seeds
    kid_subsets: int = 100
    seed: int = 0
    recipe: ClassifierRecipe = dataclasses.field(default_factory=ClassifierRecipe)

    def __post_init__(self):
        if self.split not in HELD_OUT_SPLITS:
            raise ValueError(f"split must be one of {HELD_OUT_SPLITS}, got {self.split!r}")
        if self.per_class < 2:
            raise ValueError(f"per_class must be >= 2, got {self.per_class}")
        if self.classifiers < 2:
            raise ValueError(f"classifiers must be >= 2 (a paired TSTR - TRTR interval), got {self.classifiers}")
        if self.recipe.blur_sigma:
            raise ValueError("the evidence protocol uses the plain classifier recipe (blur_sigma 0)")


def _correct(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (np.asarray(predicted) == np.asarray(labels)).astype(np.float64)


def _accuracy_section(correct: np.ndarray, labels: np.ndarray, class_names: Sequence[str], seed: int) -> dict:
    """Overall accuracy with its 95 % interval over images, and the per-class share."""
    return {
        **intervals.mean_interval([correct], shared_items=True, seed=seed),
        "per_class": {name: float(correct[labels == i].mean()) for i, name in enumerate(class_names)
                      if np.any(labels == i)},
    }


def label_separation(labels: np.ndarray, probabilities: np.ndarray, seed: int = 0) -> dict | None:
    """How far a judge's P(class 1) moves with the label, whatever its threshold: the ROC AUC of
    P(class 1) between images labelled 1 and 0, with its 95 % bootstrap interval. 0.5: the label
    changes nothing the judge sees, even where accuracy is 0.5 only because the judge gives every
    sample one class. None for more than two classes or when a label is missing."""
    probabilities = np.asarray(probabilities)
    if probabilities.shape[-1] != 2:
        return None
    auc = roc_auc(labels, probabilities[:, 1])
    bounds = roc_auc_interval(labels, probabilities[:, 1], seed=seed)
    if auc is None or bounds is None:
        return None
    return {"auc": auc, "low": bounds[0], "high": bounds[1],
            "mean_probability_per_label": [float(probabilities[np.asarray(labels) == k, 1].mean()) for k in (0, 1)]}


def _guide_classes(guide, images: np.ndarray) -> np.ndarray:
    x = to_uint8_images(images).astype(np.float32) / 127.5 - 1.0
    logits = np.concatenate([np.asarray(guide(x[i : i + 256], training=False)) for i in range(0, len(x), 256)])
    return np.argmax(logits, axis=-1)


@dataclasses.dataclass
class SampleSet:
    name: str
    images: LabelledImages
    acceptance_per_class: dict | None = None


def draw_sample_sets(generator, class_names, per_class, seed, guide=None, min_confidence=0.9) -> list[SampleSet]:
    """The unfiltered set, and with a guide the filtered one (its own noise: seed + 1)."""
    labels = balanced_labels(len(class_names), per_class)
    images, _ = sampling.draw(generator, labels, np.random.default_rng(seed))
    sets = [SampleSet("unfiltered", LabelledImages(images, labels))]
    if guide is not None:
        image_filter = sampling.ConfidenceFilter(guide, min_confidence, name="the run's class guide")
        images, drawn = sampling.draw(generator, labels, np.random.default_rng(seed + 1), image_filter=image_filter)
        acceptance = {name: per_class / int(drawn[i]) for i, name in enumerate(class_names)}
        sets.append(SampleSet("filtered", LabelledImages(images, labels), acceptance))
    return sets


def _synthetic_set(generator, counts, seed, image_filter):
    labels = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    return generate_images(generator, labels, seed, image_filter=image_filter), labels.astype(np.int64)


def tstr_versus_trtr(generator, real: Mapping[str, LabelledImages], split: str, class_names, settings,
                     guide=None, log=print) -> dict:
    """TSTR (per sample kind) and TRTR classifiers over `settings.classifiers` seeds, scored on `split`.

    Classifier i of every kind is seeded alike, so TSTR_i - TRTR_i is a paired difference.
    TSTR classifiers stop early on held-out synthetic images (no real image steers them); TRTR on
    real validation. The returned TRTR model 0 is the small-CNN judge.
    """
    num_classes = len(class_names)
    train, validation, scored = real["train"], real["validation"], real[split]
    counts = np.bincount(train.labels, minlength=num_classes)
    kinds = ["unfiltered"] + (["filtered"] if guide is not None else [])
    correct = {kind: [] for kind in ["trtr"] + kinds}
    guide_filter = None if guide is None else sampling.ConfidenceFilter(guide, settings.min_guide_confidence, name="guide")
    judge = None
    for i in range(settings.classifiers):
        recipe = dataclasses.replace(settings.recipe, seed=tstr_classifier_seed(settings.recipe.seed, i))
        log(f"TRTR classifier {i + 1}/{settings.classifiers}")
        model, _ = train_small_cnn(train.images, train.labels, validation.images, validation.labels, num_classes, recipe)
        correct["trtr"].append(_correct(judge_classes(model, scored.images), scored.labels))
        judge = judge if i else model
        for kind in kinds:
            log(f"TSTR classifier {i + 1}/{settings.classifiers} on {kind} samples")
            image_filter = guide_filter if kind == "filtered" else None
            base = 10_000 * (i + 1) + settings.seed * 100 + (50 if image_filter is not None else 0)
            synthetic_train = _synthetic_set(generator, counts, base + 1, image_filter)
            synthetic_val = _synthetic_set(generator, np.maximum(counts // 4, 2), base + 2, image_filter)
            model, _ = train_small_cnn(*synthetic_train, *synthetic_val, num_classes, recipe)
            correct[kind].append(_correct(judge_classes(model, scored.images), scored.labels))
    result = {"n_classifiers": settings.classifiers, "recipe": dataclasses.asdict(settings.recipe),
              "n_scored": int(len(scored.labels))}
    for kind, runs in correct.items():
        result[kind] = {**intervals.mean_interval(runs, shared_items=True, seed=settings.seed),
                        "per_seed": [float(r.mean()) for r in runs]}
    for kind in kinds:
        result[f"{kind}_minus_trtr"] = intervals.paired_difference(result[kind]["per_seed"], result["trtr"]["per_seed"])
    # Per classifier seed, per scored image: what pooling over GAN training seeds needs (evidence_pooling).
    items = {f"tstr_{kind}_{split}": [r.astype(int).tolist() for r in runs] for kind, runs in correct.items()}
    return {"result": result, "small_cnn_judge": judge, "items": items}


def evaluate_evidence(
    generator,
    real: Mapping[str, LabelledImages],
    class_names: Sequence[str],
    settings: EvidenceSettings | None = None,
    *,
    guide=None,
    judge: ImagenetJudge | None = None,
    extractor: EmbeddingExtractor | None = None,
    weights_dir=None,
    log=print,
) -> dict:
    """The protocol on a generator and real images at its resolution ({"train", "validation", split}).

    guide: the run's frozen class guide (logits of images in [-1, 1]) or None for an unguided run.
    judge / extractor: built from exact local ImageNet weights (`weights_dir`) when not given.
    -> the report (JSON-able), with the items behind each interval under "items".
    """
    settings = settings or EvidenceSettings()
    split = settings.split
    missing = [s for s in ("train", "validation", split) if s not in real]
    if missing:
        raise ValueError(f"real images lack split(s) {missing}")
    train, scored = real["train"], real[split]
    seed = settings.seed

    log(f"drawing {settings.per_class} images per class" + (" (unfiltered and filtered)" if guide is not None else ""))
    sample_sets = draw_sample_sets(generator, class_names, settings.per_class, seed, guide, settings.min_guide_confidence)

    log("independent judge: features of real train and validation images")
    judge = judge or ImagenetJudge.build(settings.judge_backbone, len(class_names), settings.judge_input_size,
                                         weights_dir=weights_dir, seed=seed)
    if judge.head is None:
        judge.fit(train.images, train.labels, real["validation"].images, real["validation"].labels)
    tstr = tstr_versus_trtr(generator, real, split, class_names, settings, guide, log)
    small_cnn = tstr["small_cnn_judge"]
    judges = {"independent": lambda images: judge.predict_probabilities(images),
              "small_cnn": lambda images: judge_probabilities(small_cnn, images)}

    image_sets = {split: scored, **{s.name: s.images for s in sample_sets}}
    probabilities = {name: {key: score(images.images) for key, images in image_sets.items()}
                     for name, score in judges.items()}
    predictions = {name: {key: np.argmax(p, axis=-1) for key, p in by_set.items()}
                   for name, by_set in probabilities.items()}
    items: dict[str, list] = dict(tstr["items"])
    report_judges, fidelity = {}, {}
    for name in judges:
        correct = _correct(predictions[name][split], scored.labels)
        report_judges[name] = {f"{split}_accuracy": _accuracy_section(correct, scored.labels, class_names, seed)}
        items[f"judge_{name}_{split}"] = correct.astype(int).tolist()
        fidelity[name] = {}
        for sample_set in sample_sets:
            correct = _correct(predictions[name][sample_set.name], sample_set.images.labels)
            fidelity[name][sample_set.name] = _accuracy_section(correct, sample_set.images.labels, class_names, seed)
            items[f"fidelity_{name}_{sample_set.name}"] = correct.astype(int).tolist()
    separation = {name: {key: label_separation(images.labels, probabilities[name][key], seed)
                         for key, images in image_sets.items()} for name in judges}
    report_judges["independent"]["description"] = judge.describe()
    report_judges["small_cnn"]["description"] = {"kind": "small CNN, TRTR classifier 0 (real train)",
                                                 "recipe": dataclasses.asdict(settings.recipe)}
    # How often the run's guide and the independent judge give an image the same class.
    agreement = None if guide is None else {
        key: float(np.mean(_guide_classes(guide, images.images) == predictions["independent"][key]))
        for key, images in image_sets.items()
    }

    log("KID and memorisation")
    extractor = extractor or build_extractor("auto", weights_dir=weights_dir, seed=seed)
    train_features = extractor.features(train.images)
    scored_features = extractor.features(scored.images)
    kid = {"extractor": extractor.describe(), f"vs_{split}": {}, "vs_train": {}}
    memorised = {}
    for sample_set in sample_sets:
        features = extractor.features(sample_set.images.images)
        labels = sample_set.images.labels
        kid[f"vs_{split}"][sample_set.name] = kid_per_class(scored_features, scored.labels, features, labels,
                                                            class_names, settings.kid_subsets, 1000, seed)
        kid["vs_train"][sample_set.name] = kid_per_class(train_features, train.labels, features, labels,
                                                        class_names, settings.kid_subsets, 1000, seed)
        memorised[sample_set.name] = memorisation.memorisation_check(sample_set.images.images, train.images, scored.images)
    # The real held-out images' own KID to train: the floor a generator cannot go below.
    kid[f"{split}_vs_train"] = kid_per_class(train_features, train.labels, scored_features, scored.labels,
                                             class_names, settings.kid_subsets, 1000, seed)

    return {
        "protocol": PROTOCOL,
        "class_names": list(class_names),
        "image_size": int(train.images.shape[1]),
        "splits_loaded": sorted(real),
        "splits_scored": [split],
        "settings": dataclasses.asdict(settings),
        "samples": {s.name: {"per_class": settings.per_class, "acceptance_per_class": s.acceptance_per_class}
                    for s in sample_sets},
        "judges": report_judges,
        "fidelity": fidelity,
        "label_separation": separation,
        "guide_agreement_with_independent_judge": agreement,
        "kid": kid,
        "memorisation": memorised,
        "tstr": tstr["result"],
        "items": items,
        "_sample_sets": sample_sets,  # dropped by write_evidence; kept for the grids
    }


def evaluate_run_evidence(run_dir, data_spec, settings: EvidenceSettings | None = None, which="latest",
                          weights_dir=None, out_dir=None, log=print) -> dict:
    """`evaluate_evidence` on a GAN run folder; loads only the splits it needs (no test for "validation")."""
    settings = settings or EvidenceSettings()
    splits = ("train", "validation") + (("test",) if settings.split == "test" else ())
    if translation.is_translation_run(run_dir):
        translator, config, class_names = translation.load_translation_run(run_dir)
        real = load_real_splits(data_spec, config.image_size, splits)
        # It edits real train images only: the bank never holds a held-out image.
        bank = real["train"]
        generator = translation.source_sampler(translator, bank.images.astype(np.float32) / 127.5 - 1.0,
                                               bank.labels, config.num_classes)
        guide = None
    else:
        generator, config, class_names = gan_training.load_generator(run_dir, which=which)
        guide = gan_training.load_class_guide(run_dir) if config.class_guide_weight > 0 else None
        real = load_real_splits(data_spec, int(generator.output_shape[1]), splits)
    report = evaluate_evidence(generator, real, class_names, settings, guide=guide, weights_dir=weights_dir, log=log)
    epoch = (gan_run_dir.completed_epochs(run_dir) or None) if which == "latest" else int(which)  # None: not known
    report.update(run_dir=str(run_dir), checkpoint=which, epoch=epoch, run_config=config.to_dict(), data=str(data_spec),
                  run_precision=gan_run_dir.run_precision(run_dir), provenance=provenance())
    if out_dir is not None:
        write_evidence(report, real, out_dir)
    return report


def write_evidence(report: dict, real: Mapping[str, LabelledImages], out_dir) -> pathlib.Path:
    """evidence.json, evidence.md and the grids (real vs generated per class and sample kind;
    the closest generated/train pairs) into `out_dir`, each written whole and renamed into place."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample_sets = report.pop("_sample_sets", [])
    split = report["splits_scored"][0]
    grids = []
    for sample_set in sample_sets:
        for label, name in enumerate(report["class_names"]):
            real_images = real[split].images[real[split].labels == label][:8]
            fakes = sample_set.images.images[sample_set.images.labels == label][:8]
            n = min(len(real_images), len(fakes))
            if n:
                path = out / f"grid_{name}_{sample_set.name}.png"
                plots.save_image_grid(np.stack([real_images[:n], fakes[:n]]), path,
                                      row_labels=[f"real ({split})", sample_set.name],
                                      title=f"{name}: real {split} images (top), {sample_set.name} samples (bottom)")
                grids.append(path.name)
        closest = report["memorisation"][sample_set.name]["closest"]
        pairs = np.stack([sample_set.images.images[[c["generated"] for c in closest]],
                          real["train"].images[[c["train"] for c in closest]]])
        path = out / f"closest_train_{sample_set.name}.png"
        plots.save_image_grid(pairs, path, row_labels=["generated", "nearest train"],
                              title=f"{sample_set.name}: the 8 samples closest to a training image")
        grids.append(path.name)
    report["grids"] = grids
    files.atomic_write_text(out / "evidence.json", json.dumps(report, indent=1, default=files.json_default) + "\n")
    files.atomic_write_text(out / "evidence.md", evidence_markdown(report))
    return out


def evidence_markdown(report: dict) -> str:
    """The report as a short Markdown page: one table per question."""
    split = report["splits_scored"][0]
    kinds = list(report["samples"])
    lines = [f"# GAN evidence ({report['protocol']}), scored on the {split} split", "",
             f"Run: `{report.get('run_dir')}` ({report.get('checkpoint')}); {report['samples']['unfiltered']['per_class']} "
             "samples per class and kind. Intervals: 95 %, over images (and seeds where several).", "",
             "| judge | real " + split + " | " + " | ".join(f"{k} samples" for k in kinds) + " |",
             "|---|---|" + "---|" * len(kinds)]
    for name, judge in report["judges"].items():
        cells = [interval(report["fidelity"][name][k]) for k in kinds]
        lines.append(f"| {name} | {interval(judge[f'{split}_accuracy'])} | " + " | ".join(cells) + " |")
    if any(report.get("label_separation", {}).get(name, {}).get(split) for name in report["judges"]):
        second, first = report["class_names"][1], report["class_names"][0]
        lines += ["", f"Label separation: the judge's P({second}) ranks images labelled {second} above those labelled "
                  f"{first} (ROC AUC; 0.5 = the label changes nothing the judge sees):", "",
                  "| judge | real " + split + " | " + " | ".join(f"{k} samples" for k in kinds) + " |",
                  "|---|---|" + "---|" * len(kinds)]
        for name in report["judges"]:
            cells = [report["label_separation"][name][key] for key in [split] + kinds]
            lines.append(f"| {name} | " + " | ".join(_auc_cell(c) for c in cells) + " |")
    if "filtered" in report["samples"]:
        acceptance = report["samples"]["filtered"]["acceptance_per_class"]
        lines += ["", "Filter acceptance per class: " + ", ".join(f"{n} {a:.3f}" for n, a in acceptance.items())]
    if report.get("guide_agreement_with_independent_judge"):
        lines += ["", "Guide agrees with the independent judge: " + ", ".join(
            f"{k} {v:.3f}" for k, v in report["guide_agreement_with_independent_judge"].items())]
    tstr = report["tstr"]
    lines += ["", f"| classifiers ({tstr['n_classifiers']} seeds, plain recipe) | accuracy on {split} | minus TRTR, paired |",
              "|---|---|---|", f"| TRTR (real train) | {interval(tstr['trtr'])} | |"]
    for kind in kinds:
        d = tstr[f"{kind}_minus_trtr"]
        lines.append(f"| TSTR ({kind}) | {interval(tstr[kind])} | {interval(d, signed=True)} |")
    kid = report["kid"]
    lines += ["", f"KID on {kid['extractor']['name']} ({kid['extractor']['weights']}), per class:", "",
              "| samples | vs " + split + " | vs train |", "|---|---|---|"]
    for kind in kinds:
        cells = [", ".join(f"{n} {significant(v['mean'])}" for n, v in kid[key][kind]["per_class"].items())
                 for key in (f"vs_{split}", "vs_train")]
        lines.append(f"| {kind} | {cells[0]} | {cells[1]} |")
    floor = ", ".join(f"{n} {significant(v['mean'])}" for n, v in kid[f"{split}_vs_train"]["per_class"].items())
    lines.append(f"| real {split} (floor) | | {floor} |")
    lines += ["", "| samples | memorisation ratio | near copies (chance 0.05) | flagged |", "|---|---|---|---|"]
    for kind in kinds:
        m = report["memorisation"][kind]
        lines.append(f"| {kind} | {m['ratio']:.3f} | {m['near_copy_share']:.3f} | {'yes' if m['flagged'] else 'no'} |")
    return "\n".join(lines) + "\n"


def read_evidence(path) -> dict:
    """An evidence report from its folder or its evidence.json; a clear error for anything else."""
    path = pathlib.Path(path)
    report = files.read_json(path / "evidence.json" if path.is_dir() else path, "an evidence report")
    if not isinstance(report, dict) or not str(report.get("protocol", "")).startswith("gan-evidence/"):
        raise ValueError(f"{path} is not a gan_evidence report (no gan-evidence protocol)")
    return report


def comparison_markdown(reports: Mapping[str, dict]) -> str:
    """Several evidence reports as one table, a row per report and sample kind. Reports scored on
    different splits are refused: a validation figure and a test figure are not comparable."""
    splits = {label: r["splits_scored"][0] for label, r in reports.items()}
    if len(set(splits.values())) > 1:
        raise ValueError(f"the reports were scored on different splits ({splits}); compare like with like")
    split = next(iter(splits.values()))
    first, second = next(iter(reports.values()))["class_names"][:2]
    lines = [f"Scored on the {split} split; 95 % intervals over images (one GAN training seed each).", "",
             f"| report | samples | independent judge: accuracy ({first} / {second}) | label separation (AUC) | "
             f"small-CNN judge | TSTR minus TRTR | KID vs {split} ({first} / {second}) | memorisation ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in reports.items():
        real = r["judges"]["independent"][f"{split}_accuracy"]
        real_separation = (r.get("label_separation") or {}).get("independent", {}).get(split)
        lines.append(f"| {label} | real {split} | {interval(real)} | "
                     f"{_auc_cell(real_separation)} | {interval(r['judges']['small_cnn'][f'{split}_accuracy'])} | | | |")
        for kind in r["samples"]:
            fidelity = r["fidelity"]["independent"][kind]
            per_class = " / ".join(f"{fidelity['per_class'][name]:.2f}" for name in (first, second))
            separation = (r.get("label_separation") or {}).get("independent", {}).get(kind)
            d = r["tstr"][f"{kind}_minus_trtr"]
            kid = r["kid"][f"vs_{split}"][kind]["per_class"]
            lines.append(
                f"| {label} | {kind} | {interval(fidelity)} ({per_class}) | {_auc_cell(separation)} | "
                f"{interval(r['fidelity']['small_cnn'][kind])} | {interval(d, signed=True)} | "
                f"{significant(kid[first]['mean'])} / {significant(kid[second]['mean'])} | "
                f"{r['memorisation'][kind]['ratio']:.2f} |")
    extractors = {r["kid"]["extractor"]["name"] for r in reports.values()}
    lines += ["", f"KID on {', '.join(sorted(extractors))} features. Label separation: the independent judge's "
              f"P({second}) for samples labelled {second} against those labelled {first}; n/a in reports made "
              "before it was measured."]
    return "\n".join(lines) + "\n"


def _auc_cell(section: dict | None) -> str:
    return "n/a" if not section else f"{section['auc']:.3f} [{section['low']:.3f}, {section['high']:.3f}]"

"""The whole study in one call: data -> GAN -> generated images -> baseline and augmented classifiers -> report.

    reproduce("runs/reproduce-quick", quick=True)        # ~minutes on 2 CPU cores
    reproduce("runs/reproduce", data="radiography", manual_dir=KAGGLE, weights="/work/weights")

What OUT holds:

    gan/                  the GAN run (the profile's preset and overrides); resumes when rerun
    generated/<class>/    the generated grey PNGs (reused when complete: see generated.json)
    generated.json        what generated/ was made from (GAN run, epochs, count, seed)
    tfds/                 the TFDS build of generated/ (the `folder` config)
    feature_cache/        backbone features, so a rerun skips the backbone passes
    report/               README.md, results.md/.json, test_accuracy.png, roc_test.png,
                          confusion_test.png, gan_samples.png, gan_loss_curve.png,
                          real_examples.png, generated_examples.png, gan_evaluation/ (the
                          GAN's KID, class fidelity and TSTR: `evaluation.gan_report`)
    reproduce.json        the resolved weights, stage timings and what each stage reused

Every stage reuses what a previous run of the same command finished, so a crash loses at most
the stage it happened in. Under a multi-worker strategy the GAN trains across the workers (OUT on
a file system they share); every later stage is the chief's alone, and the other workers end
after the GAN. The classifiers are frozen backbones on a weights folder (`weights_dir`) or on
Keras' ImageNet download; without either (offline, no folder) they are the small CNN trained from
scratch (`experiment.SMALL_CNN`), and the report says so in one line. Random backbones only when
asked for (weights "none").
"""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import dataclasses
import json
import os
import pathlib
import shutil
import time
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from covid_keras import classifier, distribute, experiment, files, plots
from covid_keras import data as xray_data  # `reproduce(data=...)` is a config name
from covid_keras.backbones import get_backbone_spec
from covid_keras.formatting import fixed
from covid_keras.gan import presets as gan_presets
from covid_keras.labels import BINARY_CLASSES
from covid_keras.provenance import provenance

GAN_DIR = "gan"
GAN_EVALUATION_DIR = "gan_evaluation"
GENERATED_DIR = "generated"
GENERATED_RECORD = "generated.json"
GENERATED_TFDS_DIR = "tfds"
FEATURE_CACHE_DIR = "feature_cache"
REPORT_DIR = "report"
STATE_FILE = "reproduce.json"
README = "README.md"
GAN_SAMPLES = "gan_samples.png"
GAN_LOSS_CURVE = "gan_loss_curve.png"
REAL_EXAMPLES = "real_examples.png"
GENERATED_EXAMPLES = "generated_examples.png"
EXAMPLES_PER_CLASS = 16  # the report shows 16 samples per class beside 16 real images


@dataclasses.dataclass(frozen=True)
class Profile:
    """One size of the study: the data, the GAN run, the generated count and the classifier runs.

    gan_overrides: GanConfig fields applied to the GAN preset `gan_run`. gan_evaluation: the
    `evaluation.gan_report.EvaluationSettings` fields the report's GAN figures are made with (KID,
    class fidelity, TSTR), or None for none.
    """

    name: str
    data: str
    gan_run: str = "3"
    gan_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    gan_evaluation: Mapping[str, Any] | None = dataclasses.field(default_factory=lambda: {"curves": False})
    per_class: int = 1000
    backbones: tuple[str, ...] = experiment.DEFAULT_BACKBONES
    seeds: tuple[int, ...] = experiment.DEFAULT_SEEDS
    image_size: int = classifier.STUDY_IMAGE_SIZE
    epochs: int = classifier.STUDY_EPOCHS
    batch_size: int = classifier.STUDY_BATCH_SIZE
    generate_seed: int = 0
    small_cnn_epochs: int = 40  # the offline classifier's most epochs (early-stopped on validation)
    small_cnn_image_size: int | None = None  # the offline classifier's input side; None: the GAN's
    # How the GAN settings were chosen, for the report (None: the study's or the caller's).
    gan_chosen_by: str | None = None

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["gan_overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.gan_overrides.items()}
        values["backbones"], values["seeds"] = list(self.backbones), list(self.seeds)
        return values


PROFILES = {
    # The study as its report describes it: GAN run 3 at 150 px for 750 epochs (days on a CPU),
    # 1000 generated images per class, the three backbones at 150 px, 3 seeds.
    "full": Profile("full", data="phantom"),
    # Minutes on 2 CPU cores, offline: `guided` at 32 px with half of its filters, twice its learning
    # rate and its guide on from the first step, for 300 generator steps of 32 on the small phantom set
    # (chosen on the validation split: experiments/quick_gan_probe.py, docs/results.md), 50
    # generated images per class; the classifiers: the three backbones at 75 px (InceptionV3's
    # minimum) on local weights, or offline the small CNN from scratch at 64 px (0.93 on validation
    # against 0.90 at 32 px).
    "quick": Profile(
        "quick",
        data="phantom_small",
        gan_run="guided",
        gan_overrides={"image_size": 32, "generator_filters": (128, 64, 32), "discriminator_filters": (16, 32, 64, 128),
                       "learning_rate": 2e-4, "class_guide_from_epoch": 0, "class_guide_ramp_epochs": 0,
                       "batch_size": 32, "epochs": 30, "epoch_images": 320, "sample_every": 10, "checkpoint_every": 10},
        gan_evaluation={"per_class": 200, "num_subsets": 50, "subset_size": 100, "curves": False},
        per_class=50,
        image_size=75,
        small_cnn_image_size=64,
        gan_chosen_by=("on the validation split among 32 px candidates (`stable`, `guided` with its guide by "
                       "feature matching or by cross-entropy) at 300 steps (experiments/quick_gan_probe.py; "
                       "docs/results.md, 'The quick phantom run')"),
    ),
}


# --- weights ---------------------------------------------------------------------------------


def imagenet_available(backbone: str, image_size: int) -> str | None:
    """None when Keras can load the ImageNet weights of `backbone` (downloading them if needed), else why not."""
    spec = get_backbone_spec(backbone)
    size = max(image_size, spec.min_size)
    try:
        # Keras announces the download on stdout; offline that line is noise before a failure.
        with contextlib.redirect_stdout(io.StringIO()):
            spec.constructor(include_top=False, weights="imagenet", input_shape=(size, size, 3))
    except Exception as error:  # no network, blocked storage, a broken download cache, ...
        return f"{type(error).__name__}: {error}"
    finally:
        keras.backend.clear_session()
    return None


OFFLINE_NOTE = (
    "No ImageNet weights here (offline), so the classifier is the small CNN trained from scratch on "
    "the images; for frozen VGG16 / ResNet50 / InceptionV3 give a weights folder with --weights-dir DIR "
    "(make one offline: python ../shared/tools/backbone_weights.py DIR)."
)


def choose_classifiers(
    weights: str | None, backbones: Sequence[str], image_size: int, fallback_weights: str | None = None,
    weights_dir: str | None = None,
) -> tuple[dict[str, str | None], list[str]]:
    """(classifier -> the weights it uses, notes on what was used instead of what was asked).

    A weights folder (`weights_dir`) gives frozen backbones on its local files. "imagenet" is tried
    per backbone (Keras' download), then `fallback_weights`; a backbone with neither is left out,
    and with none left the classifier is `experiment.SMALL_CNN`, trained from scratch. Random
    backbones appear only when asked for (weights "none").
    """
    if weights_dir:
        return {b: str(classifier.resolve_weights_file(weights_dir, get_backbone_spec(b))) for b in backbones}, []
    if weights in (None, "none"):
        return {backbone: None for backbone in backbones}, []
    if weights != "imagenet":
        for backbone in backbones:  # a clear error now rather than after the GAN
            classifier.resolve_weights_file(weights, get_backbone_spec(backbone))
        return {backbone: weights for backbone in backbones}, []
    resolved, missing = {}, []
    for backbone in backbones:
        if imagenet_available(backbone, image_size) is None:
            resolved[backbone] = "imagenet"
        elif (local := _fallback_for(backbone, fallback_weights)) is not None:
            resolved[backbone] = local
        else:
            missing.append(backbone)
    if not resolved:
        return {experiment.SMALL_CNN: None}, [OFFLINE_NOTE]
    notes = [f"No ImageNet weights for {', '.join(missing)} here (offline?): left out; give --weights-dir DIR "
             "for them."] if missing else []
    return resolved, notes


def _fallback_for(backbone: str, fallback_weights: str | None) -> str | None:
    if not fallback_weights:
        return None
    try:
        return str(classifier.resolve_weights_file(fallback_weights, get_backbone_spec(backbone)))
    except FileNotFoundError:
        return None


def _announce(notes: Sequence[str]) -> None:
    for note in notes:
        print(f"note: {note}")


# --- stages --------------------------------------------------------------------------------


def train_gan_stage(profile: Profile, spec: xray_data.DataSpec, run_dir: pathlib.Path, verbose,
                    strategy: tf.distribute.Strategy | None = None) -> dict:
    from covid_keras.gan import (
        training as gan_training,  # the GAN stack loads only when a GAN is trained
    )

    config = gan_presets.from_preset(profile.gan_run, **profile.gan_overrides)
    result = gan_training.train_gan(config, spec, run_dir, verbose=verbose, strategy=strategy)
    return {
        "run_dir": str(run_dir),
        "preset": profile.gan_run,
        "config": result.config.to_dict(),
        "resumed_from_epoch": result.initial_epoch,
        "epochs_done": result.epochs_done,
    }


def gan_evaluation_stage(out_dir: pathlib.Path, gan: Mapping, spec: xray_data.DataSpec, settings: Mapping,
                         verbose: int = 1) -> dict:
    """The GAN's own figures (KID, class fidelity under the small-CNN judge, TSTR vs TRTR) in
    OUT/report/gan_evaluation/, unless they were made from the same GAN epoch and settings."""
    from covid_keras.evaluation import gan_report

    folder = out_dir / REPORT_DIR / GAN_EVALUATION_DIR
    made_from = {"gan_run_dir": gan["run_dir"], "gan_epochs": gan["epochs_done"], "settings": dict(settings)}
    inputs_path, metrics_path = folder / ".inputs.json", folder / "metrics.json"
    reused = inputs_path.is_file() and metrics_path.is_file() and json.loads(inputs_path.read_text()) == made_from
    if not reused:
        partial = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        gan_report.evaluate_gan(gan["run_dir"], spec, settings=gan_report.EvaluationSettings(**settings),
                                out_dir=partial, verbose=verbose)
        files.atomic_write_json(partial / ".inputs.json", made_from)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    return {**gan_evaluation_summary(json.loads(metrics_path.read_text())), "reused": reused}


def gan_evaluation_summary(result: Mapping) -> dict:
    """The few figures the report's README shows from an `evaluate_gan` result."""
    fidelity, tstr = result["class_fidelity"], result.get("tstr_trtr") or {}
    diversity = result.get("diversity") or {}
    generated, real = diversity.get("generated", {}), diversity.get("real", {})
    return {
        "extractor": result["extractor"].get("name"),
        "kid_per_class": {name: kid.get("mean") for name, kid in result["kid"]["per_class"].items()},
        "judge_on_real_test": fidelity["judge"]["real_test_accuracy"],
        "class_fidelity": fidelity["overall"],
        "class_fidelity_per_class": fidelity.get("per_class"),
        "tstr_accuracy": tstr.get("tstr_accuracy"),
        "trtr_accuracy": tstr.get("trtr_accuracy"),
        # Mean pairwise feature distance of samples over that of real images, per class (1: as varied).
        "diversity_ratio": {name: generated[name]["feature_distance"] / real[name]["feature_distance"]
                            for name in generated if name in real and real[name]["feature_distance"]},
    }


def _png_counts(folder: pathlib.Path, class_names: Sequence[str]) -> dict[str, int]:
    return {name: len(list((folder / name).glob("*.png"))) if (folder / name).is_dir() else 0 for name in class_names}


def generate_stage(out_dir: pathlib.Path, gan: Mapping, per_class: int, seed: int, verbose: int = 1) -> dict:
    """Write per_class images per class to OUT/generated/, unless the same set is already complete."""
    from covid_keras import generate
    from covid_keras.gan import training as gan_training

    folder, record_path = out_dir / GENERATED_DIR, out_dir / GENERATED_RECORD
    wanted = {"gan_run_dir": gan["run_dir"], "gan_epochs": gan["epochs_done"], "per_class": per_class, "seed": seed}
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("made_from") == wanted and _png_counts(folder, record["class_names"]) == record["counts"]:
            return {**record, "reused": True}
    # Incomplete or made from something else: start over (both folders are this run's own).
    record_path.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(out_dir / GENERATED_TFDS_DIR, ignore_errors=True)
    generator, _, class_names = gan_training.load_generator(gan["run_dir"])
    counts = generate.write_generated(generator, class_names, per_class, folder, seed=seed, verbose=verbose)
    record = {"dir": str(folder), "made_from": wanted, "class_names": list(class_names), "counts": counts}
    record_path.write_text(json.dumps(record, indent=2) + "\n")  # written last: marks the folder complete
    return {**record, "reused": False}


def experiment_stage(config: experiment.ExperimentConfig, generated: Mapping, out_dir: pathlib.Path, verbose) -> dict:
    """Run the experiment into OUT/report, unless its results there came from the same inputs."""
    report_dir = out_dir / REPORT_DIR
    inputs = {"config": config.to_dict(), "generated": generated["made_from"]}
    inputs_path = report_dir / ".experiment_inputs.json"
    results_path = report_dir / experiment.RESULTS_JSON
    if inputs_path.is_file() and results_path.is_file() and json.loads(inputs_path.read_text()) == inputs:
        return {"results": json.loads(results_path.read_text()), "reused": True}
    inputs_path.unlink(missing_ok=True)
    cache = classifier.FeatureCache(out_dir / FEATURE_CACHE_DIR)
    results = experiment.run_experiment(config, report_dir, cache=cache, verbose=verbose)
    inputs_path.write_text(json.dumps(inputs, indent=2) + "\n")
    return {"results": results, "reused": False}


# --- report --------------------------------------------------------------------------------


def _latest_sample_grid(run_dir: pathlib.Path) -> pathlib.Path | None:
    grids = sorted((run_dir / "samples").glob("epoch_*.png"))
    return grids[-1] if grids else None


def _last_losses(run_dir: pathlib.Path) -> dict | None:
    path = run_dir / "losses.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: rows[-1][k] for k in ("epoch", "g_loss", "d_loss") if k in rows[-1]} if rows else None


def save_example_grids(spec: xray_data.DataSpec, generated_dir: str, tfds_dir: str, report_dir: pathlib.Path, size: int) -> None:
    """Real and generated examples side by side in the report (first images of each class)."""
    real = xray_data.load_split(spec, "train")
    generated = xray_data.load_split(xray_data.generated_spec(generated_dir, tfds_dir), xray_data.ALL_SPLITS)
    for ds, name, title in ((real, REAL_EXAMPLES, "real (train split)"), (generated, GENERATED_EXAMPLES, "generated")):
        per_class = collections.Counter(int(label) for label in ds.map(lambda e: e["label"]).as_numpy_iterator())
        columns = min([EXAMPLES_PER_CLASS] + [per_class[label] for label in range(len(BINARY_CLASSES))])
        if columns == 0:
            print(f"warning: no {name}: a class has no image")
            continue
        images = xray_data.preview_images(ds, columns, len(BINARY_CLASSES), image_size=size)
        plots.save_image_grid(images, report_dir / name, row_labels=list(BINARY_CLASSES), title=title)


def copy_gan_figures(run_dir: pathlib.Path, report_dir: pathlib.Path) -> dict[str, str | None]:
    copied = {}
    for source, name in ((_latest_sample_grid(run_dir), GAN_SAMPLES), (run_dir / "loss_curve.png", GAN_LOSS_CURVE)):
        if source is not None and source.is_file():
            shutil.copyfile(source, report_dir / name)
            copied[name] = str(source)
        else:
            copied[name] = None
    return copied


def gan_description(gan_config: Mapping, preset: str) -> str:
    """The GAN's settings as the report names them: preset, size, batch and generator steps."""
    steps_per_epoch = (gan_config.get("epoch_images") or 0) // int(gan_config["batch_size"])
    steps = f", {steps_per_epoch * int(gan_config['epochs'])} generator steps" if steps_per_epoch else ""
    return (f"preset `{preset}` at {gan_config['image_size']} px, batch {gan_config['batch_size']}, "
            f"{gan_config['epochs']} epochs{steps}")


def classifier_description(results: Mapping) -> str:
    config = results["config"]
    if list(results["backbones"]) == [experiment.SMALL_CNN]:
        return (f"the small CNN of the GAN's judge and TRTR, trained from scratch at {config['image_size']} px "
                f"(early-stopped on real validation), seeds {config['seeds']}")
    weights = {b: experiment.weights_description(r["weights"]) for b, r in results["backbones"].items()}
    return (f"frozen {', '.join(f'{b} ({w})' for b, w in weights.items())} with the study's head at "
            f"{config['image_size']} px, {config['epochs']} epochs, batch {config['batch_size']}, seeds {config['seeds']}")


def answer_lines(results: Mapping) -> list[str]:
    """The report's first section: real vs classic vs GAN test accuracy, with the paired intervals."""
    seeds = len(results["config"]["seeds"])
    lines = [
        f"Test accuracy on real test images ({results['data']['splits']['test']['n']}), mean ± sd over {seeds} "
        "seeds; each difference is paired per seed with its 95 % interval:",
        "",
        "| classifier | real only | + classic augmentation | + GAN images | GAN vs real | GAN vs classic |",
        "|---|---|---|---|---|---|",
    ]
    for backbone, result in results["backbones"].items():
        summary = result["summary"]
        cell = lambda setting: (experiment.format_mean_sd(summary[setting]["test_accuracy"])  # noqa: E731
                                if setting in summary else "–")
        lines.append(f"| {backbone} | {cell('baseline')} | {cell('classic')} | {cell('augmented')} | "
                     f"{_difference(result.get('comparison'))} | {_difference(result.get('comparison_vs_classic'))} |")
    lines.append("")
    for backbone, result in results["backbones"].items():
        lines.append(experiment.comparison_sentence(backbone, result["comparison"], seeds))
        if "comparison_vs_classic" in result:
            lines.append(experiment.comparison_sentence(backbone, result["comparison_vs_classic"], seeds,
                                                        reference="classic augmentation"))
    return lines + [""]


def _difference(comparison: Mapping | None) -> str:
    if not comparison:
        return "–"
    paired = comparison["paired_interval"]
    if paired is None:
        return f"{comparison['test_accuracy_gain']:+.3f} (one seed)"
    verdict = {"better": "GAN better", "worse": "GAN worse", "no detectable difference": "noise"}[paired["verdict"]]
    return f"{comparison['test_accuracy_gain']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]: {verdict}"


def readme_text(state: Mapping, results_md: str, results: Mapping) -> str:
    profile, gan, generated = state["profile"], state["gan"], state["generated"]
    data_spec = state["data"]
    synthetic = " (SYNTHETIC phantoms, not medical images)" if data_spec["config"].startswith("phantom") else ""
    lines = [f"# Does the GAN help a classifier? `{profile['name']}` profile on `{data_spec['config']}`{synthetic}", ""]
    lines += answer_lines(results)
    lines += [f"Classifier: {classifier_description(results)}.", ""]
    lines += [f"Note: {note}" for note in state["weights_notes"]]
    if state["weights_notes"]:
        lines.append("")
    losses = gan.get("last_losses") or {}
    chosen_by = f" Chosen {profile['gan_chosen_by']}." if profile.get("gan_chosen_by") else ""
    lines += [
        "## The GAN's samples",
        "",
        "| real (train split) | generated |",
        "|---|---|",
        f"| ![real]({REAL_EXAMPLES}) | ![generated]({GENERATED_EXAMPLES}) |",
        "",
        f"GAN: {gan_description(gan['config'], gan['preset'])}.{chosen_by}",
        "",
        *_gan_evaluation_lines(state.get("gan_evaluation")),
        "## Details",
        "",
        f"- Data: `{data_spec['config']}`{synthetic}{' from ' + data_spec['path'] if data_spec['path'] else ''}.",
        f"- GAN run: `{gan['run_dir']}`, {gan['epochs_done']} epochs"
        + (f" (last epoch: G loss {float(losses['g_loss']):.3f}, D loss {float(losses['d_loss']):.3f})" if losses else "")
        + f"; overrides of the preset: {profile['gan_overrides'] or 'none'}.",
        f"- Generated: {generated['counts']} images per class in `{generated['dir']}`, added to the train split only.",
        "- Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in state["timings_s"].items()) + ".",
        "",
        "Samples at the last epoch (one noise per column, one class per row) and the losses:",
        "",
        f"![samples]({GAN_SAMPLES}) ![losses]({GAN_LOSS_CURVE})",
        "",
        f"![test accuracy]({experiment.BAR_CHART}) ![ROC]({experiment.ROC_CHART})",
        "",
        f"![confusion matrices]({experiment.CONFUSION_CHART})",
        "",
        results_md.replace("# Baseline vs GAN-augmented classifiers", "### Every classifier figure"),
    ]
    lines += ["## Provenance", "", *(f"- {key}: {value}" for key, value in state.get("provenance", {}).items()), ""]
    return "\n".join(lines) + "\n"


def _gan_evaluation_lines(summary: Mapping | None) -> list[str]:
    if not summary:
        return []
    kid = ", ".join(f"{name} {fixed(value)}" for name, value in summary["kid_per_class"].items())
    diversity = ", ".join(f"{name} {value:.2f}" for name, value in (summary.get("diversity_ratio") or {}).items())
    lines = [
        f"How good the samples are ([details]({GAN_EVALUATION_DIR}/summary.md); the judge is a small CNN "
        "trained on real train images, scored on the real test split):",
        "",
        "| | generated | real reference |",
        "|---|---|---|",
        f"| class fidelity: the judge reads the sample's class | {fixed(summary['class_fidelity'])} | "
        f"{fixed(summary['judge_on_real_test'])} (the judge on real test images) |",
        f"| TSTR: trained on samples only, tested on real | {fixed(summary['tstr_accuracy'])} | "
        f"{fixed(summary['trtr_accuracy'])} (TRTR: trained on real) |",
    ]
    if diversity:
        lines.append(f"| diversity: mean feature distance, samples / real (1 = as varied) | {diversity} | 1 |")
    lines += [f"| KID against real train images ({summary['extractor']} features; 0 = indistinguishable) | {kid} | 0 |", ""]
    return lines


# --- the pipeline --------------------------------------------------------------------------


def select_profile(quick: bool, profile: Profile | str | None) -> Profile:
    if isinstance(profile, Profile):
        return profile
    name = profile or ("quick" if quick else "full")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def reproduce(
    out_dir: str | os.PathLike,
    data: str | None = None,
    quick: bool = False,
    weights: str | None = "imagenet",
    fallback_weights: str | None = None,
    weights_dir: str | None = None,
    manual_dir: str | None = None,
    data_dir: str | None = None,
    seeds: Sequence[int] | None = None,
    backbones: Sequence[str] | None = None,
    per_class: int | None = None,
    profile: Profile | str | None = None,
    gan_run: str | None = None,
    verbose: int = 1,
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Run (or finish) the whole study into out_dir; return its record (also in OUT/reproduce.json).

    data: a covid_xray config (default: the profile's, `phantom` or for quick `phantom_small`);
    manual_dir: the Kaggle download (radiography) or the folder root (folder). seeds, backbones,
    weights_dir: a folder of local ImageNet weights: the classifiers are then frozen backbones on
    them; without it and without Keras' download, the small CNN trained from scratch
    (`choose_classifiers`). per_class and gan_run (a GAN preset: "3" is the study's, "stable" ours) override the
    profile. profile: "full", "quick" or a `Profile` (quick=True means "quick"). strategy: what
    the GAN trains under (default: the current one); on a worker other than the chief, the record
    ends after the GAN stage (`"worker": True`).
    """
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)
    chosen = select_profile(quick, profile)
    chosen = dataclasses.replace(
        chosen,
        data=data or chosen.data,
        seeds=tuple(seeds) if seeds is not None else chosen.seeds,
        backbones=tuple(backbones) if backbones is not None else chosen.backbones,
        per_class=per_class or chosen.per_class,
        gan_run=gan_run or chosen.gan_run,
    )
    gan_presets.from_preset(chosen.gan_run)  # an unknown preset fails here, before any work
    out_dir = pathlib.Path(out_dir).resolve()
    report_dir = out_dir / REPORT_DIR
    if chief:
        report_dir.mkdir(parents=True, exist_ok=True)
    spec = xray_data.DataSpec.parse(chosen.data, manual_dir, data_dir)
    state: dict[str, Any] = {"profile": chosen.to_dict(), "data": dataclasses.asdict(spec), "timings_s": {}}
    timer = _StageTimer(state["timings_s"])
    gan_verbose = "auto" if verbose else 0

    with timer("weights"):
        resolved, notes = choose_classifiers(weights, chosen.backbones, chosen.image_size, fallback_weights,
                                             weights_dir)
        _announce(notes)
        state.update(weights_requested=weights, weights_dir=weights_dir, weights=resolved, weights_notes=notes)
    with timer("data"):
        distribute.chief_first(strategy, lambda: xray_data.prepare(spec))
    with timer("gan"):
        state["gan"] = train_gan_stage(chosen, spec, out_dir / GAN_DIR, gan_verbose, strategy)
        if not chief:
            return {**state, "out_dir": str(out_dir), "worker": True}
        state["gan"]["last_losses"] = _last_losses(out_dir / GAN_DIR)
    if chosen.gan_evaluation is not None:
        with timer("gan evaluation"):
            # Its own log is a line per classifier epoch: the figures reach the report, the lines would bury the rest.
            state["gan_evaluation"] = gan_evaluation_stage(out_dir, state["gan"], spec, chosen.gan_evaluation, 0)
    with timer("generate"):
        state["generated"] = generate_stage(out_dir, state["gan"], chosen.per_class, chosen.generate_seed, verbose)
    small_cnn = list(resolved) == [experiment.SMALL_CNN]
    small_cnn_size = chosen.small_cnn_image_size or int(state["gan"]["config"]["image_size"])
    config = experiment.ExperimentConfig(
        data=spec,
        generated_dir=str(out_dir / GENERATED_DIR),
        backbones=tuple(resolved),
        seeds=chosen.seeds,
        weights=resolved,
        per_class=chosen.per_class,
        image_size=small_cnn_size if small_cnn else chosen.image_size,
        epochs=chosen.epochs,
        batch_size=chosen.batch_size,
        generated_data_dir=str(out_dir / GENERATED_TFDS_DIR),
        small_cnn_epochs=chosen.small_cnn_epochs,
    )
    with timer("classifiers"):
        outcome = experiment_stage(config, state["generated"], out_dir, verbose)
        state["experiment_reused"] = outcome["reused"]
    with timer("report"):
        state["gan_figures"] = copy_gan_figures(out_dir / GAN_DIR, report_dir)
        save_example_grids(
            spec, config.generated_dir, str(out_dir / GENERATED_TFDS_DIR), report_dir,
            size=int(state["gan"]["config"]["image_size"]),
        )
    state["timings_s"]["total"] = sum(state["timings_s"].values())
    state["provenance"] = provenance()
    results_md = (report_dir / experiment.RESULTS_MD).read_text()
    (report_dir / README).write_text(readme_text(state, results_md, outcome["results"]))
    (out_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    if verbose:
        print(f"report: {report_dir / README} ({state['timings_s']['total']:.0f} s)")
    return {**state, "out_dir": str(out_dir), "report_dir": str(report_dir), "results": outcome["results"]}


class _StageTimer:
    """`with timer("stage"):` adds the stage's wall seconds to `timings`."""

    def __init__(self, timings: dict[str, float]):
        self.timings = timings

    def __call__(self, stage: str):
        self.stage = stage
        return self

    def __enter__(self):
        self.started = time.perf_counter()
        print(f"== {self.stage}")
        return self

    def __exit__(self, *exc_info):
        self.timings[self.stage] = time.perf_counter() - self.started
        return False

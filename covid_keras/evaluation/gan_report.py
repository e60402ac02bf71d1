"""`evaluate_gan`: KID, class fidelity, diagnostics, TSTR/TRTR and curves over checkpoints for a GAN run against a real `data.DataSpec`, written as metrics.json, summary.md and figures."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Mapping, Sequence

import keras
import numpy as np

from covid_keras import files, plots
from covid_keras.provenance import provenance
from covid_keras.evaluation.checkpoints import list_checkpoints, load_run_generator
from covid_keras.evaluation.diagnostics import (
    CHECKERBOARD_PERIODS,
    blur_check,
    checkerboard_per_class,
    class_signal_under_augmentation,
)
from covid_keras.evaluation.embeddings import EmbeddingExtractor, build_extractor
from covid_keras.evaluation.images import (
    SPLITS,
    LabelledImages,
    balanced_labels,
    generate_images,
    load_real_splits,
)
from covid_keras.evaluation.judge import (
    ClassifierRecipe,
    class_fidelity,
    train_small_cnn,
)
from covid_keras.evaluation.kid import diversity_per_class, kid_per_class
from covid_keras.evaluation.tstr import tstr_trtr
from covid_keras.formatting import fixed, significant
from covid_keras.gan import run_dir as gan_run_dir
from covid_keras.gan import sampling


@dataclasses.dataclass
class EvaluationSettings:
    per_class: int = 1000  # generated images per class for KID, fidelity and diversity
    num_subsets: int = 100
    subset_size: int = 1000
    kid_real_split: str = "train"  # the distribution the GAN learned; more images than test
    curve_per_class: int = 250  # generated images per class at each checkpoint of the curve
    curves: bool = True
    tstr: bool = True
    tstr_classifiers: int = 1  # TSTR repeated over this many classifiers, each on its own draw
    # > 0: TSTR and TRTR classifiers (not the judge) train with random blur up to this sigma (px)
    tstr_blur_sigma: float = 0.0
    grid_columns: int = 8
    seed: int = 0
    recipe: ClassifierRecipe = dataclasses.field(default_factory=ClassifierRecipe)

    def __post_init__(self):
        if self.tstr_classifiers < 1:  # checked here, not after the minutes of KID before TSTR
            raise ValueError(f"tstr_classifiers must be at least 1, got {self.tstr_classifiers}")
        if self.tstr_blur_sigma < 0:
            raise ValueError(f"tstr_blur_sigma must be 0 (no blur) or more, got {self.tstr_blur_sigma}")


def evaluate_gan(
    generator_or_run_dir,
    real,
    *,
    class_names: Sequence[str] | None = None,
    extractor: EmbeddingExtractor | str = "auto",
    extractor_weights: str | None = None,
    judge: keras.Model | str | os.PathLike | None = None,
    settings: EvaluationSettings | None = None,
    which: str = "latest",
    out_dir: str | os.PathLike | None = None,
    image_filter: sampling.ConfidenceFilter | None = None,
    verbose: int = 1,
) -> dict:
    """Evaluate a conditional generator against real images; returns the report as a dict.

    generator_or_run_dir: a GAN run folder (its `which` checkpoint is evaluated; KID over
        training is computed when it has several checkpoints) or a generator `keras.Model`.
    real: a `data.DataSpec`, or {"train"|"validation"|"test": LabelledImages} already loaded.
    judge: a trained classifier (model or .keras path, judge contract: grey [B, S, S, 1] in
        [0, 255] -> class probabilities) or None to train the small CNN on real train.
    out_dir: when given, the JSON, Markdown summary, grids, curves and judge are written there.
    image_filter: keep only generated images it accepts (rejection sampling; its acceptance per
        class is reported), for every figure but the curves, which show the generator's own samples.
    """
    settings = settings or EvaluationSettings()
    log = print if verbose else (lambda *args: None)
    fit_verbose = 2 if verbose else 0  # one line per classifier epoch
    generator, class_names, run_dir, run_config = _resolve_generator(generator_or_run_dir, which, class_names)
    guide = run_class_guide(run_dir, run_config) if run_dir is not None else None
    image_size = int(generator.output_shape[1])
    real_splits, class_names = _resolve_real(real, image_size, class_names)
    if not isinstance(extractor, EmbeddingExtractor):
        extractor = build_extractor(extractor, extractor_weights, seed=settings.seed)
    recipe = dataclasses.replace(settings.recipe, image_size=image_size)

    log(f"generating {settings.per_class} images per class at {image_size} px"
        + (f", kept where {image_filter.name} gives their class >= {image_filter.min_confidence:g}" if image_filter else ""))
    labels = balanced_labels(len(class_names), settings.per_class)
    images, drawn = sampling.draw(generator, labels, np.random.default_rng(settings.seed), image_filter=image_filter)
    generated = LabelledImages(images, labels)
    kid_real = real_splits[settings.kid_real_split]
    log(f"features: {extractor.name} ({extractor.weights})")
    real_features = extractor.features(kid_real.images, verbose=bool(verbose))
    generated_features = extractor.features(generated.images, verbose=bool(verbose))

    result = {
        "run_dir": str(run_dir) if run_dir else None,
        "checkpoint": which if run_dir else None,
        # The run's GanConfig: tells runs that differ only in their training seed (evaluation.comparison).
        "run_config": run_config.to_dict() if run_config is not None else None,
        "run_precision": gan_run_dir.run_precision(run_dir) if run_dir else None,
        "provenance": provenance(),
        "image_size": image_size,
        "class_names": list(class_names),
        "class_guide": guide,
        "sample_filter": None if image_filter is None else {
            **image_filter.describe(),
            "acceptance_per_class": {name: settings.per_class / int(drawn[i]) for i, name in enumerate(class_names)},
        },
        "extractor": extractor.describe(),
        "real": {
            "description": "arrays" if isinstance(real, Mapping) else str(real),
            "counts": {split: real_splits[split].per_class_counts(class_names) for split in SPLITS},
            "kid_split": settings.kid_real_split,
        },
        "settings": dataclasses.asdict(settings),
        "kid": kid_per_class(
            real_features, kid_real.labels, generated_features, generated.labels, class_names,
            settings.num_subsets, settings.subset_size, settings.seed,
        ),
        "diversity": {
            "generated": diversity_per_class(generated_features, generated.images, generated.labels, class_names, settings.seed),
            "real": diversity_per_class(real_features, kid_real.images, kid_real.labels, class_names, settings.seed),
        },
    }

    log("class fidelity")
    judge_model, judge_info = _get_judge(judge, real_splits, class_names, recipe, fit_verbose)
    result["class_fidelity"] = _class_fidelity_section(judge_model, judge_info, real_splits["test"], generated, class_names)
    result["blur"] = blur_check(judge_model, real_splits["test"], generated, class_names)
    result["checkerboard"] = {
        "periods": list(CHECKERBOARD_PERIODS),
        "generated": checkerboard_per_class(generated.images, generated.labels, class_names),
        "real": checkerboard_per_class(kid_real.images, kid_real.labels, class_names),
    }
    if settings.tstr:
        log("TSTR vs TRTR")
        tstr_recipe = dataclasses.replace(recipe, blur_sigma=settings.tstr_blur_sigma)
        same_recipe = judge_info["source"] == "trained" and tstr_recipe == recipe
        result["tstr_trtr"] = _run_tstr_trtr(generator, real_splits, class_names, tstr_recipe, settings,
                                             judge_model if same_recipe else None, fit_verbose, image_filter)
    checkpoints = list_checkpoints(run_dir) if run_dir is not None else []
    if settings.curves and len(checkpoints) > 1:
        log(f"KID and class fidelity over training: {len(checkpoints)} checkpoints")
        result["curves"] = metrics_over_training(run_dir, checkpoints, real_features, kid_real.labels,
                                                 extractor, judge_model, class_names, settings, log)

    if out_dir is not None:
        write_report(result, out_dir, real_splits["test"], generated, class_names, settings.grid_columns)
        if judge_info["source"] == "trained":  # reuse it for other runs: --judge OUT/judge.keras
            judge_model.save(pathlib.Path(out_dir) / "judge.keras")
    return result


def _resolve_generator(generator_or_run_dir, which, class_names):
    """-> (generator, class names or None, run folder or None, the run's GanConfig or None)."""
    if isinstance(generator_or_run_dir, keras.Model):
        return generator_or_run_dir, class_names, None, None
    run_dir = pathlib.Path(generator_or_run_dir)
    generator, config, run_class_names = load_run_generator(run_dir, which)
    return generator, class_names or tuple(run_class_names), run_dir, config


def run_class_guide(run_dir: str | os.PathLike, config) -> dict | None:
    """The class guide the run's generator was trained against (`config`: its GanConfig, or None
    when unknown): {"weight", "loss", and class_guide.json's accuracy figures}, or None for an unguided
    run. Fidelity under a guide must say so."""
    

    if config is None or config.class_guide_weight <= 0:
        return None
    report_path = pathlib.Path(run_dir) / gan_run_dir.GUIDE_REPORT
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {"weight": float(config.class_guide_weight), "loss": config.class_guide_loss, **report}


def _resolve_real(real, image_size, class_names):
    """-> ({split: LabelledImages at image_size}, class names)."""
    if isinstance(real, Mapping):
        real_splits = {split: images.resized(image_size) for split, images in real.items()}
    else:
        class_names = _check_class_names(class_names, real)
        real_splits = load_real_splits(real, image_size)
    missing = [split for split in SPLITS if split not in real_splits]
    if missing:
        raise ValueError(f"real data lacks split(s) {missing}")
    if class_names is None:
        num_classes = int(max(s.labels.max() for s in real_splits.values())) + 1
        class_names = tuple(f"class_{i}" for i in range(num_classes))
    return real_splits, tuple(class_names)


def _class_fidelity_section(judge_model, judge_info, real_test, generated, class_names) -> dict:
    on_real = class_fidelity(judge_model, real_test.images, real_test.labels, class_names)
    on_generated = class_fidelity(judge_model, generated.images, generated.labels, class_names)
    augmented = class_signal_under_augmentation(judge_model, real_test.images, real_test.labels, class_names)
    return {
        "judge": {**judge_info, "real_test_accuracy": on_real["overall"],
                  "real_test_recall_per_class": on_real["per_class"],
                  "real_test_accuracy_after_diff_augment": augmented},
        "overall": on_generated["overall"],
        "per_class": on_generated["per_class"],
    }


def _check_class_names(generator_class_names, spec) -> tuple[str, ...]:
    """The real data's class names; they must be the generator's when it has some."""
    from covid_keras import data

    real_names = tuple(data.class_names(spec))
    if generator_class_names is not None and tuple(generator_class_names) != real_names:
        raise ValueError(
            f"the generator's classes {list(generator_class_names)} differ from the real data's "
            f"{list(real_names)} ({spec.config}): labels would not match"
        )
    return real_names


def _get_judge(judge, real_splits, class_names, recipe, verbose) -> tuple[keras.Model, dict]:
    if isinstance(judge, keras.Model):
        return judge, {"source": "given model"}
    if judge is not None:
        if not pathlib.Path(judge).is_file():
            raise FileNotFoundError(f"judge classifier not found: {judge}")
        return keras.models.load_model(judge), {"source": str(judge)}
    train, val = real_splits["train"], real_splits["validation"]
    model, fit = train_small_cnn(train.images, train.labels, val.images, val.labels,
                                  len(class_names), recipe, verbose)
    return model, {"source": "trained", "recipe": dataclasses.asdict(recipe), "fit": fit}


def _run_tstr_trtr(generator, real_splits, class_names, recipe, settings, trtr_model, verbose, image_filter) -> dict:
    """Per TSTR classifier: a synthetic train set as large as the real one, per class, and a
    quarter more as its validation, drawn with its own noise (classifier 0: the seeds that one
    classifier always used, so earlier figures reproduce)."""
    num_classes = len(class_names)
    counts = np.bincount(real_splits["train"].labels, minlength=num_classes)
    train_labels = np.repeat(np.arange(num_classes, dtype=np.int32), counts)
    val_labels = np.repeat(np.arange(num_classes, dtype=np.int32), np.maximum(counts // 4, 2))
    synthetic_sets = []
    for index in range(settings.tstr_classifiers):
        train_seed, val_seed = ((settings.seed + 1, settings.seed + 2) if index == 0
                                else ((settings.seed, index, 1), (settings.seed, index, 2)))
        synthetic_sets.append((
            (generate_images(generator, train_labels, train_seed, image_filter=image_filter), train_labels),
            (generate_images(generator, val_labels, val_seed, image_filter=image_filter), val_labels),
        ))
    as_pair = lambda s: (s.images, s.labels)  # noqa: E731
    result, _ = tstr_trtr(
        synthetic_sets, as_pair(real_splits["train"]), as_pair(real_splits["validation"]),
        as_pair(real_splits["test"]), class_names, recipe, trtr_model, verbose,
    )
    return result


def metrics_over_training(
    run_dir, checkpoints, real_features, real_labels, extractor, judge, class_names, settings, log
) -> list:
    """KID and the judge's class fidelity per class at every checkpoint, on fewer images per
    class than the main figures: whether more steps make the samples more real and more
    class-faithful."""
    labels = balanced_labels(len(class_names), settings.curve_per_class)
    curve = []
    for checkpoint in checkpoints:
        log(f"checkpoint epoch {checkpoint.epoch}: {checkpoint.path.name}")
        generator, _, _ = load_run_generator(run_dir, checkpoint)
        images = generate_images(generator, labels, seed=settings.seed)
        kid = kid_per_class(real_features, real_labels, extractor.features(images), labels, class_names,
                            settings.num_subsets, settings.subset_size, settings.seed)
        curve.append({"epoch": checkpoint.epoch, "checkpoint": str(checkpoint.path), **kid,
                      "class_fidelity": class_fidelity(judge, images, labels, class_names),
                      "checkerboard": checkerboard_per_class(images, labels, class_names)})
    return curve




def write_report(
    result: dict,
    out_dir: str | os.PathLike,
    real: LabelledImages | None = None,
    generated: LabelledImages | None = None,
    class_names: Sequence[str] | None = None,
    grid_columns: int = 8,
) -> dict:
    """metrics.json, summary.md, grid_<class>.png (real row above generated row), and
    kid_over_training.png and fidelity_over_training.png when the result has curves. -> {kind: path}."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "metrics.json", "markdown": out_dir / "summary.md"}
    paths["json"].write_text(json.dumps(result, indent=2, default=files.json_default) + "\n")
    paths["markdown"].write_text(markdown_summary(result))
    if real is not None and generated is not None:
        for label, name in enumerate(class_names or result["class_names"]):
            path = save_real_vs_generated_grid(real, generated, label, name, out_dir, grid_columns)
            if path:
                paths[f"grid_{name}"] = pathlib.Path(path)
    if result.get("curves"):
        paths["curves"] = pathlib.Path(save_kid_curve(result["curves"], result["class_names"],
                                                      out_dir / "kid_over_training.png", result["extractor"]["name"]))
        paths["fidelity_curves"] = pathlib.Path(save_fidelity_curve(
            result["curves"], result["class_names"], out_dir / "fidelity_over_training.png",
            result["class_fidelity"]["judge"]["real_test_accuracy"]))
    return {k: str(v) for k, v in paths.items()}


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")


def save_real_vs_generated_grid(real, generated, label, name, out_dir, columns=8) -> str | None:
    real_images = real.images[real.labels == label][:columns]
    fake_images = generated.images[generated.labels == label][:columns]
    columns = min(len(real_images), len(fake_images))
    if columns == 0:
        return None
    grid = np.stack([real_images[:columns], fake_images[:columns]])
    return plots.save_image_grid(
        grid, pathlib.Path(out_dir) / f"grid_{_file_name(name)}.png",
        row_labels=[f"{name} real", f"{name} generated"], title=f"{name}: real (top) vs generated (bottom)",
    )


def save_kid_curve(curves: list, class_names: Sequence[str], path, extractor_name: str) -> str:
    epochs = [point["epoch"] for point in curves]
    series = {}
    for name in class_names:
        points = [point["per_class"].get(name) for point in curves]
        if all(p is not None for p in points):
            series[name] = ([p["mean"] for p in points], [p["std"] for p in points])
    return plots.save_metric_curves(
        epochs, series, path, xlabel="epoch", ylabel=f"KID ({extractor_name} features)",
        title="KID, generated vs real, over training (band: ± std over subsets)",
    )


def save_fidelity_curve(curves: list, class_names: Sequence[str], path, judge_accuracy: float) -> str:
    """Class fidelity per class over training, with the judge's real-test accuracy as the line to reach."""
    epochs = [point["epoch"] for point in curves]
    series = {"overall": ([point["class_fidelity"]["overall"] for point in curves], None)}
    for name in class_names:
        values = [point["class_fidelity"]["per_class"].get(name) for point in curves]
        if all(v is not None for v in values):
            series[name] = (values, None)
    series[f"judge on real test ({judge_accuracy:.3f})"] = ([judge_accuracy] * len(epochs), None)
    return plots.save_metric_curves(
        epochs, series, path, xlabel="epoch", ylabel="share labelled as the conditioning class",
        title="Class fidelity over training (the judge's labels of generated images)",
    )


def markdown_summary(result: dict) -> str:
    """A human-readable summary of an `evaluate_gan` result."""
    lines = (_summary_header(result) + _summary_table(result) + _blur_lines(result.get("blur"))
             + _checkerboard_lines(result.get("checkerboard")))
    if "tstr_trtr" in result:
        t = result["tstr_trtr"]
        lines += [
            "## TSTR vs TRTR (same small CNN, tested on the real test split)",
            "",
            f"- TSTR (trained on {t['n_synthetic_train']} synthetic images{_over_classifiers(t)}): "
            f"**{fixed(t['tstr_accuracy'])}**{_plus_minus(t.get('tstr_accuracy_sd'))} "
            f"(AUC {fixed(t.get('tstr_auc'))}{_plus_minus(t.get('tstr_auc_sd'))})",
            f"- TRTR (trained on {t['n_real_train']} real images): **{fixed(t['trtr_accuracy'])}** "
            f"(AUC {fixed(t.get('trtr_auc'))})",
            "- accuracy needs the classifier's threshold in the right place; AUC asks only whether it ranks "
            "real images of each class above the others",
        ]
        if t.get("tstr_real_validation_accuracy") is not None:
            lines.append(f"- TSTR on the real validation split (to choose settings by, not the test split): "
                         f"{fixed(t['tstr_real_validation_accuracy'])} (AUC {fixed(t.get('tstr_real_validation_auc'))})")
        blur_sigma = t.get("recipe", {}).get("blur_sigma", 0.0)
        if blur_sigma > 0:
            lines.append(f"- both classifiers trained with random Gaussian blur of sigma up to {blur_sigma:g} px "
                         "on their training images (the judge without)")
        lines.append("")
    if result.get("curves"):
        names = result["class_names"]
        periods = " / ".join(str(p) for p in CHECKERBOARD_PERIODS)
        lines += ["## Over training (KID: mean over classes)", "",
                  "| epoch | KID | class fidelity | " + " | ".join(f"{n}: checkerboard ‰, period {periods} px" for n in names) + " |",
                  "|---|---|---|" + "---|" * len(names)]
        for point in result["curves"]:
            grids = [" / ".join(_permille(point.get("checkerboard", {}).get(n, {}).get(str(p))) for p in CHECKERBOARD_PERIODS)
                     for n in names]
            lines.append(f"| {point['epoch']} | {significant(point['mean_over_classes'])} | "
                         f"{fixed(point['class_fidelity']['overall'])} | " + " | ".join(grids) + " |")
        lines += ["", "![KID over training](kid_over_training.png)",
                  "![Class fidelity over training](fidelity_over_training.png)", ""]
    lines += [f"![{name}](grid_{_file_name(name)}.png)" for name in result["class_names"]] + [""]
    return "\n".join(lines)


def _over_classifiers(tstr: dict) -> str:
    count = tstr.get("n_tstr_classifiers", 1)
    return "" if count == 1 else f"; mean ± standard deviation over {count} classifiers, each on its own draw"


def _plus_minus(sd) -> str:
    return "" if sd is None else f" ± {fixed(sd)}"


def _blur_lines(blur: dict | None) -> list[str]:
    if not blur or not blur["per_class"]:
        return []
    lines = [
        "## Sharpness and the judge",
        "",
        "Sharpness (mean band-pass detail at 1-2 px) of generated and real test images; the Gaussian blur that makes real images "
        "as soft as the generated ones; the judge's recall on real images blurred that much. A judge "
        "that reads blur as one class labels blurry samples of every class that way.",
        "",
        "| class | sharpness gen / real | blur-equivalent sigma (px) | judge recall on real images at that blur |",
        "|---|---|---|---|",
    ]
    for name, c in blur["per_class"].items():
        lines.append(f"| {name} | {fixed(c['generated_sharpness'])} / {fixed(c['real_sharpness'])} "
                     f"| {fixed(c['blur_equivalent_sigma'])} | {fixed(c['judge_recall_at_equivalent_blur'])} |")
    return lines + [""]


def _checkerboard_lines(checkerboard: dict | None) -> list[str]:
    if not checkerboard or not checkerboard["generated"]:
        return []
    periods = checkerboard["periods"]
    lines = [
        "## Checkerboard",
        "",
        "Share of the images' power (per mille) at the periods a strided transposed convolution paints, "
        "generated / real. A grid in one class's samples only is a class cue that no real image has.",
        "",
        "| class | " + " | ".join(f"period {p} px, gen / real (‰)" for p in periods) + " |",
        "|---|" + "---|" * len(periods),
    ]
    for name, generated in checkerboard["generated"].items():
        real = checkerboard["real"].get(name, {})
        cells = [f"{_permille(generated.get(str(p)))} / {_permille(real.get(str(p)))}" for p in periods]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _permille(share) -> str:
    return "n/a" if share is None else f"{1000 * share:.2f}"


def _summary_header(result: dict) -> list[str]:
    ext = result["extractor"]
    judge = result["class_fidelity"]["judge"]
    lines = [
        "# GAN evaluation",
        "",
        f"- run: `{result['run_dir']}` (checkpoint {result['checkpoint']}), image size {result['image_size']} px",
        f"- real data: {result['real']['description']}; KID and diversity against the "
        f"`{result['real']['kid_split']}` split",
        f"- feature extractor: **{ext['name']}**, weights `{ext['weights']}`"
        f"{'' if ext['exact_weights'] else ' (NOT exact ImageNet weights)'}; {ext['feature_dim']}-d at "
        f"{ext['input_size']} px. {ext['note']}",
        f"- judge: {judge['source']}; accuracy on the real test split **{fixed(judge['real_test_accuracy'])}**",
    ]
    augmented = judge.get("real_test_accuracy_after_diff_augment")
    if augmented:
        after = ", ".join(f"{name} {fixed(value)}" for name, value in augmented.items() if name != "none")
        lines.append(f"- judge accuracy on real test images after DiffAugment (what a discriminator sees): {after}; "
                     "a policy near chance hides the classes from a conditional discriminator")
    guide = result.get("class_guide")
    if guide:
        from covid_keras.gan.guide import guide_accuracy

        accuracy, split = guide_accuracy(guide)
        lines.append(
            f"- the generator was trained against a class guide ({guide['loss'].replace('_', ' ')}, "
            f"weight {guide['weight']:g}; accuracy "
            f"{fixed(accuracy)} on real {split} images): a different network from the judge, trained "
            "apart from it. TSTR is the check that no classifier's quirks can pass"
        )
    sample_filter = result.get("sample_filter")
    if sample_filter:
        acceptance = ", ".join(f"{name} {fixed(value)}" for name, value in sample_filter["acceptance_per_class"].items())
        lines.append(
            f"- **filtered samples**: every figure but the curves is of generated images kept only where "
            f"{sample_filter['classifier']} gives their class at least {sample_filter['min_confidence']:g} "
            f"(acceptance {acceptance}): the generator and a filter, not the generator alone"
        )
    chance = 1.0 / len(result["class_names"])
    if judge["real_test_accuracy"] < chance + 0.1:
        lines.append(f"- **WARNING: the judge is near chance ({chance:.2f}) on real images: "
                     "its class-fidelity figures say nothing.**")
    return lines + [""]


def _summary_table(result: dict) -> list[str]:
    fidelity = result["class_fidelity"]
    judge = fidelity["judge"]
    lines = [
        "KID: mean ± std over random subsets (comparable only under the same extractor). Fidelity: "
        "share of generated images the judge labels as their conditioning class, beside the judge's "
        "recall on real test images of that class. Diversity: mean pairwise feature distance and "
        "1 - SSIM within the class, generated / real; far below real means mode collapse.",
        "",
        "| class | KID | fidelity (generated) | judge recall (real test) | feature distance gen / real | 1-SSIM gen / real |",
        "|---|---|---|---|---|---|",
    ]
    for name in result["class_names"]:
        kid = result["kid"]["per_class"].get(name) or {}
        gen = result["diversity"]["generated"].get(name, {})
        real = result["diversity"]["real"].get(name, {})
        lines.append(
            f"| {name} | {significant(kid.get('mean'))} ± {significant(kid.get('std'))} "
            f"| {fixed(fidelity['per_class'].get(name))} | {fixed(judge['real_test_recall_per_class'].get(name))} "
            f"| {fixed(gen.get('feature_distance'))} / {fixed(real.get('feature_distance'))} "
            f"| {fixed(gen.get('pixel_1_minus_ssim'))} / {fixed(real.get('pixel_1_minus_ssim'))} |"
        )
    lines += [
        f"| **all** | {significant(result['kid']['mean_over_classes'])} (mean over classes) "
        f"| {fixed(fidelity['overall'])} | {fixed(judge['real_test_accuracy'])} (accuracy) | | |",
        "",
    ]
    return lines

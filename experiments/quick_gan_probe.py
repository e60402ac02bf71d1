#!/usr/bin/env python
"""Probe: which GAN settings learn on `phantom_small` in about two minutes of training (issue #46)?

Each candidate (a preset with overrides) trains for a number of generator steps (or a wall-time
budget: on shared cores the steps are the fair comparison), then is scored on the
VALIDATION split only (the test split is never loaded): the small-CNN judge (trained on real train,
early-stopped on validation) labels 100 samples per class (class fidelity) and real validation
images (its own accuracy); TSTR trains the same CNN on samples and tests it on real validation,
beside TRTR; diversity is the mean pairwise feature distance of samples over that of real
train images (the `auto` extractor); "closest pair" is the smallest mean absolute pixel difference
(0-255) between two of a class's first 16 samples, against the same for 16 real train images.

    python experiments/quick_gan_probe.py --steps 300 --out runs/quick-gan-probe
    python experiments/quick_gan_probe.py --budget 120 --candidate stable32 --out runs/quick-gan-probe
    python experiments/quick_gan_probe.py --classifier-sizes 32 64 --out runs/quick-gan-probe

Writes OUT/<candidate>/ (the run and metrics.json) and OUT/probe.json; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# preset, overrides. Small epochs (320 images = 10 steps of 32) so the budget stops near its mark.
CANDIDATES = {
    # What --quick used before: `stable` at 64 px.
    "stable64": ("stable", dict(image_size=64)),
    # `stable` at 32 px with one generator block fewer: about four times the steps in the budget.
    "stable32": ("stable", dict(image_size=32, generator_filters=(256, 128, 64),
                                discriminator_filters=(32, 64, 128, 256))),
    # The same with guided's mode seeking and resize upsampling, against samples that ignore their noise.
    "stable32_ms": ("stable", dict(image_size=32, generator_filters=(256, 128, 64),
                                   discriminator_filters=(32, 64, 128, 256),
                                   mode_seeking_weight=1.0, generator_upsampling="resize")),
    # `guided` at 32 px, its guide on from the first epoch (the budget is far shorter than 15 epochs).
    "guided32": ("guided", dict(image_size=32, generator_filters=(256, 128, 64),
                                discriminator_filters=(32, 64, 128, 256), class_guide_from_epoch=0,
                                class_guide_ramp_epochs=2)),
    # One GAN per class at 32 px: a class's samples are scored only against that class.
    "per_class32": ("per_class", dict(image_size=32, generator_filters=(256, 128, 64),
                                      discriminator_filters=(32, 64, 128, 256))),
    # `stable32` with half the filters and twice the learning rate: more, cheaper steps.
    "small32": ("stable", dict(image_size=32, generator_filters=(128, 64, 32),
                               discriminator_filters=(16, 32, 64, 128), learning_rate=2e-4)),
    # The same with mode seeking and resize upsampling.
    "small32_ms": ("stable", dict(image_size=32, generator_filters=(128, 64, 32),
                                  discriminator_filters=(16, 32, 64, 128), learning_rate=2e-4,
                                  mode_seeking_weight=1.0, generator_upsampling="resize")),
    # `guided` (class guide by feature matching, mode seeking, resize upsampling) with small32's
    # networks and rate, its guide on from the first step.
    "guided_small32": ("guided", dict(image_size=32, generator_filters=(128, 64, 32),
                                      discriminator_filters=(16, 32, 64, 128), learning_rate=2e-4,
                                      class_guide_from_epoch=0, class_guide_ramp_epochs=0)),
    # guided_small32 with the guide's cross-entropy instead of feature matching (weight 10): a
    # stronger pull towards samples the guide labels right.
    "guided_ce_small32": ("guided", dict(image_size=32, generator_filters=(128, 64, 32),
                                         discriminator_filters=(16, 32, 64, 128), learning_rate=2e-4,
                                         class_guide_from_epoch=0, class_guide_ramp_epochs=0,
                                         class_guide_loss="cross_entropy", class_guide_weight=10.0)),
    # One small32 GAN per class (each gets the steps of one conditional run).
    "per_class_small32": ("per_class", dict(image_size=32, generator_filters=(128, 64, 32),
                                            discriminator_filters=(16, 32, 64, 128), learning_rate=2e-4)),
    # `guided` at 48 px (a middle size).
    "guided48": ("guided", dict(image_size=48, generator_filters=(256, 128, 64),
                                discriminator_filters=(32, 64, 128, 256), class_guide_from_epoch=0,
                                class_guide_ramp_epochs=2)),
}


def closest_pair(images) -> float:
    import numpy as np

    x = images.reshape(len(images), -1).astype(np.float32)
    distances = np.abs(x[:, None, :] - x[None, :, :]).mean(-1)
    np.fill_diagonal(distances, np.inf)
    return float(distances.min())


def probe(name: str, budget_s: float | None, steps: int | None, batch_size: int, out: pathlib.Path, seed: int,
          data_dir: str | None) -> dict:
    import keras
    import numpy as np

    from covid_keras import data
    from covid_keras.evaluation import gan_report
    from covid_keras.evaluation.images import load_real_splits
    from covid_keras.gan import presets
    from covid_keras.gan import training as gan_training

    preset, overrides = CANDIDATES[name]
    epochs = max(1, steps // 10) if steps else 1000
    config = presets.from_preset(preset, **overrides, batch_size=batch_size, epochs=epochs,
                                 epoch_images=10 * batch_size, sample_every=1000, checkpoint_every=1000, seed=seed)
    spec = data.DataSpec.parse("phantom_small", None, data_dir)
    data.prepare(spec)
    run_dir = out / name
    started = time.perf_counter()
    result = gan_training.train_gan(config, spec, run_dir, verbose=0, time_budget_s=budget_s)
    train_s = time.perf_counter() - started
    steps = result.epochs_done * (config.epoch_images // config.batch_size) * (2 if config.class_separate else 1)
    keras.backend.clear_session()

    real = load_real_splits(spec, config.image_size, ("train", "validation"))
    splits = {"train": real["train"], "validation": real["validation"], "test": real["validation"]}
    settings = gan_report.EvaluationSettings(per_class=100, num_subsets=20, subset_size=50, curves=False)
    metrics = gan_report.evaluate_gan(run_dir, splits, settings=settings, out_dir=run_dir / "evaluation", verbose=0)
    generator, _, names = gan_training.load_generator(run_dir)
    from covid_keras.evaluation.images import generate_images

    labels = np.repeat(np.arange(len(names)), 16).astype(np.int32)
    samples = generate_images(generator, labels, seed=seed)
    diversity = metrics["diversity"]
    row = {
        "candidate": name, "preset": preset, "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in overrides.items()},
        "batch_size": batch_size, "seed": seed, "train_s": round(train_s, 1), "epochs": result.epochs_done,
        "generator_steps": steps,
        "judge_on_real_validation": metrics["class_fidelity"]["judge"]["real_test_accuracy"],
        "fidelity": metrics["class_fidelity"]["overall"],
        "fidelity_per_class": metrics["class_fidelity"]["per_class"],
        "tstr_on_validation": metrics["tstr_trtr"]["tstr_accuracy"],
        "trtr_on_validation": metrics["tstr_trtr"]["trtr_accuracy"],
        "diversity_ratio": {c: diversity["generated"][c]["feature_distance"] / diversity["real"][c]["feature_distance"]
                            for c in names},
        "closest_pair_16": {c: closest_pair(samples[labels == i]) for i, c in enumerate(names)},
        "closest_pair_16_real": {c: closest_pair(real["train"].images[real["train"].labels == i][:16])
                                 for i, c in enumerate(names)},
        "kid": {c: k.get("mean") for c, k in metrics["kid"]["per_class"].items()},
    }
    (run_dir / "probe.json").write_text(json.dumps(row, indent=2) + "\n")
    keras.backend.clear_session()
    return row


def classifier_sizes(sizes, seeds, data_dir) -> list[dict]:
    """The offline classifier (the judge's small CNN from scratch) on real train, scored on real
    validation, per image size and seed: the size it reads phantoms at."""
    import keras
    import numpy as np

    from covid_keras import data
    from covid_keras.evaluation.images import load_real_splits
    from covid_keras.evaluation.judge import ClassifierRecipe, class_fidelity, train_small_cnn

    spec = data.DataSpec.parse("phantom_small", None, data_dir)
    data.prepare(spec)
    rows = []
    for size in sizes:
        real = load_real_splits(spec, size, ("train", "validation"))
        train, validation = real["train"], real["validation"]
        accuracies = []
        for seed in seeds:
            model, _ = train_small_cnn(train.images, train.labels, validation.images, validation.labels, 2,
                                       ClassifierRecipe(image_size=size, seed=seed))
            accuracies.append(class_fidelity(model, validation.images, validation.labels, ("Normal", "COVID"))["overall"])
            keras.backend.clear_session()
        rows.append({"image_size": size, "validation_accuracy": accuracies,
                     "mean": float(np.mean(accuracies)), "sd": float(np.std(accuracies, ddof=1))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", action="append", choices=sorted(CANDIDATES), default=None)
    parser.add_argument("--budget", type=float, default=None, help="GAN training seconds per candidate")
    parser.add_argument("--steps", type=int, default=None,
                        help="GAN generator steps per candidate instead (the same work whatever the load)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", default=None, help="TFDS data dir (default: TFDS's own)")
    parser.add_argument("--classifier-sizes", type=int, nargs="+", default=None,
                        help="instead: the offline classifier's validation accuracy at these image sizes (3 seeds)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.classifier_sizes:
        rows = classifier_sizes(args.classifier_sizes, (0, 1, 2), args.data_dir)
        (out / "classifier_sizes.json").write_text(json.dumps(rows, indent=2) + "\n")
        return 0
    rows = []
    for name in args.candidate or list(CANDIDATES):
        load = os.getloadavg()[0]
        row = probe(name, args.budget, args.steps, args.batch_size, out, args.seed, args.data_dir)
        row["load_average_before"] = load
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(out / "probe.json", "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print("| candidate | batch | steps | train s | judge (val) | fidelity | TSTR / TRTR (val) | diversity N / C | closest pair N / C (real) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d, c, cr = r["diversity_ratio"], r["closest_pair_16"], r["closest_pair_16_real"]
        print(f"| {r['candidate']} | {r['batch_size']} | {r['generator_steps']} | {r['train_s']:.0f} | "
              f"{r['judge_on_real_validation']:.3f} | {r['fidelity']:.3f} | {r['tstr_on_validation']:.3f} / "
              f"{r['trtr_on_validation']:.3f} | {d['Normal']:.2f} / {d['COVID']:.2f} | "
              f"{c['Normal']:.1f} / {c['COVID']:.1f} ({cr['Normal']:.1f} / {cr['COVID']:.1f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

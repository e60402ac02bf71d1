#!/usr/bin/env python3
"""Does bfloat16 change a classifier's accuracy? The same classifiers on float32 and on
mixed_bfloat16 backbone features, seed by seed (issue #26).

    python -m bench.precision_accuracy --data radiography --data-path ../shared/data/radiography \\
        --weights-dir /work/main/weights --feature-cache runs/fcache --out runs/precision-accuracy
    python -m bench.precision_accuracy --data phantom_small --weights-dir none --image-size 32 --epochs 1 \\
        --seeds 0,1 --out /tmp/precision-smoke                    # the plumbing only, in a minute

Arms (`ARMS`): VGG16 at 224 px with --mirror and ResNet50 at 150 px, each with the settings of
docs/results.md's best rows and `keep_epoch` best_validation. Every arm trains once per seed and
precision through `classifier.train_classifier`, as `covid-keras train-classifier --precision`
does; the features of each precision are computed once (the cache) and shared by the seeds, so a
seed pairs the two precisions on the same head initialisation and data order.

Writes OUT/results.json and OUT/results.md: test accuracy and AUC per seed side by side, the mean
per-seed difference (bfloat16 - float32) with its 95 % t interval, and the run-to-run sd of each
precision over seeds. A difference well inside the run-to-run sd is "unchanged". A non-empty OUT
is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import time

import numpy as np

from bench.feature_precision import machine
from covid_keras import classifier, cli, data, formatting
from covid_keras.evaluation import intervals

PRECISIONS = ("float32", "mixed_bfloat16")
METRICS = ("accuracy", "auc")
# docs/results.md, "Classifiers": VGG16's best row (224 px, mirror) and ResNet50's best_validation row.
ARMS = {
    "vgg16_224_mirror": dict(backbone="vgg16", image_size=224, learning_rate=1e-4, epochs=12, batch_size=32,
                             mirror=True, keep_epoch="best_validation"),
    "resnet50_150": dict(backbone="resnet50", image_size=150, learning_rate=1e-4, epochs=6,
                         keep_epoch="best_validation"),
}


def arm_configs(arm: str, weights: str | None, seeds, image_size: int | None, epochs: int | None):
    """precision -> seed -> ClassifierConfig for one arm; `image_size` and `epochs` override the arm's (smoke runs)."""
    values = dict(ARMS[arm], weights=weights)
    if image_size is not None:
        values["image_size"] = image_size
    if epochs is not None:
        values["epochs"] = epochs
    return {precision: {seed: classifier.ClassifierConfig(**values, seed=seed, feature_precision=precision)
                        for seed in seeds} for precision in PRECISIONS}


def compare(per_seed: dict) -> dict:
    """{precision: {seed: {"accuracy", "auc"}}} -> per metric: the paired difference and each precision's sd."""
    seeds = sorted(per_seed["float32"])
    summary = {}
    for metric in METRICS:
        values = {p: [per_seed[p][s][metric] for s in seeds] for p in PRECISIONS}
        summary[metric] = {
            "mean": {p: float(np.mean(v)) for p, v in values.items()},
            "run_to_run_sd": {p: float(np.std(v, ddof=1)) if len(v) > 1 else None for p, v in values.items()},
            "difference": (intervals.paired_difference(values["mixed_bfloat16"], values["float32"])
                           if len(seeds) > 1 else {"mean": values["mixed_bfloat16"][0] - values["float32"][0]}),
        }
    return summary


def markdown(report: dict) -> str:
    lines = [f"# Test accuracy and AUC on float32 vs mixed_bfloat16 features ({report['data']['config']})", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, flags "
             + ", ".join(f for f, on in report["machine"]["flags"].items() if on)
             + f"; load average (1 min) {report['load_average_1min']['before']} before, "
               f"{report['load_average_1min']['after']} after.", ""]
    for arm, result in report["arms"].items():
        per_seed = result["seeds"]
        lines += [f"## {arm}", "", f"`{json.dumps(ARMS[arm])}`, weights {result['weights']}, "
                  f"image size {result['image_size']}, epochs {result['epochs']}", "",
                  "| seed | accuracy float32 | accuracy bfloat16 | difference | AUC float32 | AUC bfloat16 | difference |",
                  "|---|---|---|---|---|---|---|"]
        for seed in sorted(per_seed["float32"], key=int):
            cells = []
            for metric in METRICS:
                a, b = per_seed["float32"][seed][metric], per_seed["mixed_bfloat16"][seed][metric]
                cells += [formatting.fixed(a), formatting.fixed(b), f"{b - a:+.3f}"]
            lines.append(f"| {seed} | " + " | ".join(cells) + " |")
        summary = result["summary"]
        for row, pick in (("mean", lambda m: summary[m]["mean"]), ("run-to-run sd", lambda m: summary[m]["run_to_run_sd"])):
            cells = []
            for metric in METRICS:
                values = pick(metric)
                difference = summary[metric]["difference"]["mean"] if row == "mean" else summary[metric]["difference"].get("sd")
                shown = (f"{difference:+.3f}" if row == "mean" else formatting.fixed(difference)) \
                    if difference is not None else "n/a"
                cells += [formatting.fixed(values["float32"]), formatting.fixed(values["mixed_bfloat16"]), shown]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
        for metric in METRICS:
            difference = summary[metric]["difference"]
            if "low" in difference:
                lines.append(f"- {metric}: bfloat16 - float32 = {difference['mean']:+.4f}, 95 % t interval over "
                             f"{difference['n_seeds']} seeds [{difference['low']:+.4f}, {difference['high']:+.4f}] "
                             f"({difference['verdict']}); run-to-run sd float32 "
                             f"{formatting.fixed(summary[metric]['run_to_run_sd']['float32'], 4)}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="radiography", choices=data.CONFIGS)
    parser.add_argument("--data-path", help="radiography: the Kaggle download; folder: the ROOT/<class>/ tree")
    parser.add_argument("--data-dir", help="TFDS data dir (default: TFDS's own)")
    parser.add_argument("--weights-dir", required=True, help="the backbones' local ImageNet weights, or none")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--image-size", type=cli.positive_int, help="override every arm's size (smoke runs)")
    parser.add_argument("--epochs", type=cli.positive_int, help="override every arm's epochs (smoke runs)")
    parser.add_argument("--feature-cache", help="folder of cached features (float32 ones of earlier runs are reused)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"--arms: unknown {unknown}; choose from {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    weights = None if args.weights_dir.lower() == "none" else args.weights_dir
    out = cli.OutputFolder(args.out, args.overwrite, inputs={"--data-path": args.data_path,
                                                             "--feature-cache": args.feature_cache})
    spec = data.DataSpec.parse(args.data, args.data_path, args.data_dir)
    splits = {name: data.load_split(spec, name) for name in classifier.SPLITS}
    cache = classifier.FeatureCache(args.feature_cache)  # in memory at least: features once per precision

    load_before, started = os.getloadavg()[0], time.perf_counter()
    report = {"data": {"config": spec.config, "path": spec.path}, "seeds": seeds, "arms": {}}
    for arm in arms:
        configs = arm_configs(arm, weights, seeds, args.image_size, args.epochs)
        per_seed = {precision: {} for precision in PRECISIONS}
        for precision, by_seed in configs.items():
            for seed, config in by_seed.items():
                trained = classifier.train_classifier(config, splits, cache=cache, verbose=0,
                                                      precision_reason="bench.precision_accuracy")
                test = trained.metrics["test"]
                per_seed[precision][seed] = {"accuracy": test["accuracy"], "auc": test["auc"],
                                             "kept_epoch": trained.history.get("kept_epoch")}
                print(f"{arm} {precision} seed {seed}: test accuracy {test['accuracy']:.3f}, AUC {test['auc']:.3f}",
                      flush=True)
        some = configs["float32"][seeds[0]]
        report["arms"][arm] = {"weights": args.weights_dir, "image_size": some.image_size, "epochs": some.epochs,
                               "config": {k: v for k, v in dataclasses.asdict(some).items()
                                          if k not in ("seed", "feature_precision")},
                               "seeds": per_seed, "summary": compare(per_seed)}
    report["machine"] = machine()
    report["load_average_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    report["seconds"] = round(time.perf_counter() - started, 1)
    report = json.loads(json.dumps(report))  # seeds become the JSON keys they are in the file
    with out.writing() as folder:
        folder = pathlib.Path(folder)
        (folder / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        (folder / "results.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

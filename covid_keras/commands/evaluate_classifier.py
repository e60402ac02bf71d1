"""Print the metrics of a saved classifier on a labelled dataset as one JSON object.

    python scripts/evaluate_classifier.py --model runs/clf_vgg16 --data folder --data-path path/to/ROOT
    python scripts/evaluate_classifier.py --model runs/clf_vgg16 --data radiography --data-path ../shared/data/radiography \\
        --split test --report reports/clf_vgg16-test --manifest ../shared/data/radiography/manifest.csv \\
        --source-column source_repo

By default every image counts: all splits of the data config (train+validation+test), so
a folder is evaluated whole. Accuracy, AUC, sensitivity and specificity come with 95 % intervals,
at 0.5 on the raw P(COVID) and under the classifier's operating rule (temperature and threshold
chosen on validation), with the calibration error before and after. A folder with one class only
gets that class's recall and the P(COVID) distribution instead. --report DIR adds Grad-CAM: where
the maps put their mass (image border, top corners: the usual shortcuts), grids of the most
confident images of each class with their maps, and the reliability diagram. --manifest adds a
breakdown by source. --shortcuts (with --report) adds the shortcut audit: the same images with
the top corners, the border, text and markers, the lung fields or everything outside them hidden,
the change in AUC and accuracy for each with paired intervals, a verdict (does the model read the
source or the lungs?) and occlusion maps beside Grad-CAM. Progress goes to stderr; stdout holds only the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from covid_keras import choices, cli, files


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a classifier folder written by train_classifier.py")
    # --data CONFIG [PATH]: the path may also follow the config directly (this command's older form).
    parser.add_argument("--data", required=True, nargs="+", metavar=("CONFIG", "PATH"),
                        help="the data: a covid_xray config (e.g. --data folder --data-path ROOT)")
    parser.add_argument("--data-path", "--manual-dir", dest="data_path", default=None,
                        help="radiography: the Kaggle download (zip or folder); folder: the ROOT/<class>/ tree")
    parser.add_argument("--data-dir", help="TFDS data dir for the prepared data (default: TFDS's own)")
    parser.add_argument("--split", default=choices.ALL_SPLITS,
                        help=f"TFDS split expression (default: {choices.ALL_SPLITS}, i.e. every image)")
    parser.add_argument("--report", metavar="DIR",
                        help="write the Grad-CAM shortcut report, heatmap grids and reliability diagram here")
    parser.add_argument("--shortcuts", action="store_true",
                        help="with --report: the shortcut audit, the same images scored with the top corners, the "
                             "border, text and markers, the lungs or everything but the lungs hidden (audit.md), and "
                             "occlusion maps beside Grad-CAM")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --report folder")
    parser.add_argument("--manifest", help="a CSV with a `file` column and a source column: metrics per source")
    parser.add_argument("--source-column", default="source", help="the manifest's source column (default: %(default)s)")
    # --data's list holds the config name too: only existing paths are compared, and no config is one.
    parser.declare_paths(inputs=("--model", "--data", "--data-path", "--data-dir", "--manifest"), outputs=("--report",))
    args = parser.parse_args(argv)
    if len(args.data) > 2 or (len(args.data) == 2 and args.data_path):
        parser.error("--data takes a config and at most one path (or give the path as --data-path)")
    if args.data[0] not in choices.DATA_CONFIGS:
        parser.error(f"--data: unknown config {args.data[0]!r}; choose one of {', '.join(choices.DATA_CONFIGS)}")
    if args.shortcuts and not args.report:
        parser.error("--shortcuts writes its audit into the --report folder: give --report DIR")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from covid_keras import classifier, data
    from covid_keras.classifier import assessment, audit

    config, path = args.data[0], (args.data[1] if len(args.data) == 2 else args.data_path)
    # Everything the user named is checked before the data is read or the model runs.
    classifier.load_classifier_metadata(args.model)
    report = cli.OutputFolder(args.report, args.overwrite, flag="--report") if args.report else None
    sources = None
    if args.manifest:
        try:
            sources = assessment.read_sources(args.manifest, args.source_column)
        except OSError as error:
            raise cli.UsageError(f"--manifest {args.manifest}: {error.strerror}") from None
    with contextlib.redirect_stdout(sys.stderr):  # keep progress bars off the JSON
        spec = data.DataSpec.parse(config, path, args.data_dir)
        examples = data.load_split(spec, args.split)
        model, metadata = classifier.load_classifier(args.model)
        rule = classifier.OperatingRule.of_metadata(metadata)
        scored = assessment.score_images(model, metadata, examples, explain=report is not None)
        audited = audit.score_views(model, metadata, examples) if args.shortcuts else None
    result = {"model": args.model, "data": {"config": spec.config, "path": spec.path, "split": args.split},
              "operating_rule": rule.to_dict(), **assessment.assess(scored, rule)}
    if sources is not None:
        result["by_source"] = assessment.by_source(scored, rule, sources)
    if report is not None:
        with report.writing() as folder:
            result["shortcuts"] = assessment.write_explanations(scored, rule, folder, title=metadata["backbone"])
            if audited is not None:
                result["audit"] = audit.audit_table(audited, rule)
                with contextlib.redirect_stdout(sys.stderr):
                    audit.write_audit(model, metadata, audited, result["audit"], folder)
            files.atomic_write_json(folder / "evaluation.json", result, default=files.json_default)
    print(json.dumps(result, default=files.json_default))
    return result


def run(argv=None) -> int:
    """`main` with misuse answered in one `error:` line and exit code 2 (covid_keras.cli)."""
    return cli.run(main, argv)

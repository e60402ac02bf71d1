"""evaluation.comparison: reports side by side, pooled per configuration against the goals."""

import importlib.util
import json
import math
import statistics

import pytest

from covid_keras import cli
from covid_keras.evaluation import comparison as gc


def report(seed, *, fidelity=0.8, judge=0.9, tstr=(0.75, 0.77), trtr=0.9, run_dir="/runs/guided",
           checkpoint="latest", min_confidence=None, extractor="random_conv", kid=0.004, run_config=None,
           tstr_blur_sigma=None):
    """The parts of an evaluate_gan metrics.json the comparison reads (tstr_blur_sigma None: a report
    from before that setting)."""
    return {
        "run_dir": run_dir,
        "run_config": run_config,
        "checkpoint": checkpoint,
        "settings": {"seed": seed} if tstr_blur_sigma is None else {"seed": seed, "tstr_blur_sigma": tstr_blur_sigma},
        "extractor": {"name": extractor},
        "kid": {"mean_over_classes": kid},
        "sample_filter": None if min_confidence is None else {
            "min_confidence": min_confidence, "acceptance_per_class": {"Normal": 0.4, "COVID": 0.6}},
        "class_fidelity": {"overall": fidelity, "per_class": {"Normal": fidelity - 0.1, "COVID": fidelity + 0.1},
                           "judge": {"real_test_accuracy": judge}},
        "tstr_trtr": None if tstr is None else {
            "tstr_accuracy": statistics.fmean(tstr), "trtr_accuracy": trtr, "tstr_auc": 0.8,
            "tstr_classifiers": [{"accuracy": accuracy} for accuracy in tstr]},
    }


def test_pooled_gaps_margins_and_standard_errors():
    comparison = gc.compare({
        "e0": report(0, fidelity=0.82, tstr=(0.74, 0.76), trtr=0.90),
        "e1": report(1, fidelity=0.86, tstr=(0.78, 0.80, 0.82), trtr=0.92),
    })
    e0, e1 = comparison["reports"]
    assert e0["tstr"] == pytest.approx(0.75) and e0["tstr_gap"] == pytest.approx(0.15)
    assert e1["tstr"] == pytest.approx(0.80) and e1["tstr_gap"] == pytest.approx(0.12)
    assert e0["fidelity_gap"] == pytest.approx(0.08)
    (pooled,) = comparison["configurations"]
    assert pooled["seeds"] == [0, 1] and pooled["n_tstr_classifiers"] == 5
    # Each report weighs once, whatever its number of classifiers.
    assert pooled["tstr"] == pytest.approx(0.775) and pooled["trtr"] == pytest.approx(0.91)
    assert pooled["tstr_classifier_sd"] == pytest.approx(statistics.stdev([0.74, 0.76, 0.78, 0.80, 0.82]))
    goal = pooled["tstr_goal"]
    assert goal["mean_gap"] == pytest.approx(0.135) and goal["margin"] == pytest.approx(0.015) and goal["met"]
    assert goal["gap_se"] == pytest.approx(statistics.stdev([0.15, 0.12]) / math.sqrt(2))
    fidelity = pooled["fidelity_goal"]
    assert fidelity["mean_gap"] == pytest.approx(0.06) and fidelity["margin"] == pytest.approx(0.04)
    text = gc.markdown(comparison)
    assert "met by 1.5 pts, SE 1.5" in text and "met by 4.0 pts, SE 2.0" in text
    assert "0.750 ± 0.014 (2)" in text


def test_a_missed_goal_says_so():
    comparison = gc.compare({"only": report(0, fidelity=0.6, judge=0.9, tstr=(0.6,), trtr=0.9)})
    (pooled,) = comparison["configurations"]
    assert not pooled["fidelity_goal"]["met"] and pooled["fidelity_goal"]["margin"] == pytest.approx(-0.2)
    assert not pooled["tstr_goal"]["met"] and pooled["tstr_goal"]["gap_se"] is None  # one report: no SE
    assert comparison["reports"][0]["tstr_sd"] is None
    text = gc.markdown(comparison)
    assert "missed by 20.0 pts |" in text and "missed by 15.0 pts |" in text


def test_configurations_are_run_checkpoint_filter_and_tstr_blur():
    comparison = gc.compare({
        "plain-e0": report(0), "plain-e1": report(1, tstr_blur_sigma=0.0),  # 0 pools with no key
        "filtered-e0": report(0, min_confidence=0.9), "epoch-e0": report(0, checkpoint="40"),
        "blurred-e0": report(0, min_confidence=0.9, tstr_blur_sigma=1.5),
        "other-run-e0": report(0, run_dir="/runs/run3", tstr=None, extractor="resnet50", kid=2.5),
    })
    labels = [pooled["configuration"] for pooled in comparison["configurations"]]
    assert labels == ["guided", "guided, P≥0.9", "guided, epoch 40", "guided, P≥0.9, TSTR blur ≤1.5 px", "run3"]
    assert comparison["configurations"][0]["reports"] == ["plain-e0", "plain-e1"]
    run3 = comparison["configurations"][4]
    assert "tstr" not in run3 and run3["kid_per_extractor"] == {"resnet50": 2.5}
    text = gc.markdown(comparison)
    assert "0.400 / 0.600" in text and "not measured" in text


def test_run_folders_of_one_name_in_different_parents_are_told_apart():
    comparison = gc.compare({"a": report(0, run_dir="/runs/a/guided"), "b": report(0, run_dir="/runs/b/guided"),
                             "c": report(0, run_dir="/runs/run3")})
    labels = [pooled["configuration"] for pooled in comparison["configurations"]]
    assert labels == ["/runs/a/guided", "/runs/b/guided", "run3"]
    assert [row["configuration"] for row in comparison["reports"]] == labels


def test_a_report_without_kid_is_left_out_of_the_kid_mean():
    comparison = gc.compare({"e0": report(0, kid=None), "e1": report(1, kid=0.006), "x": report(0, run_dir="/r/x", kid=None)})
    measured, unmeasured = comparison["configurations"]
    assert measured["kid_per_extractor"] == {"random_conv": pytest.approx(0.006)}
    assert unmeasured["kid_per_extractor"] == {"random_conv": None}
    text = gc.markdown(comparison)
    assert "| n/a (random_conv) |" in text and "random_conv n/a |" in text


def preset(seed, epochs=111):
    return {"epochs": epochs, "class_guide_weight": 30.0, "seed": seed}


def test_runs_that_differ_only_in_their_training_seed_are_pooled_again():
    reports = {}
    for training_seed, tstr in ((0, 0.72), (1, 0.76), (2, 0.79)):
        for eval_seed in (0, 1):
            reports[f"s{training_seed}-e{eval_seed}"] = report(
                eval_seed, fidelity=0.85, tstr=(tstr - 0.01, tstr + 0.01), trtr=0.9, min_confidence=0.9,
                run_dir=f"/runs/s{training_seed}", run_config=preset(training_seed))
    reports["short-e0"] = report(0, min_confidence=0.9, run_dir="/runs/short", run_config=preset(3, epochs=37))
    reports["unfiltered-s0"] = report(0, run_dir="/runs/s0", run_config=preset(0))
    for training_seed in (0, 1):  # the same generators, TSTR with another classifier recipe: pooled apart
        reports[f"s{training_seed}-blur"] = report(0, min_confidence=0.9, run_dir=f"/runs/s{training_seed}",
                                                   run_config=preset(training_seed), tstr_blur_sigma=1.5)
    comparison = gc.compare(reports)
    assert [row["training_seed"] for row in comparison["reports"]][:2] == [0, 0]
    # Neither the 37-epoch run nor the unfiltered one has a partner.
    over, blurred = comparison["over_training_seeds"]
    assert blurred["training_seeds"] == [0, 1] and blurred["configurations"][0] == "s0, P≥0.9, TSTR blur ≤1.5 px"
    assert over["training_seeds"] == [0, 1, 2] and over["n_reports"] == 6
    assert over["configurations"] == ["s0, P≥0.9", "s1, P≥0.9", "s2, P≥0.9"]
    assert over["tstr"] == pytest.approx(0.7567, abs=1e-4) and over["tstr_per_training_seed"] == pytest.approx([0.72, 0.76, 0.79])
    goal = over["tstr_goal"]  # gaps 0.18, 0.14, 0.11 over training seeds
    assert goal["mean_gap"] == pytest.approx(0.1433, abs=1e-4) and goal["met"]
    assert goal["gap_se"] == pytest.approx(statistics.stdev([0.18, 0.14, 0.11]) / math.sqrt(3))
    assert goal["n_reports"] == 3  # training seeds, each weighted once
    assert over["fidelity_goal"]["margin"] == pytest.approx(0.05)
    text = gc.markdown(comparison)
    assert "## Pooled over training seeds" in text
    assert "| s0, P≥0.9 + s1, P≥0.9 + s2, P≥0.9 | 0, 1, 2 | 6 | 0.850 (0.900) | met by 5.0 pts, SE 0.0 |" in text
    assert "0.757 (0.720 / 0.760 / 0.790) | 0.900 | met by 0.7 pts, SE 2.0 |" in text


def test_a_report_without_its_run_config_reads_the_run_folder_or_is_not_pooled(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / gc.RUN_CONFIG_FILE).write_text(json.dumps({"gan": preset(4), "class_names": ["Normal", "COVID"]}))
    comparison = gc.compare({"old": report(0, run_dir=str(run)), "new": report(0, run_dir="/r/s5", run_config=preset(5)),
                             "gone": report(0, run_dir=str(tmp_path / "moved"))})
    assert [row["training_seed"] for row in comparison["reports"]] == [4, 5, None]
    (over,) = comparison["over_training_seeds"]
    assert over["training_seeds"] == [4, 5]
    assert "| moved | ? | 0 |" in gc.markdown(comparison)


def test_one_preset_at_one_training_seed_twice_is_refused():
    with pytest.raises(ValueError, match="a, P≥0.9 and b, P≥0.9 are one preset at one training seed .1."):
        gc.compare({"a": report(0, min_confidence=0.9, run_dir="/r/a", run_config=preset(1)),
                    "b": report(0, min_confidence=0.9, run_dir="/r/b", run_config=preset(1))})


def test_the_same_measurement_twice_is_refused_naming_both():
    with pytest.raises(ValueError, match="first and second both evaluate guided, P≥0.9 at seed 1"):
        gc.compare({"first": report(1, min_confidence=0.9), "second": report(1, min_confidence=0.9)})
    with pytest.raises(ValueError, match="no reports"):
        gc.compare({})


def test_a_report_from_before_several_classifiers_counts_as_one():
    old = report(0)
    del old["tstr_trtr"]["tstr_classifiers"]
    row = gc.compare({"old": old})["reports"][0]
    assert row["tstr_accuracies"] == [pytest.approx(0.76)] and row["tstr_sd"] is None


def test_bad_reports_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such report folder or file"):
        gc.load_report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty/metrics.json: no evaluation report there"):
        gc.load_report(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken/metrics.json: not valid JSON"):
        gc.load_report(tmp_path / "broken")
    (tmp_path / "other.json").write_text(json.dumps({"kid": {}}))
    with pytest.raises(ValueError, match="other.json: not an evaluate_gan report .no class_fidelity, extractor, settings"):
        gc.load_report(tmp_path / "other.json")


def test_script_writes_the_comparison_and_names_a_missing_report(tmp_path, project_root, capsys):
    for name, seed in (("guided-e0", 0), ("guided-e1", 1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(report(seed)))
    script_path = project_root / "scripts" / "compare_gan_reports.py"
    module_spec = importlib.util.spec_from_file_location("compare_gan_reports_script", script_path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)

    out = tmp_path / "comparison"
    assert script.main([str(tmp_path / "guided-e0"), str(tmp_path / "guided-e1" / "metrics.json"), "--out", str(out)]) == 0
    saved = json.loads((out / "comparison.json").read_text())
    assert [row["name"] for row in saved["reports"]] == ["guided-e0", "guided-e1"]
    assert saved["configurations"][0]["n_tstr_classifiers"] == 4
    assert (out / "comparison.md").read_text() in capsys.readouterr().out

    assert cli.run(script.main, [str(tmp_path / "guided-e0"), str(tmp_path / "missing")]) == 2
    assert "missing: no such report folder or file" in capsys.readouterr().err
    # An existing --out is kept unless --overwrite.
    before = (out / "comparison.json").read_bytes()
    assert cli.run(script.main, [str(tmp_path / "guided-e0"), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and (out / "comparison.json").read_bytes() == before
    assert cli.run(script.main, [str(tmp_path / "guided-e0"), "--out", str(out), "--overwrite"]) == 0
    assert [row["name"] for row in json.loads((out / "comparison.json").read_text())["reports"]] == ["guided-e0"]


def test_report_figures_are_parsed_once_with_old_reports_defaults():
    from covid_keras.evaluation.gan_report_schema import GanReportFigures

    figures = GanReportFigures.from_json(report(3, min_confidence=0.9, tstr_blur_sigma=1.5), "r")
    assert (figures.eval_seed, figures.min_confidence, figures.tstr_blur_sigma) == (3, 0.9, 1.5)
    assert figures.tstr.accuracies == (0.75, 0.77) and figures.acceptance_per_class["COVID"] == 0.6
    old = report(0)
    del old["tstr_trtr"]["tstr_classifiers"]  # before TSTR over several classifiers: one accuracy
    assert GanReportFigures.from_json(old).tstr.accuracies == (pytest.approx(0.76),)
    assert GanReportFigures.from_json(report(0, tstr=None)).tstr is None
    broken = report(0)
    del broken["class_fidelity"]["judge"]
    with pytest.raises(ValueError, match="r: not an evaluate_gan report .no 'judge'"):
        GanReportFigures.from_json(broken, "r")

"""Pooling evidence over GAN training seeds: figures against hand-computed cases, and the refusals."""

import copy
import json
import math

import pytest

from covid_keras import cli
from covid_keras.evaluation import evidence_pooling

CLASSES = ["Normal", "COVID"]


def _report(seed, fidelity, tstr, trtr, epoch=240, split="validation"):
    """A minimal evidence.json of one training seed: per-image items, and what the tables read."""
    section = {"mean": sum(fidelity) / len(fidelity), "per_class": {"Normal": 0.5, "COVID": 0.5}}
    kid = {"per_class": {name: {"mean": 0.1 * (seed + 1)} for name in CLASSES}}
    return {
        "protocol": "gan-evidence/1", "class_names": CLASSES, "splits_scored": [split],
        "settings": {"split": split, "per_class": 2, "classifiers": 2, "seed": 0},
        "samples": {"unfiltered": {"per_class": 2}},
        "run_dir": f"runs/s{seed}", "epoch": epoch, "run_config": {"preset_field": 1, "seed": seed},
        "fidelity": {"independent": {"unfiltered": section}, "small_cnn": {"unfiltered": section}},
        "kid": {f"vs_{split}": {"unfiltered": kid}},
        "memorisation": {"unfiltered": {"ratio": 1.0 + seed, "flagged": False}},
        "items": {
            f"judge_independent_{split}": [1, 1, 0, 1], f"judge_small_cnn_{split}": [1, 1, 1, 1],
            "fidelity_independent_unfiltered": fidelity, "fidelity_small_cnn_unfiltered": fidelity,
            f"tstr_unfiltered_{split}": tstr, f"tstr_trtr_{split}": trtr,
        },
    }


@pytest.fixture
def two_seeds():
    everything = [[1, 1, 1, 1], [1, 1, 1, 1]]
    return [
        _report(0, [1, 1, 1, 1], [[1, 1, 0, 0], [1, 0, 0, 0]], everything),
        _report(1, [0, 0, 0, 0], [[1, 1, 1, 0], [1, 1, 1, 0]], everything),
    ]


def test_pooled_fidelity_carries_the_seed_variance(two_seeds):
    pooled = evidence_pooling.pool_training_seeds(two_seeds)
    fidelity = pooled["fidelity"]["independent"]["unfiltered"]
    # No variance within a seed (all right / all wrong); seed means 1 and 0: se = sd / sqrt(2) = 0.5.
    assert fidelity["mean"] == 0.5 and fidelity["se_items"] == 0.0
    assert fidelity["se_seeds"] == pytest.approx(0.5)
    assert fidelity["low"] == pytest.approx(0.5 - 1.959964 * 0.5)
    assert fidelity["per_seed"] == [1.0, 0.0]
    assert pooled["training_seeds"] == [0, 1] and pooled["epoch"] == 240


def test_pooled_tstr_averages_classifiers_per_image_then_pairs_with_trtr(two_seeds):
    difference = evidence_pooling.pool_training_seeds(two_seeds)["tstr"]["unfiltered_minus_trtr"]
    # Seed 0: per image TSTR (1, .5, 0, 0) - TRTR 1 -> mean -0.625; seed 1: (1, 1, 1, 0) - 1 -> -0.25.
    assert difference["per_seed"] == pytest.approx([-0.625, -0.25])
    assert difference["mean"] == pytest.approx(-0.4375)
    assert difference["se_seeds"] == pytest.approx(math.sqrt(((0.1875 ** 2) * 2) / 1 / 2))
    # The held-out images add their own variance on top (a shared bootstrap over the 4 images).
    assert difference["se_items"] > 0
    assert difference["high"] - difference["mean"] == pytest.approx(
        1.959964 * math.hypot(difference["se_items"], difference["se_seeds"]))
    pooled = evidence_pooling.pool_training_seeds(two_seeds)
    assert pooled["kid"]["unfiltered"]["COVID"]["per_seed"] == pytest.approx([0.1, 0.2])
    assert pooled["memorisation"]["unfiltered"]["mean"] == 1.5


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(splits_scored=["test"]), "scored split"),
    (lambda r: r["run_config"].update(seed=0), "share a training seed"),
    (lambda r: r["run_config"].update(preset_field=2), "GAN configuration"),
    (lambda r: r.update(epoch=120), "epoch"),
    (lambda r: r["settings"].update(per_class=500), "protocol settings"),
])
def test_reports_of_different_configurations_are_refused(two_seeds, change, message):
    other = copy.deepcopy(two_seeds[1])
    change(other)
    with pytest.raises(ValueError, match=message):
        evidence_pooling.pool_training_seeds([two_seeds[0], other])


def test_reports_without_what_pooling_needs_are_refused(two_seeds):
    with pytest.raises(ValueError, match="at least 2"):
        evidence_pooling.pool_training_seeds(two_seeds[:1])
    old = [copy.deepcopy(r) for r in two_seeds]
    for r in old:
        del r["items"]["tstr_unfiltered_validation"], r["items"]["tstr_trtr_validation"]
    with pytest.raises(ValueError, match="per-image TSTR items"):
        evidence_pooling.pool_training_seeds(old)
    for r in old:
        r["epoch"] = None
    with pytest.raises(ValueError, match="does not record the epoch"):
        evidence_pooling.pool_training_seeds(old)


def test_compare_evidence_pool_writes_the_table_and_answers_misuse(two_seeds, tmp_path, capsys):
    from covid_keras.commands import compare_evidence

    paths = []
    for report in two_seeds:
        folder = tmp_path / f"seed{report['run_config']['seed']}"
        folder.mkdir()
        (folder / "evidence.json").write_text(json.dumps(report))
        paths.append(str(folder))
    out = tmp_path / "pooled"
    assert cli.run(compare_evidence.main, [*paths, "--pool", "--label", "preset", "--out", str(out)]) == 0
    table = (out / "pooled.md").read_text()
    assert "preset: GAN training seeds 0, 1 at epoch 240" in table and "(1.000 / 0.000)" in table
    assert json.loads((out / "pooled.json").read_text())["training_seeds"] == [0, 1]
    assert cli.run(compare_evidence.main, [*paths, "--pool", "--label", "a", "--label", "b"]) == 2
    assert cli.run(compare_evidence.main, [paths[0], paths[0], "--pool"]) == 2
    assert capsys.readouterr().err.count("error:") == 2

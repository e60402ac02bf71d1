"""The one-command study end to end, in a super-tiny profile; reruns reuse the finished stages."""

import json

import pytest
from test_experiment import write_tree

from covid_keras import experiment, reproduce

# 32 px everywhere, one GAN epoch with tiny networks, 5 generated images per class (the fewest that
# give every split of the generated folder's TFDS build an image), one head.
TINY = reproduce.Profile(
    "test",
    data="folder",
    gan_overrides={
        "image_size": 32, "epochs": 1, "batch_size": 4, "generator_filters": (8, 8),
        "discriminator_filters": (8, 8, 8), "base_channels": 8, "sample_every": 1, "checkpoint_every": 1,
    },
    gan_evaluation={"per_class": 8, "num_subsets": 3, "subset_size": 4, "curves": False},
    per_class=5,
    backbones=("vgg16",),
    seeds=(0,),
    image_size=32,
    epochs=1,
    batch_size=4,
)


def test_reproduce_end_to_end_then_reuses_every_stage(tmp_path, monkeypatch):
    real = write_tree(tmp_path / "real", 10, "real", seed=1)
    # No download: pretend the ImageNet weights cannot be had, whatever the network.
    monkeypatch.setattr(reproduce, "imagenet_available", lambda backbone, size: "OSError: no network (test)")
    out = tmp_path / "out"
    kwargs = dict(manual_dir=str(real), data_dir=str(tmp_path / "tfds"), profile=TINY, verbose=0)

    first = reproduce.reproduce(out, **kwargs)

    report = out / reproduce.REPORT_DIR
    for name in (reproduce.README, reproduce.GAN_SAMPLES, reproduce.GAN_LOSS_CURVE, reproduce.GENERATED_EXAMPLES,
                 experiment.RESULTS_MD, experiment.RESULTS_JSON, experiment.BAR_CHART, experiment.ROC_CHART,
                 experiment.CONFUSION_CHART, f"{reproduce.GAN_EVALUATION_DIR}/metrics.json"):
        assert (report / name).is_file(), name
    # The GAN's own figures and the provenance are in the README; the confusion counts add up to the test split.
    gan_figures = first["gan_evaluation"]
    assert set(gan_figures["kid_per_class"]) == {"Normal", "COVID"} and 0 <= gan_figures["class_fidelity"] <= 1
    assert first["weights"] == {"vgg16": None}
    assert "RANDOM INIT" in first["weights_notes"][0]
    readme = (report / reproduce.README).read_text()
    assert "WARNING" in readme and "RANDOM INIT" in readme and "| vgg16 | augmented (+GAN) |" in readme
    assert "TSTR" in readme and "## Provenance" in readme and "git_commit" in readme
    assert first["generated"]["counts"] == {"Normal": 5, "COVID": 5}
    results = json.loads((report / experiment.RESULTS_JSON).read_text())
    assert results["generated"]["per_class_used"] == {"Normal": 5, "COVID": 5}
    assert results["backbones"]["vgg16"]["weights"]["name"] == "none"
    assert results["data"]["splits"]["test"]["n"] > 0
    matrices = experiment.confusion_matrices_on_test(results)
    test_n, seeds = results["data"]["splits"]["test"]["n"], len(results["config"]["seeds"])
    assert all(sum(map(sum, m)) == test_n * seeds for m in matrices.values())
    assert json.loads((out / reproduce.STATE_FILE).read_text())["gan"]["epochs_done"] == 1

    second = reproduce.reproduce(out, **kwargs)

    assert second["gan"]["resumed_from_epoch"] == 1  # nothing left to train
    assert second["generated"]["reused"] and second["experiment_reused"] and second["gan_evaluation"]["reused"]
    assert second["results"] == results


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        reproduce.reproduce(tmp_path, profile="huge")


def test_unknown_gan_preset_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown GAN run 'best'"):
        reproduce.reproduce(tmp_path / "out", profile=TINY, gan_run="best")
    assert not (tmp_path / "out").exists()

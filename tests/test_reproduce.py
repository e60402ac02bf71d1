"""The one-command study end to end, in a super-tiny profile; reruns reuse the finished stages."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf
from test_experiment import write_tree

from covid_keras import cli, experiment, reproduce
from covid_keras.backbones import get_backbone_spec
from covid_keras.gan import presets as gan_presets

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
    small_cnn_epochs=2,
)


def test_reproduce_end_to_end_then_reuses_every_stage(tmp_path, monkeypatch, capfd):
    real = write_tree(tmp_path / "real", 10, "real", seed=1)
    # No download: pretend the ImageNet weights cannot be had, whatever the network.
    monkeypatch.setattr(reproduce, "imagenet_available", lambda backbone, size: "OSError: no network (test)")
    out = tmp_path / "out"
    kwargs = dict(manual_dir=str(real), data_dir=str(tmp_path / "tfds"), profile=TINY, verbose=0)

    with cli.library_noise_to(out / "reproduce.log"):  # as the command runs it
        first = reproduce.reproduce(out, **kwargs)

    # Libraries' warnings went to the log, not to the terminal.
    terminal = capfd.readouterr()
    for noise in ("retracing", "Traceback", "WARNING", "cuInit"):
        assert noise not in terminal.out + terminal.err, noise
    report = out / reproduce.REPORT_DIR
    for name in (reproduce.README, reproduce.GAN_SAMPLES, reproduce.GAN_LOSS_CURVE, reproduce.GENERATED_EXAMPLES,
                 experiment.RESULTS_MD, experiment.RESULTS_JSON, experiment.BAR_CHART, experiment.ROC_CHART,
                 experiment.CONFUSION_CHART, f"{reproduce.GAN_EVALUATION_DIR}/metrics.json"):
        assert (report / name).is_file(), name
    # The GAN's own figures and the provenance are in the README; the confusion counts add up to the test split.
    gan_figures = first["gan_evaluation"]
    assert set(gan_figures["kid_per_class"]) == {"Normal", "COVID"} and 0 <= gan_figures["class_fidelity"] <= 1
    assert set(gan_figures["diversity_ratio"]) == {"Normal", "COVID"}
    # Offline and no weights folder: the small CNN from scratch, said in one calm line; no random backbone.
    assert first["weights"] == {experiment.SMALL_CNN: None}
    assert first["weights_notes"] == [reproduce.OFFLINE_NOTE]
    readme = (report / reproduce.README).read_text()
    assert "WARNING" not in readme and "RANDOM INIT" not in readme and "https://" not in readme
    assert f"Note: {reproduce.OFFLINE_NOTE}" in readme
    # The answer first (real vs classic vs GAN, with intervals), then the pictures, then the details.
    answer, pictures, details = (readme.index(s) for s in ("| classifier | real only |", "## The GAN's samples",
                                                          "## Details"))
    assert answer < pictures < details
    assert f"| {experiment.SMALL_CNN} | " in readme[answer:pictures] and "GAN vs classic" in readme[answer:pictures]
    assert reproduce.gan_description(first["gan"]["config"], first["gan"]["preset"]) in readme
    assert "class fidelity" in readme and "TSTR" in readme and "## Provenance" in readme and "git_commit" in readme
    assert first["generated"]["counts"] == {"Normal": 5, "COVID": 5}
    results = json.loads((report / experiment.RESULTS_JSON).read_text())
    assert results["generated"]["per_class_used"] == {"Normal": 5, "COVID": 5}
    small_cnn = results["backbones"][experiment.SMALL_CNN]
    assert small_cnn["weights"]["trained_from_scratch"] and list(small_cnn["runs"]) == list(experiment.SMALL_CNN_SETTINGS)
    # Classic augmentation adds as many rows as the GAN.
    assert small_cnn["n_train"]["classic"] == small_cnn["n_train"]["augmented"] == small_cnn["n_train"]["baseline"] + 10
    assert results["config"]["image_size"] == TINY.gan_overrides["image_size"]  # the GAN's size, as TRTR
    assert results["data"]["splits"]["test"]["n"] > 0
    matrices = experiment.confusion_matrices_on_test(results)
    assert len(matrices) == 3
    test_n, seeds = results["data"]["splits"]["test"]["n"], len(results["config"]["seeds"])
    assert all(sum(map(sum, m)) == test_n * seeds for m in matrices.values())
    assert json.loads((out / reproduce.STATE_FILE).read_text())["gan"]["epochs_done"] == 1
    # The GAN's samples reached TensorBoard as images, one tag per class, beside its losses.
    tags = set()
    for path in (out / reproduce.GAN_DIR / "tensorboard").rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {(v.tag, v.metadata.plugin_data.plugin_name) for v in event.summary.value}
    assert {("samples/Normal", "images"), ("samples/COVID", "images")} <= tags
    assert any(tag.startswith("epoch_") for tag, _ in tags)

    second = reproduce.reproduce(out, **kwargs)

    assert second["gan"]["resumed_from_epoch"] == 1  # nothing left to train
    assert second["generated"]["reused"] and second["experiment_reused"] and second["gan_evaluation"]["reused"]
    assert second["results"] == results


def test_the_quick_profile_is_what_the_report_names():
    quick = reproduce.PROFILES["quick"]
    config = gan_presets.from_preset(quick.gan_run, **quick.gan_overrides)
    named = reproduce.gan_description(config.to_dict(), quick.gan_run)
    steps = config.epochs * config.epoch_images // config.batch_size
    assert named == (f"preset `{quick.gan_run}` at {config.image_size} px, batch {config.batch_size}, "
                     f"{config.epochs} epochs, {steps} generator steps")
    assert quick.data == "phantom_small" and "validation" in quick.gan_chosen_by


def test_the_classifiers_follow_the_weights_at_hand(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "imagenet_available", lambda backbone, size: "OSError: no network (test)")
    backbones = ("vgg16", "resnet50")
    # Nothing at hand: the small CNN from scratch, and one note saying how to get the backbones.
    assert reproduce.choose_classifiers("imagenet", backbones, 75) == ({experiment.SMALL_CNN: None},
                                                                       [reproduce.OFFLINE_NOTE])
    # A weights folder: frozen backbones on its files (tiny stand-ins: only their presence is checked here).
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in backbones:
        (folder / get_backbone_spec(name).weights_file).write_bytes(b"stand-in")
    chosen, notes = reproduce.choose_classifiers("imagenet", backbones, 75, weights_dir=str(folder))
    assert chosen == {name: str(folder / get_backbone_spec(name).weights_file) for name in backbones} and not notes
    # Keras' download for one backbone only: the other is left out, not run on random weights.
    monkeypatch.setattr(reproduce, "imagenet_available", lambda b, size: None if b == "vgg16" else "OSError: no")
    chosen, notes = reproduce.choose_classifiers("imagenet", backbones, 75)
    assert chosen == {"vgg16": "imagenet"} and "resnet50" in notes[0]
    # Random backbones only when asked for.
    assert reproduce.choose_classifiers("none", backbones, 75) == ({"vgg16": None, "resnet50": None}, [])
    # A folder without a backbone's file is refused by name.
    (folder / get_backbone_spec("resnet50").weights_file).unlink()
    with pytest.raises(FileNotFoundError, match="resnet50"):
        reproduce.choose_classifiers("imagenet", backbones, 75, weights_dir=str(folder))


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        reproduce.reproduce(tmp_path, profile="huge")


def test_unknown_gan_preset_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown GAN run 'best'"):
        reproduce.reproduce(tmp_path / "out", profile=TINY, gan_run="best")
    assert not (tmp_path / "out").exists()


def test_library_noise_goes_to_the_log_not_the_terminal(tmp_path):
    """What the command wraps a normal run in: TensorFlow's retracing warnings, Python warnings and
    native logs reach the log file; the command's own lines and its `error:` line stay on the terminal."""
    log = tmp_path / "run.log"
    code = textwrap.dedent(f"""
        import os, sys, warnings
        from covid_keras import cli
        with cli.library_noise_to({str(log)!r}):
            import tensorflow as tf
            for size in range(1, 8):  # a new tf.function every time: TensorFlow warns about retracing
                tf.function(lambda x: x * 2)(tf.zeros([size]))
            tf.get_logger().warning("a tf.function retracing warning")
            warnings.warn("a library's deprecation")
            os.write(2, b"native noise on fd 2\\n")
            print("own output")
            print("error: own error line", file=sys.stderr)
        print("after the block", file=sys.stderr)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert done.returncode == 0, done.stderr
    terminal = done.stdout + done.stderr
    assert "own output" in done.stdout and "error: own error line" in done.stderr and "after the block" in done.stderr
    for noise in ("retracing", "deprecation", "native noise"):
        assert noise not in terminal, noise
        assert noise in log.read_text(), noise

"""The benchmarks' own correctness: the PyTorch reference is the Keras GAN, and the runner prints valid JSON.

Tiny models at 64 px (the smallest size whose discriminator keeps the study's "valid" padding);
the timing itself is not tested (2 shared cores make it noise).
"""

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch  # the benchmarks' reference: a test extra (covid-keras[bench]), never a package dependency

from bench import gan_vs_torch, torch_reference
from bench.__main__ import BENCHMARKS, last_json_object, summarize
from covid_keras.gan import networks as gan_networks

SIZE = 64
G_FILTERS = (16, 8, 8, 4)
D_FILTERS = (8, 8, 8, 8, 8)


def _small_pair():
    keras_g = gan_networks.build_generator(SIZE, noise_dim=16, embedding_dim=6, filters=G_FILTERS, base_channels=8)
    keras_d = gan_networks.build_discriminator(SIZE, embedding_dim=6, filters=D_FILTERS, dropout=0.0)
    torch_g = torch_reference.Generator(SIZE, noise_dim=16, embedding_dim=6, filters=G_FILTERS, base_channels=8)
    torch_d = torch_reference.Discriminator(SIZE, embedding_dim=6, filters=D_FILTERS, dropout=0.0)
    return keras_g, keras_d, torch_g, torch_d


def _trainable_count(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_torch_reference_has_the_keras_architecture():
    keras_g, keras_d, torch_g, torch_d = _small_pair()
    assert torch_reference.count_parameters(torch_g) == _trainable_count(keras_g)
    assert torch_reference.count_parameters(torch_d) == _trainable_count(keras_d)

    torch_reference.copy_keras_generator(keras_g, torch_g)
    torch_reference.copy_keras_discriminator(keras_d, torch_d)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4, 16)).astype("float32")
    labels = np.array([0, 1, 1, 0], dtype="int32")
    keras_images = np.asarray(keras_g([noise, labels], training=True))
    with torch.no_grad():
        torch_images = torch_g(torch.from_numpy(noise), torch.from_numpy(labels).long()).numpy().transpose(0, 2, 3, 1)
        torch_logits = torch_d(torch.from_numpy(torch_images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels).long())
    assert keras_images.shape == torch_images.shape == (4, SIZE, SIZE, 1)
    np.testing.assert_allclose(torch_images, keras_images, atol=1e-5)
    keras_logits = np.asarray(keras_d([keras_images, labels], training=True))
    np.testing.assert_allclose(torch_logits.numpy(), keras_logits, rtol=1e-4, atol=1e-4)


def test_run3_step_equals_the_torch_step_in_float32():
    gan_vs_torch.import_torch()
    args = argparse.Namespace(image_size=SIZE, batch_size=4, d_every=10, seed=0)
    check = gan_vs_torch.equality_check(args, "float32", steps=2)
    assert check["passed"], check
    assert check["first_loss_rel"] < 1e-5  # before any update: the same function to float rounding
    # Tested up to the losses after one update; later steps are only reported (see TOLERANCE).
    assert len(check["loss_rel_per_step"]) == 2 and check["loss_rel"] == max(check["loss_rel_per_step"])
    with pytest.raises(ValueError, match="at least 2 steps"):
        gan_vs_torch.equality_check(args, "float32", steps=1)


def test_keras_formula_adam_matches_keras_adam_where_torch_adam_does_not():
    import keras

    rng = np.random.default_rng(0)
    start = rng.normal(size=200).astype(np.float32)
    # Gradients of every scale, down to the rounding-noise ones where epsilon's place decides the step.
    gradients = [(rng.normal(size=200) * 10.0 ** rng.uniform(-9, -1, 200)).astype(np.float32) for _ in range(3)]

    variable = keras.Variable(start)
    keras_adam = keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    for gradient in gradients:
        keras_adam.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])

    def torch_result(adam_class):
        parameter = torch.nn.Parameter(torch.from_numpy(start.copy()))
        optimizer = adam_class([parameter], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        for gradient in gradients:
            parameter.grad = torch.from_numpy(gradient)
            optimizer.step()
        return parameter.detach().numpy()

    keras_moved = np.asarray(variable) - start
    np.testing.assert_allclose(torch_result(torch_reference.KerasFormulaAdam) - start, keras_moved, rtol=1e-3, atol=1e-9)
    assert np.abs(torch_result(torch.optim.Adam) - start - keras_moved).max() > 1e-4  # torch's own formula differs


def test_summary_reports_the_targets():
    records = {
        "gan_vs_torch": {"status": "ok", "result": {
            "results": {"torch_float32": {"images_per_s": 1.0, "speed_vs_torch": 1.0},
                        "keras_float32": {"images_per_s": 2.5, "speed_vs_torch": 2.5}},
            "targets": {"keras_float32 >= 2x torch": True}, "equality": {"float32": {"passed": True}}}},
        "data_pipeline": {"status": "ok", "result": {"gan_images_per_s": 20.0, "classifier_images_per_s": 9.0}},
        "serving_latency": {"status": "timeout", "error": "no result"},
    }
    summary = summarize(records, 1.0)
    assert summary["targets"] == {"keras_float32 >= 2x torch": True, "gan pipeline >= 10x the float32 training step": False}
    assert summary["headline"]["keras_vs_torch"] == {"keras_float32": 2.5}
    assert summary["headline"]["serving_batch_1_p50_ms"] is None
    assert summary["status"]["serving_latency"] == "timeout"


def test_last_json_object_skips_log_lines():
    assert last_json_object('loading...\n{"a": 1}\nWARNING x\n') == {"a": 1}
    assert last_json_object("no json here\n") is None


def test_runner_prints_one_json_object_per_benchmark_and_a_summary(project_root):
    assert {b.name for b in BENCHMARKS} >= {"gan_vs_torch", "data_pipeline", "serving_latency"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "phantom_speed", "--budget", "45"],
        cwd=project_root, capture_output=True, text=True, timeout=60,
    )
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line.get("benchmark") for line in lines[:-1]] == ["phantom_speed"]
    assert lines[0]["status"] == "ok" and lines[0]["result"]["images"] == 200
    assert lines[-1]["summary"] is True and lines[-1]["status"] == {"phantom_speed": "ok"}


def test_gan_step_benchmark_runs_the_current_train_step(project_root):
    """bench.gan_step times G's and D's halves through ConditionalGAN's private step methods: keep them in sync."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.gan_step", "--image-size", "32", "--batch-size", "2", "--d-every", "2"],
        cwd=project_root, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = last_json_object(done.stdout)
    assert result is not None and result["images_per_second"] > 0


def test_feature_precision_benchmark_reports_speed_per_precision_and_the_machine(project_root):
    done = subprocess.run(
        [sys.executable, "-m", "bench.feature_precision", "--backbones", "vgg16", "--sizes", "32", "--images", "4",
         "--batch-size", "4", "--rounds", "1"],
        cwd=project_root, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = last_json_object(done.stdout)
    assert set(result["results"]["vgg16"]["32px"]) == {"float32", "mixed_bfloat16"}
    assert result["results"]["vgg16"]["32px"]["float32"]["images_per_s"] > 0
    assert result["bf16_speedup"]["vgg16"]["32px"] > 0
    assert set(result["machine"]["flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert "reason" in result["machine"]["auto_features_precision"]
    assert set(result["load_average_1min"]) == {"before", "after"}


def test_precision_accuracy_pairs_seeds_and_writes_the_table():
    from bench import precision_accuracy

    per_seed = {"float32": {"0": {"accuracy": 0.95, "auc": 0.99}, "1": {"accuracy": 0.94, "auc": 0.98}},
                "mixed_bfloat16": {"0": {"accuracy": 0.96, "auc": 0.99}, "1": {"accuracy": 0.94, "auc": 0.97}}}
    summary = precision_accuracy.compare(per_seed)
    assert summary["accuracy"]["difference"]["mean"] == pytest.approx(0.005)
    assert summary["accuracy"]["run_to_run_sd"]["float32"] == pytest.approx(np.std([0.95, 0.94], ddof=1))
    assert summary["auc"]["difference"]["differences"] == pytest.approx([0.0, -0.01])
    report = {"data": {"config": "phantom_small"}, "load_average_1min": {"before": 0.1, "after": 0.2},
              "machine": {"cpu": "test CPU", "cores": 2, "flags": {"avx2": True, "avx512_bf16": False}},
              "arms": {"resnet50_150": {"weights": "none", "image_size": 32, "epochs": 1, "seeds": per_seed,
                                         "summary": summary}}}
    table = precision_accuracy.markdown(report)
    assert "| 0 | 0.950 | 0.960 | +0.010 | 0.990 | 0.990 | +0.000 |" in table
    assert "| mean | 0.945 | 0.950 | +0.005 |" in table
    configs = precision_accuracy.arm_configs("vgg16_224_mirror", None, [0, 1], 32, 1)
    assert {c.feature_precision for c in configs["mixed_bfloat16"].values()} == {"mixed_bfloat16"}
    assert configs["float32"][1].mirror and configs["float32"][1].image_size == 32 and configs["float32"][1].seed == 1

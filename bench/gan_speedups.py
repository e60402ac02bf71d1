"""Prototype: candidate speed-ups of the Keras run-3 GAN step, measured against the step as it is.

Each variant patches a freshly built `ConditionalGAN` (covid_keras.gan is not edited): the
proposals that win go to the GAN module as small changes. Variants are timed interleaved step by step like
bench/gan_vs_torch.py (same helpers), float32, and each is checked to give the same generator
output as the unpatched GAN from the same weights. Prints one JSON object.

  as_is              covid_keras.gan as it is (on one replica: BatchNormalization(synchronized=False))
  bn_synchronized    synchronized=True, as the GAN had it before: on one device Keras' synchronized
                     BN still takes the all-reduce path (sum, sum of squares, a full-size ones tensor)
  bn_fused           BN through TF's fused kernel (tf.compat.v1.nn.fused_batch_norm), one op per call

  python -m bench.gan_speedups
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import tensorflow as tf

from bench import gan_vs_torch as common


def _bn_layers(gan):
    return [layer for model in (gan.generator, gan.discriminator) for layer in model.layers
            if layer.__class__.__name__ == "BatchNormalization"]


def synchronize_bn(gan) -> None:
    for layer in _bn_layers(gan):
        layer.synchronized = True


def _fused_call(layer):
    def call(inputs, training=None, mask=None):
        if not training:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, layer.gamma.value, layer.beta.value, mean=layer.moving_mean.value,
                variance=layer.moving_variance.value, epsilon=layer.epsilon, is_training=False)
            return outputs
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, layer.gamma.value, layer.beta.value, epsilon=layer.epsilon, is_training=True)
        m = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * m + mean * (1 - m))
        layer.moving_variance.assign(layer.moving_variance * m + variance * (1 - m))
        return outputs
    return call


def fuse_bn(gan) -> None:
    for layer in _bn_layers(gan):
        layer.call = _fused_call(layer)


VARIANTS = {"as_is": None, "bn_synchronized": synchronize_bn, "bn_fused": fuse_bn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--d-every", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="K-step cycles per variant (default 1)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = args.variants.split(",")

    config = common.run3_config(args)
    batch = common.real_batch(config)
    noise = np.random.default_rng(1).standard_normal((config.batch_size, config.noise_dim)).astype("float32")
    labels = batch[1]
    load_start, start = common.load_average(), time.perf_counter()
    steppers, same_output = {}, {}
    reference = None
    for name in names:
        gan = common.build_keras_gan(config, "float32")  # same seed: same initial weights
        if VARIANTS[name]:
            VARIANTS[name](gan)
        images = np.asarray(gan.generator([noise, labels], training=True))
        reference = images if reference is None else reference
        same_output[name] = float(np.abs(images - reference).max())
        gan.make_train_function(force=True)
        steppers[name] = common.KerasStepper(gan, batch)
    for stepper in steppers.values():
        common.time_cycle(stepper, 2)
    rounds = common.interleaved_rounds(steppers, args.rounds, config.d_every)
    results = {name: common.summarize(rounds[name], 2, config.d_every, config.batch_size) for name in names}
    base = results[names[0]]["cycle_s_per_round"]
    for name in names:
        ratios = [b / t for b, t in zip(base, results[name]["cycle_s_per_round"])]
        results[name]["speed_vs_" + names[0]] = round(float(np.median(ratios)), 3)
        results[name]["generator_output_abs_diff"] = float(f"{same_output[name]:.3g}")
    print(json.dumps({
        "benchmark": "gan_speedups", "image_size": args.image_size, "batch_size": args.batch_size,
        "d_every": args.d_every, "rounds": args.rounds, "results": results,
        "load_average_start": load_start, "load_average_end": common.load_average(),
        "seconds": round(time.perf_counter() - start, 1),
    }))


if __name__ == "__main__":
    main()

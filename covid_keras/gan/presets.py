"""The GAN runs by name: the study's `1`, `2`, `3` (its report's text, see
../shared/docs/reference-facts.md; where the text is silent, the study's code) and ours."""

from __future__ import annotations

from typing import Any

from covid_keras.gan.config import GanConfig


def _halving(start: int, layers: int) -> tuple[int, ...]:
    return tuple(start // 2**i for i in range(layers))


# The report's three runs (its text). The generator has the code's four stride-2 blocks from an
# 8x8 base at 150 px; run 1 at 300 px gets a fifth so it also starts from 8x8.
PRESETS: dict[str, dict[str, Any]] = {
    "1": dict(
        image_size=300, generator_filters=(64,) * 5, batch_size=4,
        optimizer="sgd", learning_rate=0.01, momentum=0.9, lr_schedule="constant",
    ),
    "2": dict(
        image_size=150, generator_filters=_halving(256, 4), batch_size=8,
        optimizer="sgd", learning_rate=0.001, momentum=0.0, lr_schedule="constant",
    ),
    "3": dict(
        image_size=150, generator_filters=_halving(256, 4), batch_size=8,
        # The report's text says beta1 0.9; the study's code used 0.5 (the usual GAN setting).
        optimizer="adam", learning_rate=2e-4, beta_1=0.9, lr_schedule="cosine_restarts", restart_epochs=10,
    ),
    # Beyond the study: what makes a GAN train on ~1,000 X-rays (see covid_keras.gan and the ablation
    # in docs/results.md). Runs at any size the architecture reaches (64 px on a CPU, 150 px on a GPU).
    "stable": dict(
        image_size=64, generator_filters=(256, 128, 64, 32), discriminator_filters=(32, 64, 128, 256, 256),
        batch_size=32, epochs=200, optimizer="adam", learning_rate=1e-4, d_lr_multiplier=4.0,
        beta_1=0.5, beta_2=0.999, d_every=1, lr_schedule="constant", loss="hinge", leaky_relu_slope=0.2,
        dropout=0.0, generator_conditioning="class_bn", discriminator_conditioning="projection",
        discriminator_norm="spectral", minibatch_std=True, diff_augment=("color", "translation", "cutout"),
        ema_decay=0.999, aux_class_weight=1.0, sample_every=5, checkpoint_every=5,
    ),
}
# `stable` plus what the measurements (docs/results.md) found to help the samples' classes: a guide
# matched on feature statistics from epoch 15, the mode-seeking term, and resize upsampling (no
# checkerboard for the generator to answer the guide with). It trains a classifier first.
PRESETS["guided"] = dict(
    PRESETS["stable"], class_guide_weight=30.0, class_guide_loss="feature_matching", class_guide_from_epoch=15,
    class_guide_ramp_epochs=5, mode_seeking_weight=1.0, generator_upsampling="resize",
)

# `guided` with the guide on frozen exact ImageNet ResNet50 features (a trained head; local weights,
# `--weights-dir`): the generator must match the per-class statistics of features it did not
# shape, rather than those of a small CNN trained on the same 840 images. Its feature-matching
# gap is about ten times the small CNN's at the start, hence the lower weight.
PRESETS["guided_resnet50"] = dict(PRESETS["guided"], class_guide_backbone="resnet50", class_guide_weight=10.0)

# One `stable` GAN per class (covid_keras.gan.class_separate), with `guided`'s mode seeking and resize
# upsampling but no class guide and no AC head: a class's discriminator sees that class alone, so
# its generator cannot ignore the label. At equal epochs it takes the steps of one conditional run.
PRESETS["per_class"] = dict(
    PRESETS["stable"], aux_class_weight=0.0, mode_seeking_weight=1.0, generator_upsampling="resize",
    class_separate=True,
)

# `guided`'s generator (mode seeking, resize upsampling) against a projected discriminator
# (covid_keras.gan.projected): heads on frozen InceptionV3 features at three scales, the AC head on
# them too, no class guide. Needs --weights-dir (the InceptionV3 file of ../shared/tools/backbone_weights.py).
PRESETS["projected"] = dict(
    PRESETS["stable"], mode_seeking_weight=1.0, generator_upsampling="resize", minibatch_std=False,
    discriminator_backbone="inception_v3", discriminator_backbone_size=128,
)


def from_preset(run: str | int, **overrides: Any) -> GanConfig:
    """The preset `run` ("1", "2", "3", "stable", "guided") with `overrides` (GanConfig field names) applied."""
    key = str(run)
    if key not in PRESETS:
        raise ValueError(f"unknown GAN run {run!r}; choose one of {sorted(PRESETS)}")
    values = {**PRESETS[key], **overrides}
    return GanConfig.from_dict(values)

"""What hides the class or gives the generator away: the judge's accuracy under each DiffAugment policy, the blur that makes real images as soft as the samples, and the checkerboard share per class."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from covid_keras import augment
from covid_keras.evaluation.images import LabelledImages, to_uint8_images
from covid_keras.evaluation.judge import class_fidelity
from covid_keras.gan import diffaugment


def class_signal_under_augmentation(
    judge: keras.Model, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], seed: int = 0
) -> dict[str, float]:
    """The judge's accuracy on real images after each DiffAugment policy, and after all of them.

    A conditional discriminator sees only augmented images, so it cannot learn a class from
    a cue that a policy erases: a policy that drops this toward chance hides the classes from
    the GAN. "none" is the plain accuracy.
    """
    as_float = to_uint8_images(images).astype(np.float32) / 127.5 - 1.0
    accuracy = {"none": class_fidelity(judge, images, labels, class_names)["overall"]}
    variants = [(policy, (policy,)) for policy in diffaugment.POLICIES] + [("all", diffaugment.POLICIES)]
    for name, policies in variants:
        augmented = diffaugment.diff_augment(tf.constant(as_float), policies, tf.constant([seed, 0]))
        accuracy[name] = class_fidelity(judge, np.clip(augmented.numpy(), -1.0, 1.0), labels, class_names)["overall"]
    return accuracy


BLUR_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # px, at the evaluated image size


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Grey uint8 images blurred by a Gaussian of `sigma` px (reflected borders); sigma 0 returns them."""
    images = to_uint8_images(images)
    if sigma <= 0:
        return images
    taps = augment.gaussian_kernel_1d(sigma)
    radius = len(taps) // 2
    kernel = np.outer(taps, taps)
    padded = tf.pad(tf.cast(images, tf.float32), [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    blurred = tf.nn.conv2d(padded, kernel[:, :, None, None].astype(np.float32), strides=1, padding="VALID")
    return np.clip(np.round(blurred.numpy()), 0, 255).astype(np.uint8)


def sharpness(images: np.ndarray) -> float:
    """Mean |blur(1 px) - blur(2 px)| in grey levels: the detail at the scale of rib edges and
    vessels; lower is blurrier. A band-pass, not the Laplacian: GAN speckle at the scale of one
    pixel would read as sharpness (our samples' Laplacian exceeds real images')."""
    images = to_uint8_images(images)
    fine = gaussian_blur(images, 1.0).astype(np.float32)
    coarse = gaussian_blur(images, 2.0).astype(np.float32)
    return float(np.mean(np.abs(fine - coarse)))


def blur_check(
    judge: keras.Model,
    real: LabelledImages,
    generated: LabelledImages,
    class_names: Sequence[str],
    sigmas: Sequence[float] = BLUR_SIGMAS,
) -> dict:
    """How sharp the generated images are, and what the judge makes of real images that blurry.

    A judge may read blur as a class (haze is what COVID opacities look like): then blurry
    samples of every class get that label, whatever their conditioning. Per class: the
    generated and real sharpness, the Gaussian sigma that blurs real images to the generated
    sharpness (interpolated over `sigmas`), and the judge's recall on real images blurred by
    each sigma.
    """
    blurred = [gaussian_blur(real.images, sigma) for sigma in sigmas]
    recall = [class_fidelity(judge, images, real.labels, class_names)["per_class"] for images in blurred]
    out = {"sigmas": list(sigmas), "per_class": {}}
    for label, name in enumerate(class_names):
        real_mask, generated_mask = real.labels == label, generated.labels == label
        if not real_mask.any() or not generated_mask.any():
            continue
        curve = [sharpness(images[real_mask]) for images in blurred]  # falls as sigma grows
        generated_sharpness = sharpness(generated.images[generated_mask])
        # np.interp needs increasing x: read the curve from the blurriest end.
        equivalent = float(np.interp(generated_sharpness, curve[::-1], list(sigmas)[::-1]))
        out["per_class"][name] = {
            "generated_sharpness": generated_sharpness,
            "real_sharpness": curve[0],
            "real_sharpness_by_sigma": curve,
            "blur_equivalent_sigma": equivalent,
            "judge_recall_by_sigma": [r.get(name) for r in recall],
            "judge_recall_at_equivalent_blur": float(np.interp(equivalent, sigmas, [r.get(name) for r in recall])),
        }
    return out


# The periods (px) of the checkerboard that stride-2 transposed convolutions paint: one block
# gives period 2, two stacked give period 4 (Odena et al. 2016). Real radiographs have little power there.
CHECKERBOARD_PERIODS = (2, 4)


def _period_frequencies(length: int, period: int) -> list[int]:
    """FFT bins of one axis whose period is exactly `period` px: m * length / period for m coprime
    to the period (period 4 leaves period 2's bin to period 2), rounded when length is not a multiple."""
    return sorted({round(m * length / period) % length for m in range(1, period) if np.gcd(m, period) == 1})


def periodic_power_share(images: np.ndarray, period: int) -> float:
    """Share of the images' power at period `period` px: over the mean power spectrum (each
    image's own mean removed), the rows and columns at that period's frequencies, over the whole.
    A transposed convolution's checkerboard puts its power there."""
    if period < 2:
        raise ValueError(f"period must be >= 2 px, got {period}")
    images = to_uint8_images(images)[..., 0].astype(np.float64)
    if len(images) == 0:
        raise ValueError("periodic_power_share needs at least one image")
    centred = images - images.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(centred)) ** 2).mean(axis=0)
    total = power.sum()
    if total == 0:
        return 0.0
    on_period = np.zeros(power.shape, bool)
    on_period[_period_frequencies(power.shape[0], period), :] = True
    on_period[:, _period_frequencies(power.shape[1], period)] = True
    return float(power[on_period].sum() / total)


def checkerboard_per_class(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], periods: Sequence[int] = CHECKERBOARD_PERIODS
) -> dict:
    """{class: {str(period): power share}} for the classes present."""
    out = {}
    for label, name in enumerate(class_names):
        mask = labels == label
        if mask.any():
            out[name] = {str(period): periodic_power_share(images[mask], period) for period in periods}
    return out

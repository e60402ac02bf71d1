"""What a film shows besides the lungs, found and hidden, in the graph (TensorFlow ops only).

The COVID and Normal films of the radiography database come from different archives, and the
classes differ in things that are not disease: laterality markers and burnt-in text (mostly near
the border and top corners), collimation, exposure (DeGrave et al. 2021). This module finds those
regions and the lung fields, so that an audit can hide each at test time and a classifier can be
trained on what cannot carry the source:

- `equalise`: per-image histogram equalisation (exposure and contrast curves standardised);
- `region_mask`: the border and top corners (the geometry of `evaluation.shortcuts.region_masks`,
  one definition), burnt-in text and markers (`text_mask`: small bright high-contrast blobs, a
  white top-hat), the lung fields (`lung_fields`) or everything outside them;
- `hide`: masked pixels replaced by the mean grey of what the image still shows (neutral: no edge,
  no black band, nothing of what is hidden);
- `FilmStandardisation`: a layer that does this inside a classifier, on the backbone's
  preprocessed input, so training, evaluation and the exported SavedModel apply the same step.

Lung fields without pretrained weights (nothing can be downloaded here): a classical per-image fit.
After equalisation and smoothing, the dark pixels of each half of the chest, weighted by a broad
anatomical prior, give a centre and spread; each lung is the ellipse of twice that spread (the
spread of a uniform ellipse is half its semi-axis), a little enlarged. The ellipse, not the dark
pixels themselves, is the mask: COVID opacities are bright, and a darkness threshold would hide
exactly them.

Images here are grey float32 [B, H, W, 1] in [0, 255]; masks are float32 [B, H, W, 1] in {0, 1}.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from covid_keras.choices import FILM_MODES
from covid_keras.evaluation.shortcuts import region_masks

# What the shortcut audit hides at test time, in the order its table lists them.
AUDIT_REGIONS = ("none", "top_corners", "border", "text", "outside_lungs", "lungs")

DARK_QUANTILE = 0.35  # share of the (equalised) chest taken as dark air in the lungs
LUNG_MARGIN = 1.4  # the fitted ellipses enlarged by this factor, to keep the lung edges and bases
TEXT_CONTRAST = 0.25  # white top-hat height, as a share of the grey range, that marks a glyph
MAX_RADIUS = (0.44, 0.24)  # the largest lung ellipse's semi-axes (rows, columns), fractions of the side
LOW_MASS = 1e-3  # below this prior-weighted dark mass a half is not fitted: the prior is used


def definition() -> dict:
    """The settings that decide what a film mode shows: feature caches are keyed by them and
    classifier.json records them, so features of an earlier definition are never reused."""
    return {"dark_quantile": DARK_QUANTILE, "lung_margin": LUNG_MARGIN, "max_radius": list(MAX_RADIUS),
            "text_contrast": TEXT_CONTRAST, "lungs_less_text": True}


def equalise(grey):
    """Per-image histogram equalisation: [B, H, W, 1] in [0, 255] -> the same, grey levels spread
    by their cumulative frequency (the darkest level goes to 0, the brightest to 255)."""
    grey = tf.convert_to_tensor(grey, tf.float32)
    shape = tf.shape(grey)
    levels = tf.cast(tf.clip_by_value(tf.round(grey), 0.0, 255.0), tf.int32)
    flat = tf.reshape(levels, (shape[0], -1))
    counts = tf.math.bincount(flat, minlength=256, maxlength=256, axis=-1)
    cdf = tf.cast(tf.cumsum(counts, axis=-1), tf.float32)
    # The lowest present level's cdf, so that it maps to 0.
    first = tf.reduce_min(tf.where(counts > 0, cdf, tf.fill(tf.shape(cdf), np.inf)), axis=-1, keepdims=True)
    total = tf.cast(tf.shape(flat)[1], tf.float32)
    table = 255.0 * tf.math.divide_no_nan(cdf - first, total - first)
    return tf.reshape(tf.gather(table, flat, batch_dims=1), shape)


def _smooth(images, size: int):
    return tf.nn.avg_pool2d(images, size, 1, "SAME")


def _dilate(masks, size: int):
    return tf.nn.max_pool2d(masks, size, 1, "SAME")


def _erode(images, size: int):
    return -tf.nn.max_pool2d(-images, size, 1, "SAME")


def _grid(height: int, width: int):
    rows, cols = tf.meshgrid(tf.range(height, dtype=tf.float32) / height,
                             tf.range(width, dtype=tf.float32) / width, indexing="ij")
    return rows[None, :, :, None], cols[None, :, :, None]


def _prior(rows, cols, centre_col: float):
    """A broad Gaussian where a lung usually lies on a frontal chest film (fractions of the side)."""
    return tf.exp(-0.5 * (((rows - 0.45) / 0.22) ** 2 + ((cols - centre_col) / 0.13) ** 2))


def lung_fields(grey):
    """[B, H, W, 1] grey -> the two lung fields as a {0, 1} mask (module docstring: two ellipses
    fitted by moments to the dark, prior-weighted pixels of each half after equalisation)."""
    grey = tf.convert_to_tensor(grey, tf.float32)
    height, width = grey.shape[1], grey.shape[2]
    smooth = _smooth(equalise(grey) / 255.0, max(3, height // 32))
    rows, cols = _grid(height, width)
    dark = tf.cast(smooth < DARK_QUANTILE, tf.float32)
    fields = []
    for centre_col, half in ((0.28, cols < 0.5), (0.72, cols >= 0.5)):
        prior = _prior(rows, cols, centre_col)
        weight = dark * prior * tf.cast(half, tf.float32)
        mass = tf.reduce_sum(weight, axis=(1, 2, 3), keepdims=True)
        # No dark mass where a lung should be (an odd crop, a white-out): fall back to the prior's own.
        fitted = mass / float(height * width) > LOW_MASS
        weight = tf.where(fitted, weight, prior * tf.cast(half, tf.float32))
        mass = tf.reduce_sum(weight, axis=(1, 2, 3), keepdims=True)
        centre_row = tf.reduce_sum(weight * rows, axis=(1, 2, 3), keepdims=True) / mass
        centre = tf.reduce_sum(weight * cols, axis=(1, 2, 3), keepdims=True) / mass
        spread_row = tf.sqrt(tf.reduce_sum(weight * (rows - centre_row) ** 2, axis=(1, 2, 3), keepdims=True) / mass)
        spread_col = tf.sqrt(tf.reduce_sum(weight * (cols - centre) ** 2, axis=(1, 2, 3), keepdims=True) / mass)
        # Dark air outside the body (a rotated or small film) pulls the moments outwards: an ellipse
        # is kept within the size and place a lung can have on a frontal film.
        centre_row = tf.clip_by_value(centre_row, 0.3, 0.6)
        centre = tf.clip_by_value(centre, centre_col - 0.14, centre_col + 0.14)
        radius_row = tf.clip_by_value(2.0 * LUNG_MARGIN * spread_row, 0.05, MAX_RADIUS[0])
        radius_col = tf.clip_by_value(2.0 * LUNG_MARGIN * spread_col, 0.03, MAX_RADIUS[1])
        fields.append(((rows - centre_row) / radius_row) ** 2 + ((cols - centre) / radius_col) ** 2 <= 1.0)
    return tf.cast(tf.logical_or(*fields), tf.float32)


def text_mask(grey):
    """[B, H, W, 1] grey -> {0, 1} mask of burnt-in text and markers: blobs much brighter than their
    surroundings (a white top-hat: the image minus its grey opening with a window of a twelfth of
    the side, wider than a glyph's stroke) that are also among the brightest pixels, grown by a
    glyph's width."""
    grey = tf.convert_to_tensor(grey, tf.float32)
    window = max(3, grey.shape[1] // 12)
    opened = _dilate(_erode(grey, window), window)
    top_hat = (grey - opened) / 255.0
    bright = grey >= tf.reduce_max(grey, axis=(1, 2, 3), keepdims=True) * 0.75
    glyphs = tf.cast(tf.logical_and(top_hat > TEXT_CONTRAST, bright), tf.float32)
    return _dilate(glyphs, max(3, grey.shape[1] // 32))


def region_mask(grey, region: str):
    """The {0, 1} mask of `region` (one of `AUDIT_REGIONS`) for each image of [B, H, W, 1] grey."""
    grey = tf.convert_to_tensor(grey, tf.float32)
    height, width = grey.shape[1], grey.shape[2]
    if region == "none":
        return tf.zeros_like(grey)
    if region in ("border", "top_corners"):
        fixed = tf.constant(region_masks(height, width)[region], tf.float32)[None, :, :, None]
        return tf.broadcast_to(fixed, tf.shape(grey))
    if region == "text":
        return text_mask(grey)
    if region == "lungs":
        return lung_fields(grey)
    if region == "outside_lungs":
        return 1.0 - lung_fields(grey)
    raise ValueError(f"unknown region {region!r}; choose one of {', '.join(AUDIT_REGIONS)}")


def hide(grey, mask, fill=None):
    """`grey` with the masked pixels replaced by `fill` (default: the mean grey of what each image
    still shows, so the fill carries nothing of what it hides; the whole image's mean when all is hidden)."""
    grey = tf.convert_to_tensor(grey, tf.float32)
    if fill is None:
        shown = 1.0 - mask
        total = tf.reduce_sum(shown, axis=(1, 2, 3), keepdims=True)
        fill = tf.where(total > 0, tf.reduce_sum(grey * shown, axis=(1, 2, 3), keepdims=True) / tf.maximum(total, 1.0),
                        tf.reduce_mean(grey, axis=(1, 2, 3), keepdims=True))
    return grey * (1.0 - mask) + fill * mask


def _marker(height: int, width: int) -> np.ndarray:
    """A bright "L" of strokes a sixtieth of the side wide, in the top-left corner: a laterality
    marker in a style neither class of the training data has in that place."""
    letter = np.zeros((height, width), np.float32)
    stroke, top, left = max(1, width // 60), height // 20, width // 20
    letter[top:top + height // 10, left:left + stroke] = 1.0
    letter[top + height // 10 - stroke:top + height // 10, left:left + width // 16] = 1.0
    return letter


def _collimate(grey):
    """Black bands over the outer eighth of the top and both sides, as a tight collimation leaves."""
    height, width = grey.shape[1], grey.shape[2]
    keep = np.zeros((height, width), np.float32)
    keep[height // 8:, width // 8:width - width // 8] = 1.0
    return grey * keep[None, :, :, None]


def _zoom(grey):
    """The central 80 % of the film, resized back: a tighter field of view."""
    height, width = grey.shape[1], grey.shape[2]
    crop = tf.image.crop_to_bounding_box(grey, height // 10, width // 10, height - 2 * (height // 10),
                                         width - 2 * (width // 10))
    return tf.image.resize(crop, (height, width), method="bilinear", antialias=True)


# Shifts a film from another hospital may show, simulated on the films at hand (grey [B, H, W, 1]
# in [0, 255] -> the same): exposure and contrast curves, collimation, a marker in another style,
# a tighter crop. The audit scores each beside the unchanged films.
SHIFTS = {
    "darker (gamma 1.5)": lambda g: 255.0 * (g / 255.0) ** 1.5,
    "brighter (gamma 0.67)": lambda g: 255.0 * (g / 255.0) ** (1 / 1.5),
    "low contrast (x0.6)": lambda g: 0.6 * (g - tf.reduce_mean(g, axis=(1, 2, 3), keepdims=True))
                                     + tf.reduce_mean(g, axis=(1, 2, 3), keepdims=True),
    "collimated": _collimate,
    "marker top left": lambda g: tf.maximum(g, 255.0 * _marker(g.shape[1], g.shape[2])[None, :, :, None]),
    "zoomed (central 80 %)": _zoom,
}


def standardise(grey, mode: str):
    """What a classifier trained with `film=mode` sees of [B, H, W, 1] grey (`FILM_MODES`)."""
    if mode == "raw":
        return tf.convert_to_tensor(grey, tf.float32)
    if mode not in FILM_MODES:
        raise ValueError(f"unknown film mode {mode!r}; choose one of {', '.join(FILM_MODES)}")
    equalised = equalise(grey)
    if mode == "equalised":
        return equalised
    # The lung fields less any marker or text inside them (the wide ellipses reach the top corners of
    # some films). Equalised grey is uniform on [0, 255], so mid-grey is every image's neutral value:
    # the fill carries nothing of the image (a per-image mean would carry its exposure).
    shown = lung_fields(grey) * (1.0 - text_mask(grey))
    return hide(equalised, 1.0 - shown, fill=127.5)


def _affine_of(preprocess):
    """The per-channel scale and offset of a backbone's preprocessing (all three are affine per
    channel after an RGB -> BGR swap, which changes nothing for grey images)."""
    zero = np.asarray(preprocess(np.zeros((1, 1, 1, 3), np.float32)), np.float32).reshape(3)
    one = np.asarray(preprocess(np.ones((1, 1, 1, 3), np.float32)), np.float32).reshape(3)
    return one - zero, zero


@keras.saving.register_keras_serializable(package="covid_keras")
class FilmStandardisation(keras.layers.Layer):
    """[B, S, S, 3] preprocessed grey films -> the same after `standardise(mode)`, preprocessed again.

    Sits at the input of a classifier's frozen backbone (as `DegradeResolution` does), so that the
    feature cache, evaluation and the exported SavedModel all apply the same step to the same
    inputs. The backbone's preprocessing is affine per channel, so the grey film is recovered
    exactly from its preprocessed form.
    """

    def __init__(self, mode: str, backbone: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in FILM_MODES:
            raise ValueError(f"unknown film mode {mode!r}; choose one of {', '.join(FILM_MODES)}")
        from covid_keras.backbones import get_backbone_spec

        self.mode, self.backbone = mode, backbone
        self._scale, self._offset = _affine_of(get_backbone_spec(backbone).preprocess)

    def call(self, images):
        images = tf.cast(images, tf.float32)
        grey = tf.reduce_mean((images - self._offset) / self._scale, axis=-1, keepdims=True)
        seen = standardise(grey, self.mode)
        return tf.cast(seen * self._scale + self._offset, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "backbone": self.backbone}

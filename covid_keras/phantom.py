"""Built-in synthetic chest-X-ray-like images ("phantoms"): the default dataset, no download.

THESE ARE SYNTHETIC PICTURES, NOT MEDICAL DATA. They are drawn procedurally with numpy and PIL
to look roughly like frontal (PA) chest radiographs, so the whole pipeline (TFDS build, GAN,
classifiers, serving) can run and be tested anywhere. Nothing learned from them says anything
about COVID-19 or about real radiographs.

Two classes, in the order of `labels.BINARY_CLASSES`:

- Normal (label 0): body outline (soft tissue), two dark lung fields, a bright mediastinum and
  heart shifted to image right (radiographic convention: the patient's left is on the image
  right), spine, curved ribs, clavicles, diaphragm domes, vessel texture, sometimes breast shadows.
- COVID (label 1): the same anatomy plus patchy ground-glass opacities, mostly bilateral,
  peripheral and in the lower zones, from faint to marked, inside the lung fields only.

Both classes vary the way real collections do: scale, rotation, shift, occasional horizontal
flips, exposure, contrast, gamma, blur and noise. Each image's mean brightness is set to a target
drawn from the same distribution for both classes, so global brightness does not tell the
classes apart; the opacities do.

Images are rendered as an X-ray-like density map on a coarse grid (body coordinates, so pose
changes cost nothing), turned into intensities, then resized to the requested size. An image
depends only on (label, seed, size); `iter_phantoms` derives each image's seed from
(seed, index), so any image can be re-rendered alone and a smaller set is a prefix of a larger one.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from PIL import Image, ImageFilter

from covid_keras import labels

CLASS_NAMES = labels.BINARY_CLASSES
NORMAL, COVID = 0, 1

# Largest grid the density map is computed on; the result is resized to the requested size.
_MAX_RENDER_SIZE = 128
# Soft edge width of shapes, in body units (the image spans [-1, 1]).
_EDGE = 0.05


def phantom_seed(seed: int, index: int) -> int:
    """The per-image seed `iter_phantoms` passes to `render_phantom` for image `index`."""
    _check_seed(seed)
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint32)[0])


def render_phantom(label: int, seed: int, size: int = 299) -> np.ndarray:
    """One synthetic chest-X-ray-like image, uint8 [size, size], deterministic in (label, seed, size)."""
    if label not in (NORMAL, COVID):
        raise ValueError(f"label must be 0 ({CLASS_NAMES[0]}) or 1 ({CLASS_NAMES[1]}), got {label!r}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    _check_seed(seed)
    rng = np.random.default_rng([seed, label])
    # All random choices about the picture come first, so they do not depend on `size`.
    pose = _sample_pose(rng)
    anatomy = _sample_anatomy(rng)
    opacities = _sample_opacities(rng) if label == COVID else []
    exposure = _sample_exposure(rng)
    texture_seed = int(rng.integers(2**31))

    grid = min(size, _MAX_RENDER_SIZE)
    u, v = _body_coordinates(grid, pose)
    texture_rng = np.random.default_rng(texture_seed)
    lungs, air = _lung_air(u, v, anatomy)
    density = _anatomy_density(u, v, anatomy, lungs, air, texture_rng)
    if opacities:
        density += _opacity_density(u, v, lungs, opacities, texture_rng)
    intensity = _expose(density, exposure)
    return _finish(intensity, size, exposure, texture_rng)


def iter_phantoms(per_class: int, seed: int = 0, size: int = 299) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield (key, label, image) for `per_class` images of each class, classes interleaved.

    Keys look like "phantom-covid-000123"; they are unique and stable for a given `seed`.
    """
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    _check_seed(seed)
    for index in range(per_class):
        image_seed = phantom_seed(seed, index)
        for label, name in enumerate(CLASS_NAMES):
            yield f"phantom-{name.lower()}-{index:06d}", label, render_phantom(label, image_seed, size)


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


# --- random choices ------------------------------------------------------------------------


def _sample_pose(rng: np.random.Generator) -> dict:
    return {
        "scale": rng.uniform(0.95, 1.22),
        "angle": np.deg2rad(np.clip(rng.normal(0.0, 4.0), -10.0, 10.0)),
        "shift": rng.uniform(-0.06, 0.06, size=2),
        "flip": rng.random() < 0.1,  # occasional mirrored films
    }


def _sample_anatomy(rng: np.random.Generator) -> dict:
    return {
        "body_width": rng.uniform(0.86, 0.98),
        "shoulder_v": rng.uniform(-0.8, -0.68),
        "lung_width": rng.uniform(0.6, 0.7),
        "lung_apex": rng.uniform(-0.78, -0.66),
        # v of each hemidiaphragm dome top (v grows downward); the right one (image left) is higher.
        "dome_right": rng.uniform(0.36, 0.5),
        "dome_left_extra": rng.uniform(0.02, 0.09),
        "heart_width": rng.uniform(0.3, 0.38),
        "heart_shift": rng.uniform(0.05, 0.12),
        "rib_spacing": rng.uniform(0.12, 0.145),
        "rib_phase": rng.uniform(0.0, 1.0),
        "soft_tissue": rng.uniform(0.4, 0.52),
        "breasts": rng.uniform(0.05, 0.14) if rng.random() < 0.35 else 0.0,
        "gastric_bubble": rng.random() < 0.5,
    }


def _sample_opacities(rng: np.random.Generator) -> list[tuple[float, float, float, float]]:
    """Ground-glass patches as (u, v, radius, strength) in body units, lower-zone and peripheral."""
    severity = rng.uniform(0.05, 0.22)  # faint to marked
    sides = [-1.0, 1.0] if rng.random() < 0.85 else [rng.choice([-1.0, 1.0])]
    patches = []
    for side in sides:
        for _ in range(rng.integers(2, 6)):
            lateral = 0.44 + 0.3 * rng.beta(2.5, 1.3)  # distance from the midline: mostly peripheral
            height = -0.5 + 0.95 * rng.beta(2.8, 1.4)  # v: mostly lower zones
            radius = rng.uniform(0.1, 0.24)
            patches.append((side * lateral, height, radius, severity * rng.uniform(0.6, 1.2)))
    return patches


def _sample_exposure(rng: np.random.Generator) -> dict:
    return {
        "attenuation": rng.uniform(1.2, 3.0),  # with the gamma below: contrast
        "white": rng.uniform(0.95, 1.1),  # the brightest tissue's level relative to full white
        # Same for both classes, so mean brightness carries no class information.
        "mean": rng.uniform(0.36, 0.58),
        "blur": rng.uniform(0.0, 0.005),  # Gaussian blur radius, fraction of the image width
        "noise": rng.uniform(0.004, 0.03),  # noise standard deviation, fraction of full scale
    }


# --- geometry ----------------------------------------------------------------------------------


def _body_coordinates(grid: int, pose: dict) -> tuple[np.ndarray, np.ndarray]:
    """Body coordinates (u right, v down) of each pixel centre of a grid x grid image.

    The image spans [-1, 1]; the pose (scale, rotation, shift, flip) is applied as its inverse
    on the coordinates, so every shape below is drawn once, in a fixed body frame.
    """
    axis = (np.arange(grid, dtype=np.float32) + 0.5) * (2.0 / grid) - 1.0
    x = axis[None, :] - np.float32(pose["shift"][0])
    y = axis[:, None] - np.float32(pose["shift"][1])
    cos, sin = np.float32(np.cos(pose["angle"])), np.float32(np.sin(pose["angle"]))
    inv_scale = np.float32(1.0 / pose["scale"])
    u = (cos * x + sin * y) * inv_scale
    v = (cos * y - sin * x) * inv_scale
    if pose["flip"]:
        u = -u
    return u, v


def _inside(level: np.ndarray, edge: float = _EDGE) -> np.ndarray:
    """Soft 0..1 mask from a signed level (positive inside, in body units), ramping over `edge`."""
    return np.clip(level * np.float32(1.0 / edge) + np.float32(0.5), 0.0, 1.0)


def _ellipse_level(u, v, cx, cy, rx, ry) -> np.ndarray:
    """Approximate signed distance to an ellipse (positive inside), in body units."""
    r = np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2)
    return (1.0 - r) * min(rx, ry)


def _segment_distance(u, v, start, end) -> np.ndarray:
    """Distance from each point to the line segment start-end."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.sqrt((u - x0 - t * dx) ** 2 + (v - y0 - t * dy) ** 2)


def _smooth_noise(rng: np.random.Generator, cells: int, shape: tuple[int, int]) -> np.ndarray:
    """Smooth random field, roughly in [-1, 1], with about `cells` blobs across."""
    coarse = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize(shape[::-1], Image.BICUBIC))


# --- density map -------------------------------------------------------------------------------


def _lung_levels(u, v, a: dict) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance-like levels (positive inside) of the patient's right lung (image left)
    and left lung (image right)."""
    levels = []
    for side, dome in ((-1.0, a["dome_right"]), (1.0, a["dome_right"] + a["dome_left_extra"])):
        s = side * u  # distance from the midline toward this lung's side
        medial = s - (0.09 if side < 0 else 0.12)
        # Lateral border: a rounded apex that widens quickly to the full lung width.
        reach = np.sqrt(np.clip((v - a["lung_apex"]) / 0.4, 0.0, 1.0))
        lateral = 0.1 + a["lung_width"] * reach - s
        # Diaphragm dome: highest at mid-lung, falling off to the deep costophrenic angle.
        floor = dome + 0.9 * (s - 0.4) ** 2 - v
        levels.append(np.minimum(np.minimum(medial, lateral), floor))
    return levels[0], levels[1]


def _lung_air(u, v, a: dict) -> tuple[np.ndarray, np.ndarray]:
    """Soft lung mask (0..1), and how much air the beam crosses (thicker lung away from the edges)."""
    level = np.maximum(*_lung_levels(u, v, a))
    mask = _inside(level)
    return mask, mask * (0.55 + 0.45 * np.clip(level * 8.0, 0.0, 1.0))


def _body_density(u, v, a: dict) -> np.ndarray:
    """Soft tissue: thickest at the midline, shoulders narrowing to the neck, denser abdomen."""
    shoulder = np.clip((v - a["shoulder_v"]) / 0.22 + 1.0, 0.0, 1.0)
    waist = 1.0 - 0.1 * np.clip(v - 0.2, 0.0, 1.0) ** 2
    half_width = 0.24 + (a["body_width"] * waist - 0.24) * np.sqrt(shoulder)
    across = np.clip(1.0 - (u / half_width) ** 2, 0.0, 1.0)
    thickness = np.sqrt(across) * _inside(half_width - np.abs(u), 0.03)
    abdomen = 1.0 + 0.25 * np.clip(v - 0.3, 0.0, 1.0)
    return a["soft_tissue"] * thickness * abdomen


def _rib_density(u, v, a: dict, lungs: np.ndarray) -> np.ndarray:
    """Posterior ribs as arches drooping laterally, fainter anterior ribs sloping down medially."""
    x = np.abs(u)
    droop = v + 0.3 * x - (0.7 + 0.5 * np.clip(v + 0.3, 0.0, 1.0)) * x * x
    posterior = np.cos((2 * np.pi / a["rib_spacing"]) * droop + 2 * np.pi * a["rib_phase"])
    anterior = np.cos((2 * np.pi / (1.4 * a["rib_spacing"])) * (v - 0.45 * x))
    bands = 0.04 * np.clip((posterior - 0.3) * 2.0, 0.0, 1.0) + 0.02 * np.clip(anterior - 0.5, 0.0, 1.0)
    return bands * _inside(x - 0.1) * np.clip(lungs * 1.2 + 0.1, 0.0, 1.0)


def _bone_density(u, v, a: dict) -> np.ndarray:
    """Spine with vertebral bodies, and the two clavicles."""
    spine = _inside(0.055 - np.abs(u), 0.03) * (0.05 + 0.02 * np.cos(2 * np.pi * v / 0.11))
    medial_v = a["lung_apex"] + 0.12
    clavicles = sum(
        _inside(0.028 - _segment_distance(u, v, (side * 0.07, medial_v), (side * 0.7, medial_v - 0.16)), 0.025)
        for side in (-1.0, 1.0)
    )
    return spine + 0.1 * clavicles


def _mediastinum_mask(u, v, a: dict) -> np.ndarray:
    """Mediastinum (a band widening downward) and the heart, bulging to image right; soft 0..1."""
    band_width = 0.14 + 0.08 * np.clip(v + 0.5, 0.0, 1.0)
    below_inlet = _inside(v - a["lung_apex"] + 0.05, 0.15)
    mediastinum = _inside(band_width - np.abs(u - 0.02), 0.1) * _inside(a["dome_right"] + 0.1 - v, 0.1) * below_inlet
    heart_v = a["dome_right"] + 0.02  # its lower half merges with the diaphragm
    heart = _inside(_ellipse_level(u, v, a["heart_shift"], heart_v, a["heart_width"], 0.3), 0.08)
    return np.maximum(0.85 * mediastinum, heart)


def _anatomy_density(u, v, a: dict, lungs, air, rng: np.random.Generator) -> np.ndarray:
    """X-ray density (attenuation) map of a normal chest: larger is brighter on the film."""
    mediastinum = _mediastinum_mask(u, v, a)
    body = _body_density(u, v, a)
    # Air in the lungs lets the beam through (dark fields), except where the heart fills the chest.
    density = body * (1.0 - 0.62 * air * (1.0 - 0.8 * mediastinum))
    trachea = _inside(0.045 - np.abs(u), 0.03) * _inside(-0.2 - v, 0.1)
    hila = sum(np.exp(-((u - side * 0.2) ** 2 + (v + 0.05) ** 2) / 0.008) for side in (-1.0, 1.0))
    density += (0.14 * mediastinum - 0.1 * trachea + 0.05 * hila) * _inside(body - 0.05)
    density += _rib_density(u, v, a, lungs) + _bone_density(u, v, a)
    # Vessel markings: a fine texture inside the lungs, stronger toward the hila.
    vessels = np.clip(_smooth_noise(rng, 24, u.shape), 0.0, 1.0) * (0.08 - 0.05 * np.clip(np.abs(u) - 0.2, 0, 1))
    density += vessels * lungs
    if a["breasts"]:
        for side in (-1.0, 1.0):
            breast = _inside(_ellipse_level(u, v, side * 0.5, 0.3, 0.34, 0.3), 0.1) * _inside(0.58 - v, 0.03)
            density += a["breasts"] * breast
    if a["gastric_bubble"]:
        bubble_v = a["dome_right"] + a["dome_left_extra"] + 0.16
        density -= 0.12 * _inside(_ellipse_level(u, v, 0.45, bubble_v, 0.1, 0.06)) * _inside(body - 0.05)
    return np.maximum(density, 0.0) * _inside(body - 0.02, 0.02)


def _opacity_density(u, v, lungs, patches: list, rng: np.random.Generator) -> np.ndarray:
    """Patchy ground-glass opacity: Gaussian patches broken up by a blotchy texture, inside the lungs."""
    extent = np.zeros_like(u)
    for pu, pv, radius, strength in patches:
        extent += strength * np.exp(((u - pu) ** 2 + (v - pv) ** 2) * np.float32(-0.5 / radius**2))
    blotches = np.clip(0.55 + 0.6 * _smooth_noise(rng, 16, u.shape), 0.15, 1.0)
    return np.minimum(extent, 0.3) * blotches * lungs


# --- film -------------------------------------------------------------------------------------


def _expose(density: np.ndarray, exposure: dict) -> np.ndarray:
    """Density to film brightness in [0, 1]; a gamma sets its mean to the sampled target."""
    brightness = 1.0 - np.exp(-exposure["attenuation"] * density)
    peak = float(brightness.max())
    if peak <= 0.0:
        return brightness
    brightness = np.clip(brightness * np.float32(1.0 / (peak * exposure["white"])), 0.0, 1.0)
    # Exposure compensation: both classes end up with the same distribution of mean brightness.
    gamma = _gamma_for_mean(brightness[::3, ::3], exposure["mean"])
    return brightness ** np.float32(gamma)


def _gamma_for_mean(values: np.ndarray, target: float, steps: int = 8) -> float:
    """Gamma g with mean(values ** g) close to `target` (Newton's method; values in [0, 1])."""
    x = np.clip(values.astype(np.float64).ravel(), 1e-6, 1.0)
    log_x = np.log(x)
    gamma = 1.0
    for _ in range(steps):
        powered = x**gamma
        slope = float((powered * log_x).mean())  # d mean / d gamma, always < 0
        if slope >= 0.0:
            break
        gamma = float(np.clip(gamma - (powered.mean() - target) / slope, 0.25, 4.0))
    return gamma


def _finish(intensity: np.ndarray, size: int, exposure: dict, rng: np.random.Generator) -> np.ndarray:
    """Blur, resize to `size` and add pixel noise; uint8 [size, size]."""
    image = Image.fromarray((intensity * 255.0 + 0.5).astype(np.uint8))
    blur = exposure["blur"] * image.size[0]  # on the render grid: cheaper than at full size
    if blur >= 0.3:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    pixels = rng.standard_normal((size, size), dtype=np.float32)
    pixels *= np.float32(255.0 * exposure["noise"])
    pixels += np.asarray(image, dtype=np.float32) + np.float32(0.5)
    return np.clip(pixels, 0.0, 255.0, out=pixels).astype(np.uint8)

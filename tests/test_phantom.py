"""The built-in synthetic chest-X-ray-like images: determinism, keys, variation, class signal."""

import re

import numpy as np
import pytest

from covid_keras import labels, phantom

SIZE = 64


def _dataset(per_class: int, seed: int = 0, size: int = SIZE):
    items = list(phantom.iter_phantoms(per_class, seed=seed, size=size))
    images = np.stack([image for _, _, image in items]).astype(np.float32)
    label_array = np.array([label for _, label, _ in items])
    return images, label_array


def _best_threshold_accuracy(feature: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the best one-feature threshold classifier, either direction."""
    best = 0.0
    for threshold in np.unique(feature):
        above = (feature >= threshold) == y
        best = max(best, above.mean(), 1.0 - above.mean())
    return float(best)


def _lower_lung_zones(images: np.ndarray) -> np.ndarray:
    """Mean intensity of both lower lung zones (rows 55-75 %, lateral thirds of each half)."""
    size = images.shape[-1]
    rows = slice(int(0.55 * size), int(0.75 * size))
    left = images[:, rows, int(0.15 * size) : int(0.40 * size)]
    right = images[:, rows, int(0.60 * size) : int(0.85 * size)]
    return (left.mean(axis=(1, 2)) + right.mean(axis=(1, 2))) / 2.0


def test_class_names_follow_labels():
    assert phantom.CLASS_NAMES == labels.BINARY_CLASSES
    assert phantom.CLASS_NAMES[1] == "COVID"


@pytest.mark.parametrize("size", [32, 61, 299])
def test_render_is_deterministic_grey_uint8(size):
    first = phantom.render_phantom(1, seed=123, size=size)
    again = phantom.render_phantom(1, seed=123, size=size)
    assert first.shape == (size, size)
    assert first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert first.max() > first.min() + 100  # a real picture, not a flat field


def test_keys_are_unique_stable_and_a_smaller_set_is_a_prefix():
    small = list(phantom.iter_phantoms(3, seed=5, size=32))
    large = list(phantom.iter_phantoms(5, seed=5, size=32))
    keys = [key for key, _, _ in large]
    assert len(set(keys)) == len(keys) == 10
    assert all(re.fullmatch(r"phantom-(normal|covid)-\d{6}", key) for key in keys)
    assert sorted(label for _, label, _ in large) == [0] * 5 + [1] * 5
    for (key, label, image), (key2, label2, image2) in zip(small, large):
        assert (key, label) == (key2, label2)
        np.testing.assert_array_equal(image, image2)
    # Any image can be re-rendered alone from (seed, label, index).
    key, label, image = large[7]
    index = int(key.rsplit("-", 1)[1])
    assert key.split("-")[1] == phantom.CLASS_NAMES[label].lower()
    np.testing.assert_array_equal(image, phantom.render_phantom(label, phantom.phantom_seed(5, index), 32))


def test_different_seeds_give_different_images():
    first, _ = _dataset(4, seed=0)
    second, _ = _dataset(4, seed=1)
    assert np.abs(first - second).mean(axis=(1, 2)).min() > 5.0


def test_images_of_one_class_vary():
    images, y = _dataset(12)
    for label in (0, 1):
        group = images[y == label]
        pairwise = np.abs(group[:, None] - group[None, :]).mean(axis=(2, 3))
        off_diagonal = pairwise[~np.eye(len(group), dtype=bool)]
        assert off_diagonal.min() > 3.0
        assert group.mean(axis=(1, 2)).std() > 5.0  # exposure varies too


def test_classes_differ_in_lower_lung_zones_not_in_mean_brightness():
    images, y = _dataset(100)
    mean_brightness = images.mean(axis=(1, 2))
    assert _best_threshold_accuracy(mean_brightness, y) <= 0.70
    zones = _lower_lung_zones(images)
    assert zones[y == 1].mean() - zones[y == 0].mean() > 6.0


def test_anatomy_dark_lungs_bright_mediastinum_black_background():
    images, y = _dataset(20)
    average = images[y == 0].mean(axis=0)
    lungs = (average[24:40, 12:24].mean() + average[24:40, 40:52].mean()) / 2.0
    mediastinum = average[20:40, 29:35].mean()
    corners = np.mean([average[:3, :3], average[:3, -3:]])
    assert mediastinum > lungs + 30.0
    assert corners < 30.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: phantom.render_phantom(2, seed=0),
        lambda: phantom.render_phantom(0, seed=0, size=4),
        lambda: phantom.render_phantom(0, seed=-1),
        lambda: list(phantom.iter_phantoms(-1)),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()

from covid_keras.evaluation import images as eval_images
from covid_keras.evaluation import judge as eval_judge

"""Tiny stand-ins shared by the evaluation tests: 32 px blob images and generators by the model contract."""

import keras
import numpy as np

SIZE = 32
TINY_RECIPE = eval_judge.ClassifierRecipe(image_size=SIZE, base_filters=8, augment=False, epochs=6, patience=6, batch_size=8)


def blob_images(n: int, label: int, seed: int) -> np.ndarray:
    """uint8 [n, 32, 32, 1]: a noisy bright blob on the left (label 0) or the right (label 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = []
    for _ in range(n):
        cx = (8 if label == 0 else 24) + rng.normal(0, 1.5)
        cy = 16 + rng.normal(0, 3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rng.uniform(9, 25)))
        image = 40 + 180 * blob + rng.normal(0, 8, (SIZE, SIZE))
        images.append(np.clip(image, 0, 255))
    return np.asarray(images, np.uint8)[..., None]


def blob_dataset(per_class: int, seed: int) -> eval_images.LabelledImages:
    images = np.concatenate([blob_images(per_class, label, seed + label) for label in (0, 1)])
    return eval_images.LabelledImages(images, np.repeat([0, 1], per_class))


def stand_in_generator(noise_dim: int = 8, seed: int = 0) -> keras.Model:
    """A conditional generator by the model contract: a fixed map of noise and label to 32 px."""
    noise = keras.Input((noise_dim,), name="noise")
    label = keras.Input((), dtype="int32", name="label")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(2, 8)(keras.ops.expand_dims(label, -1)))
    x = keras.layers.Concatenate()([noise, embedded])
    x = keras.layers.Dense(8 * 8 * 4, activation="relu")(x)
    x = keras.layers.Reshape((8, 8, 4))(x)
    x = keras.layers.UpSampling2D(4)(x)
    image = keras.layers.Conv2D(1, 3, padding="same", activation="tanh",
                                kernel_initializer=keras.initializers.GlorotUniform(seed))(x)
    return keras.Model([noise, label], image)


def template_generator(templates: np.ndarray, noise_dim: int = 8, wobble: float = 0.05) -> keras.Model:
    """A generator whose image for label k is templates[k] (uint8 [C, S, S, 1]) plus a little of its noise:
    label-faithful when the templates are class means, label-swapped when they are given reversed."""
    num_classes, size = templates.shape[0], templates.shape[1]
    noise = keras.Input((noise_dim,), name="noise")
    label = keras.Input((), dtype="int32", name="label")
    flat = templates.reshape(num_classes, -1).astype(np.float32) / 127.5 - 1.0
    lookup = keras.layers.Embedding(num_classes, size * size, embeddings_initializer=keras.initializers.Constant(flat),
                                    trainable=False)
    base = keras.layers.Flatten()(lookup(keras.ops.expand_dims(label, -1)))
    wiggle = keras.layers.Dense(size * size, kernel_initializer=keras.initializers.RandomNormal(0.0, wobble, seed=0))(noise)
    image = keras.layers.Reshape((size, size, 1))(keras.ops.clip(base + wiggle, -1.0, 1.0))
    return keras.Model([noise, label], image)

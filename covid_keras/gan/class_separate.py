"""One GAN per class: a run whose generator is a generator per class, each trained with its own
discriminator on that class's train images alone (`GanConfig.class_separate`).

Why: a conditional generator may ignore its label. For one noise, the `guided` preset's Normal and
COVID samples are nearly the same image and an independent judge labels them near chance
(docs/results.md), since a discriminator that scores realism well without the label gives the
generator no reason to use it. A discriminator that has only ever seen one class's real images
leaves no such way out: whatever tells the classes apart in real images must be in that class's
samples for them to pass. Frid-Adar et al. (2018) trained one DCGAN per lesion class for the same
augmentation purpose. The cost: each generator learns from its class's images only; at equal
epochs the per-class runs together take the generator steps of one conditional run.

Layout (`run_dir.class_run_dir`): the run folder holds config.json (the whole run) and
`classes/<class name>/`, each an
ordinary run folder trained on that class's `train_files`, resumed and checkpointed as any run.
`training.load_generator` on the parent returns `combine_generators(...)` of the class runs, which
keeps the generator contract ([noise, label] -> image), so sampling, filtering, the evidence
protocol and export take it unchanged.
"""

from __future__ import annotations

from typing import Sequence

import keras


def files_of_class(names_and_labels: Sequence[tuple[str, int]], label: int) -> list[str]:
    """The file names labelled `label`, sorted."""
    return sorted(name for name, y in names_and_labels if y == label)


@keras.saving.register_keras_serializable(package="covid_keras")
class ConstantLabel(keras.layers.Layer):
    """A batch of `label`, shaped like the label input: feeds one class's generator its own class."""

    def __init__(self, label: int, **kwargs):
        super().__init__(**kwargs)
        self.label = int(label)

    def call(self, labels):
        return keras.ops.full_like(keras.ops.cast(labels, "int32"), self.label)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "label": self.label}


@keras.saving.register_keras_serializable(package="covid_keras")
class PickByLabel(keras.layers.Layer):
    """[labels [B], images of class 0 [B, ...], images of class 1 [B, ...], ...] -> each row's
    image from its label's input."""

    def call(self, inputs):
        labels, images = inputs[0], list(inputs[1:])
        stacked = keras.ops.stack(images, axis=1)  # [B, C, ...]
        one_hot = keras.ops.one_hot(keras.ops.cast(labels, "int32"), len(images), dtype=stacked.dtype)
        one_hot = keras.ops.reshape(one_hot, keras.ops.shape(one_hot) + (1,) * (len(stacked.shape) - 2))
        return keras.ops.sum(stacked * one_hot, axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape[1]


def combine_generators(generators: Sequence[keras.Model], name: str = "class_separate_generator") -> keras.Model:
    """One generator by the contract [noise [B, Z], label [B]] -> images, from one generator per class
    (index = label). Every generator runs on every row; a row keeps its label's image."""
    if len(generators) < 2:
        raise ValueError(f"a class-separate generator needs one generator per class (>= 2), got {len(generators)}")
    noise_dims = {int(g.inputs[0].shape[-1]) for g in generators}
    shapes = {tuple(g.output_shape[1:]) for g in generators}
    if len(noise_dims) != 1 or len(shapes) != 1:
        raise ValueError(f"the class generators differ in noise size {sorted(noise_dims)} or image shape {sorted(shapes)}")
    noise = keras.Input((noise_dims.pop(),), name="noise")
    label = keras.Input((), dtype="int32", name="label")
    images = [g([noise, ConstantLabel(c, name=f"label_{c}")(label)]) for c, g in enumerate(generators)]
    return keras.Model([noise, label], PickByLabel(name="pick_by_label")([label, *images]), name=name)

"""The conditional GAN's networks in Keras 3: the study's generator and discriminator, their options, their layers.

Generator: label -> Embedding -> Dense -> a base-size map, concatenated channel-wise with the noise
map (Dense -> ReLU -> reshape); stride-2 `Conv2DTranspose` k4 "conv_layer_set" blocks (BN + ReLU);
a final stride-1 `Conv2DTranspose` + Tanh block. The base size and the cropping of each block (the
Keras form of PyTorch's `padding` / `output_padding`) come from `upsampling_plan`, so any image size
the blocks can reach comes out exactly that size.

Discriminator: label -> Embedding -> Dense(H*W) -> an HxWx1 plane concatenated with the image;
conv k4 s1 + LeakyReLU; stride-2 conv + BN + LeakyReLU sets; conv k4 s1 + LeakyReLU; Flatten;
Dropout; Dense(1). It returns a LOGIT: the study's Sigmoid + BCE is the same function as
BCE(from_logits=True) on the logit, which is numerically stable when D saturates (the study's runs
drove D's loss to 0). P(real) is `sigmoid(logit)`.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from covid_keras.gan.config import (
    DISCRIMINATOR_CONDITIONINGS,
    DISCRIMINATOR_NORMS,
    GENERATOR_CONDITIONINGS,
    GENERATOR_UPSAMPLINGS,
    check_choice,
)

MAX_BASE_SIZE = 32
# PyTorch BatchNorm2d defaults (momentum 0.1 there is 0.9 here), as in the study. Convs before BN
# have no bias (the study's had one): BN removes it, so its gradient is rounding noise, which Adam
# turns into full-size random steps.
_BN = dict(momentum=0.9, epsilon=1e-5)


def _batch_norm(name: str, **kwargs) -> keras.layers.BatchNormalization:
    """BatchNorm, synchronized when built under a strategy with several replicas.

    Synchronized, the statistics are the global batch's, as on one device; on one replica Keras'
    synchronized BN still takes its all-reduce path, which bench/gan_speedups.py measured as slower.
    """
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
    return keras.layers.BatchNormalization(name=name, synchronized=synchronized, **_BN, **kwargs)




@keras.saving.register_keras_serializable(package="covid_keras")
class ClassConditionalAffine(keras.layers.Layer):
    """[x [B, H, W, C], label [B]] -> x * (1 + gamma[label]) + beta[label]: BatchNorm's affine part per class.

    Placed after a BatchNormalization without its own scale and centre, this is conditional
    BatchNorm (de Vries et al. 2017), the generator conditioning of SNGAN-projection and BigGAN.
    Starts as the identity (gamma = beta = 0).
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)

    def build(self, input_shape):
        channels = int(input_shape[0][-1])
        self.gamma = self.add_weight(name="gamma", shape=(self.num_classes, channels), initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=(self.num_classes, channels), initializer="zeros")

    def call(self, inputs):
        x, label = inputs
        label = keras.ops.cast(label, "int32")
        gamma = keras.ops.take(self.gamma, label, axis=0)[:, None, None, :]
        beta = keras.ops.take(self.beta, label, axis=0)[:, None, None, :]
        return x * (1.0 + keras.ops.cast(gamma, x.dtype)) + keras.ops.cast(beta, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="covid_keras")
class MinibatchStddev(keras.layers.Layer):
    """[B, H, W, C] -> [B, H, W, C + 1]: appends the batch's mean per-feature standard deviation.

    ProGAN's counter to mode collapse: a batch of near-identical fakes has a telltale low value
    here, which the discriminator can use and the generator can only fix by varying its output.
    """

    def call(self, x):
        std = keras.ops.sqrt(keras.ops.var(keras.ops.cast(x, "float32"), axis=0) + 1e-8)
        value = keras.ops.cast(keras.ops.mean(std), x.dtype)
        return keras.ops.concatenate([x, keras.ops.ones_like(x[..., :1]) * value], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


@keras.saving.register_keras_serializable(package="covid_keras")
class ClassProjection(keras.layers.Layer):
    """[features [B, D], label [B]] -> <embed(label), features> [B, 1]: the projection discriminator's class term."""

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)

    def build(self, input_shape):
        self.embedding = self.add_weight(
            name="embedding", shape=(self.num_classes, int(input_shape[0][-1])), initializer="glorot_uniform"
        )

    def call(self, inputs):
        features, label = inputs
        embedded = keras.ops.take(self.embedding, keras.ops.cast(label, "int32"), axis=0)
        return keras.ops.sum(keras.ops.cast(embedded, features.dtype) * features, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


# --------------------------------------------------------------------------- generator


def upsampling_plan(image_size: int, num_blocks: int) -> tuple[int, list[int]]:
    """(base size, crop per stride-2 block) so that the generator outputs exactly `image_size`.

    A k4 s2 `Conv2DTranspose` with "valid" padding maps n -> 2n + 2; cropping c rows makes
    2n + 2 - c (PyTorch: padding and output_padding). The final k4 s1 block maps n -> n + 1
    (n + 3, cropped by 2, like the study's padding 1). Working back from the output with the
    smallest crop (0 or 1) gives, at 150 px with 4 blocks, 8 -> 17 -> 36 -> 74 -> 149 -> 150:
    the study's 8x8 base and output (its intermediate sizes differ slightly).
    """
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if num_blocks < 1:
        raise ValueError(f"the generator needs at least one upsampling block, got {num_blocks}")
    size = int(image_size) - 1  # input of the final k4 s1 block
    crops = []
    for _ in range(num_blocks):
        previous = (size - 1) // 2
        if previous < 1:
            raise ValueError(
                f"image_size {image_size} is too small for {num_blocks} upsampling blocks "
                f"(generator_filters has {num_blocks} entries): use fewer blocks or a larger size"
            )
        crops.append(2 * previous + 2 - size)
        size = previous
    if size > MAX_BASE_SIZE:
        raise ValueError(
            f"image_size {image_size} with {num_blocks} upsampling blocks needs a {size}x{size} base map "
            f"(max {MAX_BASE_SIZE}): add entries to generator_filters"
        )
    return size, crops[::-1]


def _crop(crop: int, name: str) -> keras.layers.Layer:
    # PyTorch's output_padding keeps the extra row at the bottom/right, so odd crops take it from the top/left.
    first, second = (crop + 1) // 2, crop // 2
    return keras.layers.Cropping2D(((first, second), (first, second)), name=name)


def build_generator(
    image_size: int,
    noise_dim: int = 128,
    num_classes: int = 2,
    embedding_dim: int = 50,
    filters: Sequence[int] = (256, 128, 64, 32),
    base_channels: int = 128,
    conditioning: str = "concat",
    upsampling: str = "transpose",
    name: str = "generator",
) -> keras.Model:
    """Inputs [noise float32 [B, noise_dim], label int32 [B]] -> image float32 [B, S, S, 1] in [-1, 1].

    `conditioning` "concat" is the study's (a label plane beside the noise map); "class_bn" also
    makes every block's BatchNorm class-conditional.
    `upsampling` "transpose" is the study's k4 s2 `Conv2DTranspose`; "resize" doubles the map by
    nearest neighbour and convolves it (k3, zero-padded by 2 so each block keeps the transposed
    block's size): every output pixel then gets the same number of kernel taps, so the blocks
    cannot paint a period-2 or period-4 checkerboard (Odena et al. 2016).
    """
    check_choice("generator conditioning", conditioning, GENERATOR_CONDITIONINGS)
    check_choice("generator upsampling", upsampling, GENERATOR_UPSAMPLINGS)
    base, crops = upsampling_plan(image_size, len(filters))
    noise = keras.Input((noise_dim,), name="noise")
    label = keras.Input((), dtype="int32", name="label")

    x = keras.layers.Dense(base * base * base_channels, name="noise_dense")(noise)
    x = keras.layers.ReLU(name="noise_relu")(x)
    x = keras.layers.Reshape((base, base, base_channels), name="noise_map")(x)
    y = keras.layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
    y = keras.layers.Dense(base * base, name="label_dense")(y)
    y = keras.layers.Reshape((base, base, 1), name="label_map")(y)
    x = keras.layers.Concatenate(axis=-1, name="noise_label_concat")([x, y])

    for i, (n_filters, crop) in enumerate(zip(filters, crops), start=1):
        block = f"conv_layer_set_{i}"
        if upsampling == "resize":
            x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{block}_upsample")(x)
            x = keras.layers.ZeroPadding2D(2, name=f"{block}_pad")(x)  # 2n -> 2n + 2 after the k3 conv
            x = keras.layers.Conv2D(n_filters, 3, padding="valid", use_bias=False, name=f"{block}_conv")(x)
        else:
            x = keras.layers.Conv2DTranspose(
                n_filters, 4, strides=2, padding="valid", use_bias=False, name=f"{block}_deconv"
            )(x)
        if crop:
            x = _crop(crop, f"{block}_crop")(x)
        if conditioning == "class_bn":
            x = _batch_norm(f"{block}_bn", center=False, scale=False)(x)
            x = ClassConditionalAffine(num_classes, name=f"{block}_class_affine")([x, label])
        else:
            x = _batch_norm(f"{block}_bn")(x)
        x = keras.layers.ReLU(name=f"{block}_relu")(x)

    x = keras.layers.Conv2DTranspose(1, 4, strides=1, padding="valid", name="final_deconv")(x)
    x = _crop(2, "final_crop")(x)
    # float32 under a mixed-precision policy: images leave the generator in full precision.
    image = keras.layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model([noise, label], image, name=name)


# --------------------------------------------------------------------------- discriminator


def _valid_output_size(image_size: int, num_strided: int) -> int:
    size = image_size - 3  # first k4 s1 conv
    for _ in range(num_strided):
        size = (size - 4) // 2 + 1 if size >= 4 else 0
    return size - 3  # last k4 s1 conv


def resolve_discriminator_padding(image_size: int, num_layers: int, padding: str = "auto") -> str:
    """"valid" (the study's) where the image survives it, "same" otherwise when `padding` is "auto"."""
    if padding not in ("auto", "valid", "same"):
        raise ValueError(f"discriminator padding must be 'auto', 'valid' or 'same', got {padding!r}")
    fits_valid = _valid_output_size(image_size, num_layers - 2) >= 1
    if padding == "auto":
        return "valid" if fits_valid else "same"
    if padding == "valid" and not fits_valid:
        raise ValueError(
            f"image_size {image_size} is too small for a discriminator of {num_layers} 'valid' k4 convs: "
            "use discriminator_padding 'same' or 'auto'"
        )
    return padding


def build_discriminator(
    image_size: int,
    num_classes: int = 2,
    embedding_dim: int = 50,
    filters: Sequence[int] = (64, 64, 64, 64, 64),
    padding: str = "auto",
    leaky_relu_slope: float = 0.01,
    dropout: float = 0.5,
    conditioning: str = "concat",
    norm: str = "batch",
    auxiliary_classifier: bool = False,
    minibatch_std: bool = False,
    name: str = "discriminator",
) -> keras.Model:
    """Inputs [image float32 [B, S, S, 1], label int32 [B]] -> logit [B, 1] (P(real) = sigmoid(logit)).

    `conditioning` "concat" is the study's (a learned label plane beside the image); "projection"
    adds <embed(label), features> to the logit instead. `norm` "batch" is the study's; "spectral"
    puts spectral normalisation on every conv and dense layer and drops BatchNorm. With
    `auxiliary_classifier` the model returns [logit [B, 1], class logits [B, num_classes]].
    `minibatch_std` appends the batch's feature spread before the last conv (`MinibatchStddev`).
    """
    if len(filters) < 2:
        raise ValueError(f"the discriminator needs >= 2 conv layers (first and last), got filters={filters}")
    check_choice("discriminator conditioning", conditioning, DISCRIMINATOR_CONDITIONINGS)
    check_choice("discriminator norm", norm, DISCRIMINATOR_NORMS)
    padding = resolve_discriminator_padding(image_size, len(filters), padding)
    spectral = norm == "spectral"

    def weighted(layer: keras.layers.Layer) -> keras.layers.Layer:
        if not spectral:
            return layer
        # The wrapper computes the layer, so it carries the layer's dtype policy (float32 outputs).
        return keras.layers.SpectralNormalization(layer, dtype=layer.dtype_policy, name=f"{layer.name}_sn")

    image = keras.Input((image_size, image_size, 1), name="image")
    label = keras.Input((), dtype="int32", name="label")
    x = image
    if conditioning == "concat":
        y = keras.layers.Embedding(num_classes, embedding_dim, name="label_embedding")(label)
        y = keras.layers.Dense(image_size * image_size, name="label_dense")(y)
        y = keras.layers.Reshape((image_size, image_size, 1), name="label_plane")(y)
        x = keras.layers.Concatenate(axis=-1, name="image_label_concat")([image, y])

    x = weighted(keras.layers.Conv2D(filters[0], 4, strides=1, padding=padding, name="conv_in"))(x)
    x = keras.layers.LeakyReLU(leaky_relu_slope, name="conv_in_lrelu")(x)
    for i, n_filters in enumerate(filters[1:-1], start=1):
        block = f"conv_layer_set_{i}"
        x = weighted(keras.layers.Conv2D(
            n_filters, 4, strides=2, padding=padding, use_bias=spectral, name=f"{block}_conv"
        ))(x)
        if not spectral:
            x = _batch_norm(f"{block}_bn")(x)
        x = keras.layers.LeakyReLU(leaky_relu_slope, name=f"{block}_lrelu")(x)
    if minibatch_std:
        x = MinibatchStddev(name="minibatch_stddev")(x)
    x = weighted(keras.layers.Conv2D(filters[-1], 4, strides=1, padding=padding, name="conv_out"))(x)
    x = keras.layers.LeakyReLU(leaky_relu_slope, name="conv_out_lrelu")(x)

    features = keras.layers.Flatten(name="flatten")(x)
    features = keras.layers.Dropout(dropout, name="dropout")(features)
    # float32 under a mixed-precision policy: the losses see full-precision logits.
    logit = weighted(keras.layers.Dense(1, dtype="float32", name="logit"))(features)
    if conditioning == "projection":
        projection = ClassProjection(num_classes, dtype="float32", name="class_projection")([features, label])
        logit = keras.layers.Add(dtype="float32", name="logit_plus_projection")([logit, projection])
    if not auxiliary_classifier:
        return keras.Model([image, label], logit, name=name)
    class_logits = weighted(keras.layers.Dense(num_classes, dtype="float32", name="class_logits"))(features)
    return keras.Model([image, label], [logit, class_logits], name=name)

"""A projected discriminator (Sauer et al. 2021, "Projected GANs converge faster"): the discriminator
judges the images through a frozen pretrained network's features at several scales, and only small
heads on those features are trained.

Why here: on ~840 X-rays a discriminator learnt from scratch reads what is cheapest to read (grids,
bands, overall brightness), and its class term sees classes it has to learn from the same 840
images. A frozen pretrained network already separates fine texture (ribs, vessels, sharpness) and,
linearly, COVID from Normal; a generator that must satisfy heads on those features has to change
what such networks see. The network is InceptionV3 on purpose: the independent judge is VGG16 and
KID is measured on ResNet50 features (covid_keras.evaluation), so neither is the network the
generator was trained against. The InceptionV3 weights available offline are not ImageNet-exact
(`backbones.BACKBONES["inception_v3"]`); a discriminator needs generic pretrained features, not
ImageNet's exact numbers.

Each head: a 1x1 convolution mixing the tap's channels, stride-2 4x4 convolutions down to 4x4 or
less, a 3x3 convolution, global average pooling; its logit is Dense(1) plus the projection
<embed(label), features>. Heads are spectrally normalised; the logits of all taps are summed.
"""

from __future__ import annotations

import keras

from covid_keras.backbones import get_backbone_spec
from covid_keras.gan.guide import ImagenetInput
from covid_keras.gan.networks import ClassProjection, MinibatchStddev

# Where each backbone is tapped: (kind, which) pairs, found by `_tap_layers`. Mixed blocks have fixed
# names; the stem's pooling layers are named by a global counter, so they are found by position.
BACKBONE_TAPS = {
    "inception_v3": (("max_pooling", 0), ("name", "mixed2"), ("name", "mixed5")),
}


def _tap_layers(base: keras.Model, taps) -> list[keras.layers.Layer]:
    pools = [layer for layer in base.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    return [pools[which] if kind == "max_pooling" else base.get_layer(which) for kind, which in taps]


def check_backbone(backbone: str, input_size: int) -> None:
    """ValueError unless `backbone` can be tapped here and accepts `input_size` (without building it)."""
    if backbone not in BACKBONE_TAPS:
        raise ValueError(f"unknown discriminator backbone {backbone!r}; choose one of {sorted(BACKBONE_TAPS)}")
    minimum = get_backbone_spec(backbone).min_size
    if input_size < minimum:
        raise ValueError(f"discriminator backbone {backbone} needs an input side >= {minimum}, got {input_size}")


def backbone_features(backbone: str, input_size: int, weights: str | None = None) -> keras.Model:
    """The frozen tap model: `backbone`'s input [B, size, size, 3] -> its feature maps at the taps.

    `weights`: a local weights file for the whole backbone (`backbones.local_weights_file`), or None
    (random; a trained discriminator's weights, backbone included, come back from its checkpoint)."""
    check_backbone(backbone, input_size)
    spec = get_backbone_spec(backbone)
    base = spec.constructor(include_top=False, weights=weights, input_shape=(input_size, input_size, 3))
    features = keras.Model(
        base.inputs, [layer.output for layer in _tap_layers(base, BACKBONE_TAPS[backbone])], name=f"{backbone}_features"
    )
    features.trainable = False
    return features


def _head(x, index: int, filters: int, slope: float, minibatch_std: bool):
    """A tap's feature map -> pooled features [B, filters] (spectrally normalised convolutions)."""

    def conv(n, kernel, strides, name):
        layer = keras.layers.Conv2D(n, kernel, strides=strides, padding="same", name=name)
        return keras.layers.SpectralNormalization(layer, dtype=layer.dtype_policy, name=f"{name}_sn")

    prefix = f"head{index}"
    x = keras.layers.LeakyReLU(slope, name=f"{prefix}_mix_lrelu")(conv(filters // 2, 1, 1, f"{prefix}_mix")(x))
    size, block = int(x.shape[1]), 0
    while size > 4:
        x = conv(filters, 4, 2, f"{prefix}_down{block}")(x)
        x = keras.layers.LeakyReLU(slope, name=f"{prefix}_down{block}_lrelu")(x)
        size, block = (size + 1) // 2, block + 1
    if minibatch_std:
        x = MinibatchStddev(name=f"{prefix}_minibatch_stddev")(x)
    x = keras.layers.LeakyReLU(slope, name=f"{prefix}_out_lrelu")(conv(filters, 3, 1, f"{prefix}_out")(x))
    return keras.layers.GlobalAveragePooling2D(name=f"{prefix}_pool")(x)


def build_projected_discriminator(
    image_size: int,
    num_classes: int = 2,
    backbone: str = "inception_v3",
    input_size: int = 128,
    backbone_weights: str | None = None,
    head_filters: int = 128,
    leaky_relu_slope: float = 0.2,
    dropout: float = 0.0,
    auxiliary_classifier: bool = False,
    minibatch_std: bool = False,
    name: str = "discriminator",
) -> keras.Model:
    """Inputs [image float32 [B, S, S, 1] in [-1, 1], label int32 [B]] -> logit [B, 1], the
    discriminator contract of `networks.build_discriminator` (with `auxiliary_classifier`:
    [logit, class logits [B, num_classes]] from all heads' pooled features).

    The image is resized to `input_size` and turned into the backbone's input (`ImagenetInput`);
    the backbone (`backbone_features`) is frozen and run in inference mode, so its BatchNorm keeps
    its pretrained statistics and only the heads learn.
    """
    image = keras.Input((image_size, image_size, 1), name="image")
    label = keras.Input((), dtype="int32", name="label")
    x = ImagenetInput(backbone, input_size, name="backbone_input")(image)
    maps = backbone_features(backbone, input_size, backbone_weights)(x, training=False)
    logits, pooled = [], []
    for index, feature_map in enumerate(maps):
        features = _head(feature_map, index, head_filters, leaky_relu_slope, minibatch_std)
        features = keras.layers.Dropout(dropout, name=f"head{index}_dropout")(features)
        dense = keras.layers.Dense(1, dtype="float32", name=f"head{index}_logit")
        logit = keras.layers.SpectralNormalization(dense, dtype=dense.dtype_policy, name=f"head{index}_logit_sn")(features)
        projection = ClassProjection(num_classes, dtype="float32", name=f"head{index}_projection")([features, label])
        logits.append(keras.layers.Add(dtype="float32", name=f"head{index}_logit_plus_projection")([logit, projection]))
        pooled.append(features)
    logit = keras.layers.Add(dtype="float32", name="logit")(logits)
    if not auxiliary_classifier:
        return keras.Model([image, label], logit, name=name)
    everything = keras.layers.Concatenate(name="heads_concat")(pooled)
    dense = keras.layers.Dense(num_classes, dtype="float32", name="class_logits")
    class_logits = keras.layers.SpectralNormalization(dense, dtype=dense.dtype_policy, name="class_logits_sn")(everything)
    return keras.Model([image, label], [logit, class_logits], name=name)

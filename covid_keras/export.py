"""Versioned SavedModels that a stock TensorFlow Serving container loads with no code of ours.

Layout under a base folder (default `saved_models/`):

    saved_models/models.config                  # model_config_list; each export adds its new models
    saved_models/<name>/<version>/              # integer versions, never overwritten
    saved_models/<name>/<version>/assets.extra/model_card.json

Everything a client needs happens inside the graph: the classifier's `serving_default`
takes encoded PNG/JPEG files and does decoding, resizing and the backbone's preprocess
(`backbones.py`, the one place that knows it); the generator takes labels and seeds and
returns uint8 images and PNG bytes. Bad input fails with an `InvalidArgumentError` whose
message says what was wrong, which TF Serving returns as an error response.

The export functions take model objects and plain metadata; only the `*_from_dir` glue at
the bottom knows about `classifier.load_classifier` and `gan_training.load_generator`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import re
import shutil
import tempfile
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from covid_keras import files
from covid_keras.backbones import get_backbone_spec
from covid_keras.choices import DEFAULT_EXPORT_DIR, DEFAULT_SERVING_ROOT
from covid_keras.classifier.gradcam import GradCam, split_classifier, upsampled
from covid_keras.classifier.model import temperature_scaled
from covid_keras.labels import BINARY_CLASSES, POSITIVE_CLASS

# A decoded image costs about 3 bytes a pixel (and more while it is resized): a small PNG can
# declare 12000 x 12000 pixels. Larger headers are refused before decoding, in the signature itself.
MAX_IMAGE_PIXELS = 50_000_000
MODELS_CONFIG = "models.config"
MODEL_CARD = "model_card.json"
# TF Serving's loader ignores this folder; it is the documented place for extra files.
CARD_FOLDER = "assets.extra"

CLASSIFY_FILES = "serving_default"
CLASSIFY_IMAGES = "predict_images"
EXPLAIN_FILES = "explain"
GENERATE_BY_INDEX = "serving_default"
GENERATE_BY_NAME = "generate_by_name"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class ExportResult:
    name: str
    version: int
    path: pathlib.Path  # the version folder
    card_path: pathlib.Path


# --------------------------------------------------------------------------- layout


def existing_versions(model_dir: str | os.PathLike) -> list[int]:
    """Integer version folders of one model, ascending (what TF Serving would see)."""
    model_dir = pathlib.Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def check_model_name(name: str) -> str:
    if not _MODEL_NAME.match(name):
        raise ValueError(
            f"model name {name!r} must be letters, digits, '_', '-' or '.' "
            "(it becomes a folder and part of the serving URL)"
        )
    return name


def write_models_config(
    base_dir: str | os.PathLike = DEFAULT_EXPORT_DIR, serving_root: str = DEFAULT_SERVING_ROOT
) -> pathlib.Path:
    """Add every model under base_dir that `models.config` does not name yet (model_config_list text format).

    The file is otherwise left byte for byte as it is: entries, comments, a user's
    `model_version_policy`, labels, models that live elsewhere; new entries are inserted before
    the list's closing brace, and a file that names every model is not rewritten. `serving_root`
    is where the server sees base_dir (the docker mount point). A file that does not parse is
    refused (`read_models_config`), not replaced.
    """
    base_dir = pathlib.Path(base_dir)
    path = base_dir / MODELS_CONFIG
    text = path.read_text() if path.exists() else ""
    named = read_models_config(path) if path.exists() else None
    names = sorted(
        p.name for p in base_dir.iterdir() if p.is_dir() and _MODEL_NAME.match(p.name) and existing_versions(p)
    )
    entries = "".join(
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{serving_root.rstrip("/")}/{name}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        for name in names if name not in (named or ())
    )
    if path.exists() and not entries:
        return path  # nothing to add: not even rewritten
    if named is None:  # no list yet (no file, or only comments): one after what is there
        separator = "" if not text or text.endswith("\n") else "\n"
        text = text + separator + "model_config_list {\n" + entries + "}\n"
    else:
        closing = _closing_brace(text, path)
        line_start = text.rfind("\n", 0, closing) + 1
        if text[line_start:closing].strip():  # the brace ends a line of entries: new ones below it
            text = text[:closing] + "\n" + entries + text[closing:]
        else:
            text = text[:line_start] + entries + text[line_start:]
    # Written to a temporary file and renamed, since a server may poll this file.
    files.atomic_write_text(path, text)
    return path


def read_models_config(path: str | os.PathLike) -> list[str] | None:
    """The model names a models.config lists (None: it holds no model_config_list, e.g. only comments).

    Parsed as TF Serving parses it, with the protobuf text format of `tensorflow-serving-api` when it
    is installed (a stricter reading of our own otherwise); a file that does not parse is a ValueError
    naming it, and nothing may be exported until it is fixed."""
    path = pathlib.Path(path)
    text = path.read_text()
    refusal = "fix or move it; nothing was exported and the file was left as it is"
    try:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError:
        return _names_without_protobuf(text, path, refusal)
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ValueError(f"{path} is not a TF Serving model server config ({error}); {refusal}") from None
    kind = config.WhichOneof("config")
    if kind is None:
        return None
    if kind != "model_config_list":
        raise ValueError(f"{path} holds a {kind}, not a model_config_list; {refusal}")
    return [entry.name for entry in config.model_config_list.config]


def check_models_config(base_dir: str | os.PathLike) -> None:
    """Refuse (ValueError naming it) a models.config under base_dir that export could not add to."""
    path = pathlib.Path(base_dir) / MODELS_CONFIG
    if path.exists() and read_models_config(path) is not None:
        _closing_brace(path.read_text(), path)


def _structure(text: str):
    """(index, character) of every character outside comments, and whether it is inside a quoted string."""
    i, quote = 0, None
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                yield i, char, True
                i += 1
                if i < len(text):
                    yield i, text[i], True
                i += 1
                continue
            if char == quote or char == "\n":
                quote = None
            yield i, char, True
        elif char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        else:
            if char in "\"'":
                quote = char
            yield i, char, quote is not None
        i += 1


def _closing_brace(text: str, path) -> int:
    """Where `model_config_list { ... }` closes."""
    depth = 0
    for index, char, quoted in _structure(text):
        if quoted or char not in "{}<>":
            continue
        depth += 1 if char in "{<" else -1
        if depth == 0:
            return index
    raise ValueError(f"{path} has unbalanced braces; fix or move it; nothing was exported and the file was left as it is")


_CONFIG_NAME = re.compile(r'\bname\s*:\s*"([^"]*)"')


def _names_without_protobuf(text: str, path, refusal: str) -> list[str] | None:
    code = "".join(char for _, char, _ in _structure(text))
    if not code.strip():
        return None
    if not re.match(r"\s*model_config_list\s*:?\s*[{<]", code):
        raise ValueError(f"{path} is not a TF Serving model_config_list; {refusal}")
    closing = _closing_brace(text, path)
    if "".join(char for index, char, _ in _structure(text) if index > closing).strip():
        raise ValueError(f"{path} has text after the model_config_list; {refusal}")
    return _CONFIG_NAME.findall(code)


def _write_new_version(archive: keras.export.ExportArchive, base_dir, name, card: dict) -> ExportResult:
    """Write the archive as the next version of `name`, then refresh models.config.

    It is written into a hidden temporary folder first and renamed, so a server polling
    the model folder never loads a half-written version.
    """
    model_dir = pathlib.Path(base_dir) / check_model_name(name)
    check_models_config(base_dir)  # one that cannot take the new entry: no version written either
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir = pathlib.Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir))
    tmp_dir.chmod(0o755)  # mkdtemp makes it owner-only; the server may run as another user
    try:
        archive.write_out(str(tmp_dir), verbose=False)
        version = (existing_versions(model_dir) or [0])[-1] + 1
        card = {"name": name, "version": version, **card}
        card_path = tmp_dir / CARD_FOLDER / MODEL_CARD
        card_path.parent.mkdir(exist_ok=True)
        card_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
        final_dir = model_dir / str(version)
        if final_dir.exists():  # another export took this number meanwhile
            raise FileExistsError(f"{final_dir} already exists; versions are never overwritten")
        os.rename(tmp_dir, final_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    write_models_config(base_dir)
    return ExportResult(name, version, final_dir, final_dir / CARD_FOLDER / MODEL_CARD)


def _card_common(kind: str, signatures: dict, metadata: Mapping[str, Any] | None) -> dict:
    metadata = dict(metadata or {})
    return {
        "kind": kind,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "data": metadata.get("data", metadata.get("dataset")),
        "weights": metadata.get("weights"),
        "metrics": metadata.get("metrics"),
        "signatures": signatures,
        "training_metadata": metadata,
    }


# --------------------------------------------------------------------------- classifier


def _decode_image_file(data: tf.Tensor, index: tf.Tensor, image_size: int) -> tf.Tensor:
    """One encoded PNG/JPEG (any size; grey, RGB or RGBA) -> float32 [S, S, 3] RGB in [0, 255]."""
    head = tf.strings.substr(data, 0, len(PNG_MAGIC))
    is_png_or_jpeg = tf.logical_or(tf.equal(head, PNG_MAGIC), tf.io.is_jpeg(data))
    # The first bytes as numbers: raw, a GIF's would make the message invalid UTF-8 for the client.
    first_bytes = tf.io.decode_raw(head, tf.uint8)
    message = tf.strings.format(
        "image_bytes[{}] is not a PNG or JPEG file (its first bytes are {})", (index, first_bytes), summarize=8
    )
    check = tf.debugging.Assert(is_png_or_jpeg, [message])
    with tf.control_dependencies([check]):
        height, width = _header_size(data)
        pixels = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
        too_big = tf.strings.format("image_bytes[{}] is {} x {} pixels, more than the limit of {} pixels",
                                    (index, width, height, MAX_IMAGE_PIXELS))
        size_check = tf.debugging.Assert(pixels <= MAX_IMAGE_PIXELS, [too_big])
    with tf.control_dependencies([size_check]):
        # channels=3 turns grey into RGB and drops an alpha channel.
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    return resize_rgb(tf.cast(image, tf.float32), image_size)


def _header_size(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(height, width) from a PNG's IHDR or a JPEG's frame header, without decoding the pixels."""

    def png_size():
        # Padded, so a file cut inside its header reads as 0 x 0 here and fails in the decoder, by name.
        padded = tf.strings.join([data, tf.constant(b"\0" * 24)])
        ihdr = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 16, 8), tf.uint8), tf.int64)
        big_endian = lambda b: ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]  # noqa: E731
        return big_endian(ihdr[4:8]), big_endian(ihdr[0:4])

    def jpeg_size():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    return tf.cond(tf.io.is_jpeg(data), jpeg_size, png_size)


def resize_rgb(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """The resize the exported classifier applies: bilinear with antialias, float in, float out."""
    image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
    return tf.ensure_shape(image, (image_size, image_size, 3))


def _assert_not_empty(batch: tf.Tensor, input_name: str) -> tf.Operation:
    return tf.debugging.assert_positive(
        tf.shape(batch)[0], message=f"{input_name} is an empty batch: send at least one item"
    )


class _ClassifierServing:
    """The classifier's serving functions (traced by ExportArchive; closes over the model)."""

    def __init__(self, model: keras.Model, backbone: str, image_size: int, class_names, threshold: float,
                 temperature: float = 1.0, gradcam=None):
        self.model = model
        self.preprocess = get_backbone_spec(backbone).preprocess
        self.image_size = image_size
        self.class_names = tf.constant(list(class_names))
        self.threshold = threshold
        self.temperature = temperature
        self.gradcam = gradcam

    def _decode_files(self, image_bytes):
        with tf.control_dependencies([_assert_not_empty(image_bytes, "image_bytes")]):
            indices = tf.range(tf.shape(image_bytes)[0])
        return tf.map_fn(
            lambda item: _decode_image_file(item[0], item[1], self.image_size),
            (image_bytes, indices),
            fn_output_signature=tf.TensorSpec((self.image_size, self.image_size, 3), tf.float32),
        )

    def classify_files(self, image_bytes):
        return self._classify_rgb(self._decode_files(image_bytes))

    def explain_files(self, image_bytes):
        """The files' P(COVID) and label, with the Grad-CAM map of that label at the input's size."""
        probability, heatmaps = self.gradcam(self.preprocess(self._decode_files(image_bytes)),
                                             threshold=self.threshold, temperature=self.temperature)
        return {**self._outputs(probability), "heatmap": upsampled(heatmaps, self.image_size)}

    def classify_images(self, images):
        channels = tf.shape(images)[-1]
        checks = [
            _assert_not_empty(images, "images"),
            tf.debugging.Assert(
                tf.reduce_any(tf.equal(channels, [1, 3, 4])),
                ["images must have 1 (grey), 3 (RGB) or 4 (RGBA) channels, got", channels],
            ),
        ]
        with tf.control_dependencies(checks):
            rgb = images[..., :3]  # drops alpha; grey stays one channel
        rgb = tf.tile(rgb, [1, 1, 1, 3 // tf.shape(rgb)[-1]])
        rgb = tf.map_fn(
            lambda image: resize_rgb(image, self.image_size),
            rgb,
            fn_output_signature=tf.TensorSpec((self.image_size, self.image_size, 3), tf.float32),
        )
        return self._classify_rgb(rgb)

    def _classify_rgb(self, rgb):
        return self._outputs(temperature_scaled(self.model(self.preprocess(rgb), training=False)[:, 0], self.temperature))

    def _outputs(self, probability):
        # COVID when P(COVID) > threshold, the rule of evaluation.metrics and operating_rule.
        label = tf.gather(self.class_names, tf.cast(probability > self.threshold, tf.int32))
        return {"covid_probability": probability, "label": label}


def classifier_signatures(image_size: int, class_names: Sequence[str], temperature: float = 1.0,
                          threshold: float = 0.5, explain: bool = False) -> dict:
    """The classifier's serving contract, as written into the model card."""
    outputs = {
        "covid_probability": {"dtype": "float32", "shape": [None],
                              "meaning": f"P({class_names[1]}), temperature-scaled (T = {temperature:.4g})"},
        "label": {"dtype": "string", "shape": [None],
                  "meaning": f"{class_names[1]} when covid_probability > {threshold:.6g}, else {class_names[0]}"},
    }
    file_inputs = {
        "image_bytes": {
            "dtype": "string",
            "shape": [None],
            "meaning": "encoded PNG or JPEG files, any size, grey/RGB/RGBA; "
            'REST: {"instances": [{"b64": "<base64 of the file>"}, ...]}',
        }
    }
    explain_signature = {
        EXPLAIN_FILES: {
            "inputs": file_inputs,
            "outputs": {**outputs, "heatmap": {
                "dtype": "float32", "shape": [None, image_size, image_size],
                "meaning": "Grad-CAM of the label's class at the backbone's cut layer, 0..1, over the "
                           f"{image_size}x{image_size} resized input (stretch it over the file to overlay)"}},
        }
    } if explain else {}
    return {
        CLASSIFY_FILES: {
            "inputs": file_inputs,
            "outputs": outputs,
        },
        **explain_signature,
        CLASSIFY_IMAGES: {
            "inputs": {
                "images": {
                    "dtype": "float32",
                    "shape": [None, None, None, None],
                    "meaning": "decoded images [B, H, W, C], C in {1, 3, 4}, values in [0, 255]",
                }
            },
            "outputs": outputs,
        },
        "preprocessing": f"decode, resize to {image_size}x{image_size} (bilinear, antialias), "
        "backbone preprocess_input: all inside the graph",
    }


def export_classifier(
    model: keras.Model,
    *,
    backbone: str,
    image_size: int,
    name: str,
    base_dir: str | os.PathLike = DEFAULT_EXPORT_DIR,
    class_names: Sequence[str] = BINARY_CLASSES,
    threshold: float = 0.5,
    temperature: float = 1.0,
    metadata: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Export a classifier (input: preprocessed [B, S, S, 3]; output [B, 1] = P(COVID)).

    The signatures return P(COVID) after `temperature` and the label "COVID when P > threshold"
    (`classifier.OperatingRule`). A classifier assembled by `assemble_classifier` also gets the
    `explain` signature (Grad-CAM). `metadata` (data, weights, metrics, ...) goes into the model
    card as given.
    """
    check_model_name(name)
    class_names = list(class_names)
    if len(class_names) != 2 or class_names[1] != POSITIVE_CLASS:
        raise ValueError(f"class_names must be two names with {POSITIVE_CLASS!r} at index 1, got {class_names}")
    input_shape = tuple(model.input_shape)
    if input_shape[1:3] not in ((image_size, image_size), (None, None)) or input_shape[-1] != 3:
        raise ValueError(f"model input shape {input_shape} does not match image_size={image_size} with 3 channels")

    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    try:
        gradcam = GradCam(split_classifier(model))
    except ValueError:  # not assembled from a backbone and our head: no explanation to serve
        gradcam = None
    serving = _ClassifierServing(model, backbone, image_size, class_names, threshold, temperature, gradcam)
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint becomes serving_default; its single input makes REST
    # {"instances": [{"b64": ...}]} work.
    archive.add_endpoint(
        CLASSIFY_FILES, serving.classify_files, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")]
    )
    archive.add_endpoint(
        CLASSIFY_IMAGES,
        serving.classify_images,
        input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")],
    )
    if gradcam is not None:
        archive.add_endpoint(
            EXPLAIN_FILES, serving.explain_files,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        )
    signatures = classifier_signatures(image_size, class_names, temperature, threshold, explain=gradcam is not None)
    card = _card_common("classifier", signatures, metadata)
    card.update(backbone=backbone, image_size=image_size, class_names=class_names, threshold=threshold,
                temperature=temperature)
    return _write_new_version(archive, base_dir, name, card)


# --------------------------------------------------------------------------- generator


class _GeneratorServing:
    """The generator's serving functions: seeded noise -> generator -> uint8 and PNG."""

    def __init__(self, generator: keras.Model, noise_dim: int, image_size: int, class_names):
        self.generator = generator
        self.noise_dim = noise_dim
        self.image_size = image_size
        self.class_names = list(class_names)
        self.class_names_tensor = tf.constant(self.class_names)

    def generate_by_index(self, label, seed):
        in_range = tf.logical_and(label >= 0, label < len(self.class_names))
        check = tf.debugging.Assert(
            tf.reduce_all(in_range),
            [f"label must be a class index 0..{len(self.class_names) - 1} ({', '.join(self.class_names)}); got", label],
            summarize=16,
        )
        with tf.control_dependencies([check]):
            return self._generate(tf.identity(label), seed)

    def generate_by_name(self, label, seed):
        matches = tf.equal(label[:, None], self.class_names_tensor[None, :])
        check = tf.debugging.Assert(
            tf.reduce_all(tf.reduce_any(matches, axis=1)),
            [f"label must be one of {', '.join(self.class_names)}; got", label],
            summarize=16,
        )
        with tf.control_dependencies([check]):
            index = tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int32)
        return self._generate(index, seed)

    def _generate(self, label, seed):
        checks = [
            _assert_not_empty(label, "label"),
            tf.debugging.assert_equal(
                tf.shape(label), tf.shape(seed), message="label and seed must have the same batch size"
            ),
        ]
        with tf.control_dependencies(checks):
            seed = tf.identity(seed)
        # One stateless draw per seed, so an image depends only on its own (label, seed).
        noise = tf.map_fn(
            lambda s: tf.random.stateless_normal([self.noise_dim], seed=tf.stack([s, tf.zeros_like(s)])),
            seed,
            fn_output_signature=tf.TensorSpec([self.noise_dim], tf.float32),
        )
        fake = tf.cast(self.generator([noise, label], training=False), tf.float32)  # [-1, 1]
        image = tf.cast(tf.round(tf.clip_by_value((fake + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)
        png = tf.map_fn(tf.io.encode_png, image, fn_output_signature=tf.TensorSpec([], tf.string))
        # "_bytes": TF Serving's REST API base64-encodes outputs with this suffix.
        return {"image": image, "png_bytes": png}


def generator_signatures(image_size: int, class_names: Sequence[str]) -> dict:
    """The generator's serving contract, as written into the model card."""
    outputs = {
        "image": {"dtype": "uint8", "shape": [None, image_size, image_size, 1], "meaning": "grey image"},
        "png_bytes": {"dtype": "string", "shape": [None], "meaning": "the same image as PNG (base64 over REST)"},
    }
    seed = {"dtype": "int64", "shape": [None], "meaning": "one seed per image; same seed, same image"}
    return {
        GENERATE_BY_INDEX: {
            "inputs": {
                "label": {"dtype": "int32", "shape": [None], "meaning": f"class index into {list(class_names)}"},
                "seed": seed,
            },
            "outputs": outputs,
        },
        GENERATE_BY_NAME: {
            "inputs": {
                "label": {"dtype": "string", "shape": [None], "meaning": f"class name, one of {list(class_names)}"},
                "seed": seed,
            },
            "outputs": outputs,
        },
        "noise": "tf.random.stateless_normal([noise_dim], seed=[seed, 0]) per image",
    }


def export_generator(
    generator: keras.Model,
    *,
    class_names: Sequence[str],
    name: str,
    base_dir: str | os.PathLike = DEFAULT_EXPORT_DIR,
    metadata: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Export a generator ([noise [B, D], label int32 [B]] -> [B, S, S, 1] in [-1, 1])."""
    check_model_name(name)
    noise_dim = generator.inputs[0].shape[-1]
    output_shape = tuple(generator.output.shape)
    if noise_dim is None or len(output_shape) != 4 or output_shape[-1] != 1 or output_shape[1] is None:
        raise ValueError(
            f"generator must map noise [B, D] to [B, S, S, 1]; got noise {generator.inputs[0].shape}, "
            f"output {output_shape}"
        )
    image_size = output_shape[1]
    serving = _GeneratorServing(generator, noise_dim, image_size, class_names)
    seed_spec = tf.TensorSpec([None], tf.int64, name="seed")
    archive = keras.export.ExportArchive()
    archive.track(generator)
    archive.add_endpoint(
        GENERATE_BY_INDEX,
        serving.generate_by_index,
        input_signature=[tf.TensorSpec([None], tf.int32, name="label"), seed_spec],
    )
    archive.add_endpoint(
        GENERATE_BY_NAME,
        serving.generate_by_name,
        input_signature=[tf.TensorSpec([None], tf.string, name="label"), seed_spec],
    )
    card = _card_common("generator", generator_signatures(image_size, class_names), metadata)
    card.update(image_size=image_size, noise_dim=noise_dim, class_names=list(class_names))
    return _write_new_version(archive, base_dir, name, card)


# --------------------------------------------------------------------------- glue


def _default_name(directory: str | os.PathLike) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", pathlib.Path(directory).resolve().name).lstrip("._-") or "model"


def export_classifier_dir(
    classifier_dir: str | os.PathLike, base_dir=DEFAULT_EXPORT_DIR, name: str | None = None
) -> ExportResult:
    """Export a saved classifier folder (`model.keras` + `classifier.json`) with its operating rule."""
    from covid_keras.classifier import OperatingRule, load_classifier

    model, metadata = load_classifier(classifier_dir)
    rule = OperatingRule.of_metadata(metadata)
    return export_classifier(
        model,
        backbone=metadata["backbone"],
        image_size=int(metadata["image_size"]),
        class_names=metadata.get("class_names", BINARY_CLASSES),
        threshold=rule.threshold,
        temperature=rule.temperature,
        name=name or _default_name(classifier_dir),
        base_dir=base_dir,
        metadata={"source": str(classifier_dir), **metadata},
    )


def export_gan_run(run_dir: str | os.PathLike, base_dir=DEFAULT_EXPORT_DIR, name: str | None = None) -> ExportResult:
    """Export the generator of a GAN run folder (`runs/<name>/`)."""
    from covid_keras.gan.training import load_generator

    generator, config, class_names = load_generator(run_dir)
    config_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else vars(config)
    return export_generator(
        generator,
        class_names=class_names,
        name=name or _default_name(run_dir),
        base_dir=base_dir,
        metadata={"source": str(run_dir), "data": config_dict.get("dataset"), "gan_config": config_dict},
    )

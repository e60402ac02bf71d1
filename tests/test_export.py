"""Exports for TF Serving: signatures (checked with saved_model_cli), exactness against the Keras
model in a fresh process, versioning, models.config, model cards, generator determinism, bad input.

The TF Serving binary cannot run here; these tests check what it relies on instead.
Tiny stand-ins with the architecture's model contracts keep the exports fast.
"""

import io
import json
import pathlib
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image

from covid_keras import export, serving
from covid_keras.backbones import get_backbone_spec
from covid_keras.labels import BINARY_CLASSES

IMAGE_SIZE = 32
NOISE_DIM = 8
GENERATED_SIZE = 16
BACKBONE = "vgg16"  # caffe preprocess: RGB->BGR + mean subtraction, so channel mix-ups show


def build_tiny_classifier(image_size: int = IMAGE_SIZE) -> keras.Model:
    """Classifier contract: preprocessed RGB [B, S, S, 3] -> [B, 1] sigmoid."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 128)(inputs)  # keeps the sigmoid away from 0/1
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="tiny_classifier")


def build_tiny_generator(n_classes: int = 2) -> keras.Model:
    """Generator contract: [noise [B, D], label int32 [B]] -> [B, S, S, 1] tanh."""
    keras.utils.set_random_seed(1)
    noise = keras.Input((NOISE_DIM,), name="noise")
    label = keras.Input((), dtype="int32", name="label")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(n_classes, NOISE_DIM)(label))
    x = keras.layers.Concatenate()([noise, embedded])
    x = keras.layers.Dense((GENERATED_SIZE // 2) ** 2 * 4)(x)
    x = keras.layers.Reshape((GENERATED_SIZE // 2, GENERATED_SIZE // 2, 4))(x)
    outputs = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="tanh")(x)
    return keras.Model([noise, label], outputs, name="tiny_generator")


CLASSIFIER_METADATA = {
    "data": "radiography (COVID vs Normal)",
    "weights": {"name": "imagenet", "path": None, "sha256": None},
    "metrics": {"test_auc": 0.5},
}


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory, radiography_dir) -> list[pathlib.Path]:
    """A real grey X-ray PNG, and RGB / grey / RGBA PNGs and a JPEG of assorted sizes."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("images")
    made = {
        "rgb.png": encode(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), "PNG"),
        "grey.png": encode(rng.integers(0, 256, (64, 64), dtype=np.uint8), "PNG"),
        "rgba.png": encode(rng.integers(0, 256, (30, 30, 4), dtype=np.uint8), "PNG"),
        "rgb.jpg": encode(rng.integers(0, 256, (36, 48, 3), dtype=np.uint8), "JPEG"),
    }
    paths = [sorted((radiography_dir / "COVID" / "images").glob("*.png"))[0]]
    for file_name, data in made.items():
        (folder / file_name).write_bytes(data)
        paths.append(folder / file_name)
    return paths


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One classifier and one generator exported into a fresh base folder."""
    base = tmp_path_factory.mktemp("saved_models")
    classifier = build_tiny_classifier()
    generator = build_tiny_generator()
    classifier_export = export.export_classifier(
        classifier, backbone=BACKBONE, image_size=IMAGE_SIZE, name="classifier", base_dir=base,
        metadata=CLASSIFIER_METADATA,
    )
    generator_export = export.export_generator(
        generator, class_names=BINARY_CLASSES, name="generator", base_dir=base, metadata={"data": "phantom_small"}
    )
    return {
        "base": base,
        "classifier": classifier,
        "generator": generator,
        "classifier_export": classifier_export,
        "generator_export": generator_export,
    }


def keras_probabilities(model: keras.Model, paths) -> np.ndarray:
    """The Keras model's own P(COVID): decode to RGB, antialiased resize, backbone preprocess.

    PNGs are lossless, so PIL decodes them independently of TF; JPEG decoders differ in the
    last bit, so JPEGs go through TF's decoder, the one TF Serving runs.
    """
    images = []
    for path in paths:
        if path.suffix == ".jpg":
            rgb = tf.io.decode_jpeg(path.read_bytes(), channels=3)
        else:
            rgb = np.asarray(Image.open(path).convert("RGB"))
        images.append(export.resize_rgb(tf.cast(rgb, tf.float32), IMAGE_SIZE))
    preprocessed = get_backbone_spec(BACKBONE).preprocess(tf.stack(images))
    return model.predict(preprocessed, verbose=0)[:, 0]


FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import base64, json, sys
    import tensorflow as tf

    saved_model_dir, body_path = sys.argv[1:3]
    body = json.load(open(body_path))
    # TF Serving turns each {"b64": ...} into the decoded bytes of one DT_STRING element.
    files = [base64.b64decode(instance["b64"]) for instance in body["instances"]]
    loaded = tf.saved_model.load(saved_model_dir)
    outputs = loaded.signatures["serving_default"](image_bytes=tf.constant(files))
    # A stock server has none of our code: nothing of covid_keras (or keras) was needed.
    assert not any(name.startswith("covid_keras") for name in sys.modules), "needs covid_keras"
    raw = {
        "covid_probability": outputs["covid_probability"].numpy().tolist(),
        "label": [label.decode() for label in outputs["label"].numpy()],
    }
    from covid_keras import serving
    in_process = serving.LocalModel(saved_model_dir).predict_json(body)
    print("RESULT " + json.dumps({"raw": raw, "in_process": in_process}))
    """
)


def test_classifier_in_fresh_process_matches_keras(exported, image_files, tmp_path):
    body = serving.classify_request([path.read_bytes() for path in image_files])
    body_path = tmp_path / "body.json"
    body_path.write_text(json.dumps(body))
    script = tmp_path / "load_and_predict.py"
    script.write_text(FRESH_PROCESS_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(exported["classifier_export"].path), str(body_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    outputs = json.loads(line[len("RESULT "):])

    expected = keras_probabilities(exported["classifier"], image_files)
    assert np.std(expected) > 1e-3, "stand-in model is degenerate: the comparison would prove little"
    np.testing.assert_allclose(outputs["raw"]["covid_probability"], expected, atol=1e-5, rtol=0)
    assert outputs["raw"]["label"] == [BINARY_CLASSES[int(p >= 0.5)] for p in expected]
    predictions = outputs["in_process"]["predictions"]
    np.testing.assert_allclose([p["covid_probability"] for p in predictions], expected, atol=1e-5, rtol=0)
    assert [p["label"] for p in predictions] == outputs["raw"]["label"]


def test_decoded_images_signature_matches_files_signature(exported, image_files):
    loaded = tf.saved_model.load(str(exported["classifier_export"].path))
    from_files = loaded.signatures["serving_default"](
        image_bytes=tf.constant([path.read_bytes() for path in image_files[:2]])
    )
    # Already-decoded [0, 255] floats: the real grey X-ray (1 channel) and the RGB PNG.
    grey = np.asarray(Image.open(image_files[0]), dtype=np.float32)[None, :, :, None]
    rgb = np.asarray(Image.open(image_files[1]), dtype=np.float32)[None]
    signature = loaded.signatures["predict_images"]
    from_arrays = [signature(images=tf.constant(array))["covid_probability"].numpy()[0] for array in (grey, rgb)]
    np.testing.assert_allclose(from_arrays, from_files["covid_probability"].numpy(), atol=1e-5)


def parse_saved_model_cli(text: str) -> dict:
    """`saved_model_cli show --all` -> {signature: {"inputs"|"outputs": {name: (dtype, shape)}}}."""
    signatures = {}
    for block in text.split("signature_def['")[1:]:
        name = block.split("'", 1)[0]
        inputs_text, _, outputs_text = block.partition("contains the following output(s):")
        signatures[name] = {
            key: {
                tensor: (dtype, shape)
                for tensor, dtype, shape in re.findall(
                    r"\w+\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\S+(?: \S+)*)\n", part
                )
            }
            for key, part in (("inputs", inputs_text), ("outputs", outputs_text))
        }
    return signatures


DT_NAMES = {"string": "DT_STRING", "float32": "DT_FLOAT", "int32": "DT_INT32", "int64": "DT_INT64", "uint8": "DT_UINT8"}


def documented(contract: dict) -> dict:
    """The model card's signature contract in saved_model_cli's notation."""

    def cli_shape(shape):
        return "(" + ", ".join("-1" if dim is None else str(dim) for dim in shape) + ")"

    return {
        name: {
            key: {tensor: (DT_NAMES[spec["dtype"]], cli_shape(spec["shape"])) for tensor, spec in entry[key].items()}
            for key in ("inputs", "outputs")
        }
        for name, entry in contract.items()
        if isinstance(entry, dict)
    }


def test_saved_model_cli_shows_documented_signatures(exported):
    cli = pathlib.Path(sys.executable).with_name("saved_model_cli")
    exports = (exported["classifier_export"], exported["generator_export"])
    # Both CLI runs pay TF's import time; run them side by side.
    processes = [
        subprocess.Popen(
            [str(cli), "show", "--all", "--dir", str(result.path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for result in exports
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]

    classifier_shown, generator_shown = (parse_saved_model_cli(stdout) for stdout, _ in outputs)
    classifier_doc = documented(export.classifier_signatures(IMAGE_SIZE, BINARY_CLASSES))
    generator_doc = documented(export.generator_signatures(GENERATED_SIZE, BINARY_CLASSES))
    assert set(classifier_doc) == {"serving_default", "predict_images"}
    assert set(generator_doc) == {"serving_default", "generate_by_name"}
    for shown, doc in ((classifier_shown, classifier_doc), (generator_shown, generator_doc)):
        for name, contract in doc.items():
            assert shown[name] == contract, f"signature {name}: shown {shown.get(name)}, documented {contract}"
    assert classifier_shown["serving_default"]["inputs"] == {"image_bytes": ("DT_STRING", "(-1)")}
    assert generator_shown["serving_default"]["outputs"]["image"] == ("DT_UINT8", "(-1, 16, 16, 1)")
    assert "Method name is: tensorflow/serving/predict" in outputs[0][0]


def test_model_card(exported):
    result = exported["classifier_export"]
    card = json.loads(result.card_path.read_text())
    assert result.card_path == result.path / "assets.extra" / "model_card.json"
    assert card["kind"] == "classifier" and card["name"] == "classifier" and card["version"] == 1
    assert card["backbone"] == BACKBONE and card["image_size"] == IMAGE_SIZE
    assert card["weights"] == CLASSIFIER_METADATA["weights"]
    assert card["metrics"] == CLASSIFIER_METADATA["metrics"]
    assert card["data"] == CLASSIFIER_METADATA["data"]
    assert card["versions"] == {"tensorflow": tf.__version__, "keras": keras.__version__}
    assert card["created"].endswith("+00:00")
    assert card["signatures"]["serving_default"]["inputs"]["image_bytes"]["dtype"] == "string"
    generator_card = json.loads(exported["generator_export"].card_path.read_text())
    assert generator_card["kind"] == "generator" and generator_card["noise_dim"] == NOISE_DIM
    assert generator_card["class_names"] == list(BINARY_CLASSES)


def test_new_export_gets_next_version_and_config_lists_all(exported):
    base = exported["base"]
    first = exported["classifier_export"].path
    before = {path.relative_to(first): path.read_bytes() for path in first.rglob("*") if path.is_file()}
    second = export.export_classifier(
        exported["classifier"], backbone=BACKBONE, image_size=IMAGE_SIZE, name="classifier", base_dir=base
    )
    assert second.version == 2 and second.path == base / "classifier" / "2"
    after = {path.relative_to(first): path.read_bytes() for path in first.rglob("*") if path.is_file()}
    assert after == before, "version 1 changed"
    assert export.existing_versions(base / "classifier") == [1, 2]
    assert not [p for p in (base / "classifier").iterdir() if p.name.startswith(".")], "temporary folder left"

    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((base / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    entries = {entry.name: entry for entry in config.model_config_list.config}
    assert set(entries) == {"classifier", "generator"}
    assert entries["classifier"].base_path == "/models/classifier"
    assert all(entry.model_platform == "tensorflow" for entry in entries.values())


def test_generator_is_deterministic_per_seed(exported):
    loaded = tf.saved_model.load(str(exported["generator_export"].path))
    by_index = loaded.signatures["serving_default"]
    labels = tf.constant([0, 1, 1], tf.int32)
    first = by_index(label=labels, seed=tf.constant([7, 7, 8], tf.int64))
    again = by_index(label=labels, seed=tf.constant([7, 7, 8], tf.int64))
    images = first["image"].numpy()
    assert images.shape == (3, GENERATED_SIZE, GENERATED_SIZE, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, again["image"].numpy())
    assert not np.array_equal(images[1], images[2]), "a different seed gave the same image"
    assert not np.array_equal(images[0], images[1]), "a different label gave the same image"

    # The noise is stateless_normal(seed=[seed, 0]); the Keras generator agrees to rounding.
    noise = tf.stack([tf.random.stateless_normal([NOISE_DIM], seed=[seed, 0]) for seed in (7, 7, 8)])
    fake = exported["generator"].predict([noise, labels], verbose=0)
    assert np.abs((fake + 1) * 127.5 - images.astype(np.float32)).max() <= 0.5 + 1e-3

    png = first["png_bytes"].numpy()
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(data))) for data in png])[..., None]
    np.testing.assert_array_equal(decoded, images)
    by_name = loaded.signatures["generate_by_name"](
        label=tf.constant(["Normal", "COVID", "COVID"]), seed=tf.constant([7, 7, 8], tf.int64)
    )
    np.testing.assert_array_equal(by_name["image"].numpy(), images)


@pytest.fixture(scope="module")
def classifier_signature(exported):
    return tf.saved_model.load(str(exported["classifier_export"].path)).signatures


@pytest.fixture(scope="module")
def generator_signature(exported):
    return tf.saved_model.load(str(exported["generator_export"].path)).signatures


def test_bad_classifier_input_gives_clear_errors(classifier_signature, image_files):
    classify = classifier_signature["serving_default"]
    good = image_files[1].read_bytes()
    cases = [
        ([good, b"this is not an image"], r"image_bytes\[1\] is not a PNG or JPEG file"),
        ([b"\x89PNG\r\n\x1a\n truncated"], r"PNG|png"),
        ([], r"image_bytes is an empty batch"),
    ]
    for files, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            classify(image_bytes=tf.constant(files, tf.string))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a string tensor but is a float"):
        classify(image_bytes=tf.constant([1.0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"1 \(grey\), 3 \(RGB\) or 4 \(RGBA\) channels"):
        classifier_signature["predict_images"](images=tf.zeros([1, 8, 8, 2]))
    # The loaded model keeps serving after bad requests.
    assert classify(image_bytes=tf.constant([good]))["covid_probability"].shape == (1,)


def test_bad_generator_input_gives_clear_errors(generator_signature):
    by_index = generator_signature["serving_default"]
    by_name = generator_signature["generate_by_name"]
    seed = tf.constant([1], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label must be a class index 0\.\.1 \(Normal, COVID\)"):
        by_index(label=tf.constant([2], tf.int32), seed=seed)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label must be one of Normal, COVID; got.*Pneumonia"):
        by_name(label=tf.constant(["Pneumonia"]), seed=seed)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label is an empty batch"):
        by_index(label=tf.constant([], tf.int32), seed=tf.constant([], tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label and seed must have the same batch size"):
        by_index(label=tf.constant([0, 1], tf.int32), seed=seed)
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a int32 tensor but is a int64"):
        by_index(label=tf.constant([0], tf.int64), seed=seed)


def test_export_rejects_mismatched_arguments(exported, tmp_path):
    classifier = exported["classifier"]
    with pytest.raises(ValueError, match="image_size=64"):
        export.export_classifier(classifier, backbone=BACKBONE, image_size=64, name="c", base_dir=tmp_path)
    with pytest.raises(ValueError, match="'COVID' at index 1"):
        export.export_classifier(
            classifier, backbone=BACKBONE, image_size=IMAGE_SIZE, name="c", base_dir=tmp_path,
            class_names=("COVID", "Normal"),
        )
    with pytest.raises(ValueError, match="unknown backbone"):
        export.export_classifier(classifier, backbone="alexnet", image_size=IMAGE_SIZE, name="c", base_dir=tmp_path)
    with pytest.raises(ValueError, match="model name"):
        export.export_classifier(classifier, backbone=BACKBONE, image_size=IMAGE_SIZE, name="a/b", base_dir=tmp_path)
    assert not list(tmp_path.glob("*/[0-9]*")), "a rejected export left a version behind"


def test_models_config_keeps_a_users_entries_and_policies(tmp_path):
    for name in ("vgg16", "resnet50"):
        (tmp_path / name / "1").mkdir(parents=True)
    hand_written = (
        "model_config_list {\n"
        "  config {\n"
        '    name: "vgg16"\n'
        '    base_path: "/models/vgg16"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { specific { versions: 1 } }\n"
        "  }\n"
        '  config { name: "elsewhere" base_path: "/data/elsewhere" model_platform: "tensorflow" }\n'
        "}\n"
    )
    (tmp_path / export.MODELS_CONFIG).write_text(hand_written)
    text = export.write_models_config(tmp_path).read_text()
    assert "model_version_policy { specific { versions: 1 } }" in text
    assert 'config { name: "elsewhere" base_path: "/data/elsewhere" model_platform: "tensorflow" }' in text
    names = export.read_models_config(tmp_path / export.MODELS_CONFIG)
    assert names == ["vgg16", "elsewhere", "resnet50"]  # kept in order, the new model appended once
    assert export.write_models_config(tmp_path).read_text() == text  # idempotent


def test_a_models_config_that_is_not_one_is_refused_and_left_alone(tmp_path):
    (tmp_path / "vgg16" / "1").mkdir(parents=True)
    broken = "model_config_list { config { name: \"vgg16\" \n"
    (tmp_path / export.MODELS_CONFIG).write_text(broken)
    with pytest.raises(ValueError, match="unbalanced|not a TF Serving"):
        export.write_models_config(tmp_path)
    assert (tmp_path / export.MODELS_CONFIG).read_text() == broken


HAND_EDITED = """# served from the lab box: ask Ana before changing # anything
model_config_list {
  config {
    name: "vgg16"   # the main model
    base_path: "/models/vgg16#v2"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 } }
  }
  config { name: "elsewhere" base_path: "/data/else where" model_platform: "tensorflow" }  # kept
}
# end of file
"""


def test_an_export_keeps_a_hand_edited_models_config_byte_for_byte_but_its_new_entry(tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    for name in ("vgg16", "resnet50"):
        (tmp_path / name / "1").mkdir(parents=True)
    path = tmp_path / export.MODELS_CONFIG
    path.write_text(HAND_EDITED)
    text = export.write_models_config(tmp_path).read_text()
    cut = HAND_EDITED.index("}\n# end of file")
    added = '  config {\n    name: "resnet50"\n    base_path: "/models/resnet50"\n    model_platform: "tensorflow"\n  }\n'
    assert text == HAND_EDITED[:cut] + added + HAND_EDITED[cut:]  # comments and '#' inside strings survive
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert [c.base_path for c in config.model_config_list.config] == ["/models/vgg16#v2", "/data/else where",
                                                                     "/models/resnet50"]
    stat = path.stat()
    assert export.write_models_config(tmp_path).read_text() == text
    assert path.stat().st_mtime_ns == stat.st_mtime_ns  # nothing new: not even rewritten


class _Archive:
    """Stands in for keras.export.ExportArchive: what it would write, without a model."""

    def write_out(self, path, verbose=False):
        (pathlib.Path(path) / "saved_model.pb").write_bytes(b"graph")


@pytest.mark.parametrize("broken", ['model_config_list { config { name: "vgg16" \n',
                                    'model_config_list { config { nmae: "vgg16" } }\n',
                                    'custom_model_config { }\n'])
def test_a_models_config_that_does_not_parse_stops_the_export_before_any_version_is_written(tmp_path, broken):
    (tmp_path / "vgg16" / "1").mkdir(parents=True)
    path = tmp_path / export.MODELS_CONFIG
    path.write_text(broken)
    with pytest.raises(ValueError) as refused:
        export._write_new_version(_Archive(), tmp_path, "vgg16", {})
    assert str(refused.value).startswith(str(path)) and "nothing was exported" in str(refused.value)
    assert path.read_text() == broken
    assert sorted(p.name for p in (tmp_path / "vgg16").iterdir()) == ["1"]  # no version 2, no temporary folder
    export._write_new_version(_Archive(), tmp_path / "fresh", "vgg16", {})  # the same export where it parses
    assert (tmp_path / "fresh" / "vgg16" / "1" / "saved_model.pb").exists()

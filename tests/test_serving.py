"""The TF Serving client: REST bodies and URLs, gRPC requests, response parsing, the in-process
model, and both scripts. A stand-in REST server (http.server) and a real gRPC server (grpcio)
answer from the exported SavedModel, since the TF Serving binary cannot run here.
"""

import base64
import dataclasses
import http.server
import io
import json
import pathlib
import re
import runpy
import sys
import threading
import types
from concurrent import futures

import grpc
import numpy as np
import pytest
from PIL import Image
from tensorflow_serving.apis import prediction_service_pb2_grpc
from test_export import IMAGE_SIZE, build_tiny_classifier, build_tiny_generator, encode

from covid_keras import cli, export, serving
from covid_keras.labels import BINARY_CLASSES

SCRIPTS = pathlib.Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    classifier = export.export_classifier(
        build_tiny_classifier(), backbone="resnet50", image_size=IMAGE_SIZE, name="classifier", base_dir=base
    )
    generator = export.export_generator(build_tiny_generator(), class_names=BINARY_CLASSES, name="gen", base_dir=base)
    return {"base": base, "classifier": classifier, "generator": generator}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("files")
    paths = []
    for index, shape in enumerate([(33, 47, 3), (64, 64), (40, 36, 4)]):  # predict refuses under 32 px
        path = folder / f"image_{index}.png"
        path.write_bytes(encode(rng.integers(0, 256, shape, dtype=np.uint8), "PNG"))
        paths.append(path)
    not_an_image = folder / "notes.png"
    not_an_image.write_bytes(b"not an image at all")
    return {"images": paths, "not_an_image": not_an_image}


@pytest.fixture(scope="module")
def local_classifier(saved):
    return serving.LocalModel(saved["base"] / "classifier")


def test_predict_url():
    assert serving.predict_url("http://host:8501/", "clf") == "http://host:8501/v1/models/clf:predict"
    assert serving.predict_url("http://host:8501", "clf", 3) == "http://host:8501/v1/models/clf/versions/3:predict"


def test_request_bodies():
    body = serving.classify_request([b"\x89PNG one", b"\xff\xd8\xff two"])
    assert body == {"instances": [{"b64": "iVBORyBvbmU="}, {"b64": "/9j/IHR3bw=="}]}
    assert [base64.b64decode(item["b64"]) for item in body["instances"]] == [b"\x89PNG one", b"\xff\xd8\xff two"]
    assert serving.classify_request([b"x"], "predict_images")["signature_name"] == "predict_images"
    assert serving.generate_request([1, 0], [5, 6]) == {"instances": [{"label": 1, "seed": 5}, {"label": 0, "seed": 6}]}
    assert serving.generate_request(["COVID"], [5])["signature_name"] == "generate_by_name"
    with pytest.raises(ValueError, match="2 labels but 1 seeds"):
        serving.generate_request([1, 0], [5])


def test_parse_predictions():
    response = {"predictions": [{"png_bytes": {"b64": "aGk="}, "label": "COVID"}]}
    assert serving.parse_predictions(response) == [{"png_bytes": b"hi", "label": "COVID"}]
    with pytest.raises(serving.ServingError, match="Servable not found"):
        serving.parse_predictions({"error": "Servable not found for request: Latest(x)"})
    with pytest.raises(serving.ServingError, match="no 'predictions'"):
        serving.parse_predictions({"outputs": []})


def test_local_model_answers_like_tf_serving(local_classifier, saved, files):
    assert local_classifier.path == saved["classifier"].path  # model folder -> latest version
    data = [path.read_bytes() for path in files["images"]]
    rows = serving.parse_predictions(local_classifier.predict_json(serving.classify_request(data)))
    assert len(rows) == 3 and set(rows[0]) == {"covid_probability", "label"}
    assert all(row["label"] == BINARY_CLASSES[row["covid_probability"] >= 0.5] for row in rows)

    columnar = local_classifier.predict_json({"inputs": [serving.b64(item) for item in data]})["outputs"]
    np.testing.assert_allclose(columnar["covid_probability"], [row["covid_probability"] for row in rows])

    generator = serving.LocalModel(saved["generator"].path)
    generated = serving.parse_predictions(generator.predict_json(serving.generate_request(["COVID", "Normal"], [3, 4])))
    by_index = serving.parse_predictions(generator.predict_json(serving.generate_request([1, 0], [3, 4])))
    for row, same in zip(generated, by_index):
        # png_bytes ends in "_bytes", so it travels as {"b64": ...} and comes back as bytes.
        png = np.asarray(Image.open(io.BytesIO(row["png_bytes"])))
        np.testing.assert_array_equal(png[..., None], np.array(row["image"], dtype=np.uint8))
        assert row["image"] == same["image"]


def test_local_model_rejects_bad_requests(local_classifier, saved, files):
    cases = [
        ({"instances": [1.5]}, "JSON value 1.5 is not of the expected type string"),
        ({"instances": [{"b64": "%%%"}]}, "not valid base64"),
        ({"instances": [serving.b64(files["not_an_image"].read_bytes())]}, r"image_bytes\[0\] is not a PNG or JPEG"),
        ({"instances": [serving.b64(b"\x89PNG\r\n\x1a\n truncated")]}, "^Invalid PNG"),
        ({"instances": []}, "image_bytes is an empty batch"),
        ({"instances": [{"b64": "aGk="}], "signature_name": "nope"}, "no signature 'nope'"),
        ({"examples": []}, "needs 'instances'"),
    ]
    for body, message in cases:
        with pytest.raises(serving.ServingError, match=message):
            local_classifier.predict_json(body)
    generator = serving.LocalModel(saved["generator"].path)
    with pytest.raises(serving.ServingError, match=r"has keys \['label'\]; the signature takes \['label', 'seed'\]"):
        generator.predict_json({"instances": [{"label": 0}]})
    with pytest.raises(serving.ServingError, match="label must be a class index"):
        generator.predict_json(serving.generate_request([7], [1]))
    with pytest.raises(serving.ServingError, match="label must be one of Normal, COVID"):
        generator.predict_json(serving.generate_request(["Lung_Opacity"], [1]))
    with pytest.raises(serving.ServingError, match="not of the expected type int32"):
        generator.predict_json({"instances": [{"label": 0.5, "seed": 1}]})


class FakeTFServingHandler(http.server.BaseHTTPRequestHandler):
    """Answers `POST /v1/models/<name>[/versions/<v>]:predict` from LocalModels, like TF Serving."""

    models: dict = {}
    paths: list = []

    def do_POST(self):
        self.paths.append(self.path)
        match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict", self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            if not match or match.group(1) not in self.models:
                raise serving.ServingError(f"Servable not found for request: {self.path}")
            status, reply = 200, self.models[match.group(1)].predict_json(body)
        except serving.ServingError as error:
            status, reply = 400, {"error": str(error)}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def rest_server(local_classifier):
    FakeTFServingHandler.models = {"classifier": local_classifier}
    FakeTFServingHandler.paths = []
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeTFServingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def run_script(name, argv, capsys):
    """The script's main as its command line runs it: through cli.run, with the script's own user errors."""
    module = runpy.run_path(str(SCRIPTS / name), run_name="script_under_test")
    code = cli.run(module["main"], argv, errors=module.get("USER_ERRORS", ()))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_script_server_and_saved_model_agree(rest_server, saved, files, capsys):
    paths = [str(path) for path in files["images"]]
    code, via_server, _ = run_script(
        "predict.py", ["--server", rest_server, "--model", "classifier", "--version", "1", *paths], capsys
    )
    assert code == 0
    assert FakeTFServingHandler.paths == ["/v1/models/classifier/versions/1:predict"]
    code, in_process, _ = run_script("predict.py", ["--saved-model", str(saved["base"] / "classifier"), *paths], capsys)
    assert code == 0
    server_rows = [line.split("\t") for line in via_server.splitlines()]
    local_rows = [line.split("\t") for line in in_process.splitlines()]
    assert [row[0] for row in server_rows] == paths
    assert server_rows == local_rows
    assert all(0 < float(row[1]) < 1 and row[2] in BINARY_CLASSES for row in server_rows)


def test_rest_errors_are_reported(rest_server, files, capsys):
    code, out, err = run_script(
        "predict.py", ["--server", rest_server, "--model", "classifier", str(files["not_an_image"])], capsys
    )
    assert code == 2 and out == ""
    assert err.startswith(f"error: {files['not_an_image']}: ") and err.count("\n") == 1
    assert "HTTP 400" in err and "image_bytes[0] is not a PNG or JPEG file" in err
    with pytest.raises(serving.ServingError, match="Servable not found"):
        serving.post_predict(rest_server, "missing", serving.classify_request([b"x"]))
    with pytest.raises(serving.ServingError, match="cannot reach"):
        serving.post_predict("http://127.0.0.1:9", "classifier", serving.classify_request([b"x"]), timeout=5)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        serving.classify_files(["missing.png"], server=rest_server, model_name="classifier")


class LocalPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model: serving.LocalModel):
        self.model = model

    def Predict(self, request, context):
        try:
            return self.model.predict_grpc(request)
        except serving.ServingError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


def test_grpc_round_trip(local_classifier, files):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        LocalPredictionService(local_classifier), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        data = [path.read_bytes() for path in files["images"]]
        request = serving.grpc_classify_request("classifier", data, version=1)
        assert request.model_spec.signature_name == "serving_default" and request.model_spec.version.value == 1
        outputs = serving.parse_grpc_response(serving.grpc_predict(f"127.0.0.1:{port}", request))
        rest_rows = serving.parse_predictions(local_classifier.predict_json(serving.classify_request(data)))
        np.testing.assert_allclose(outputs["covid_probability"], [row["covid_probability"] for row in rest_rows])
        assert [label.decode() for label in outputs["label"]] == [row["label"] for row in rest_rows]
        with pytest.raises(serving.ServingError, match="INVALID_ARGUMENT.*not a PNG or JPEG"):
            serving.grpc_predict(f"127.0.0.1:{port}", serving.grpc_classify_request("classifier", [b"nope"]))
        wrong_dtype = serving.grpc_predict_request("classifier", {"image_bytes": np.array([1.0], np.float32)})
        with pytest.raises(serving.ServingError, match="input 'image_bytes' must be string, got float32"):
            serving.grpc_predict(f"127.0.0.1:{port}", wrong_dtype)
    finally:
        server.stop(grace=None)


def test_grpc_without_serving_api_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(ImportError, match="pip install 'covid-keras\\[serving\\]'"):
        serving.grpc_predict_request("classifier", {"image_bytes": [b"x"]})


@dataclasses.dataclass
class StandInGanConfig:
    noise_dim: int = 8
    image_size: int = 16
    dataset: str = "phantom_small"


def test_export_script_with_classifier_and_gan_run(tmp_path, monkeypatch, capsys):
    """scripts/export.py through the glue: a real classifier folder (model.keras + classifier.json,
    read by classifier.load_classifier) and a stand-in for gan_training.load_generator."""
    classifier_dir, run_dir = tmp_path / "classifier_vgg16", tmp_path / "gan run 1"
    classifier_dir.mkdir()
    build_tiny_classifier().save(classifier_dir / "model.keras")
    metadata = {"backbone": "vgg16", "image_size": IMAGE_SIZE, "class_names": list(BINARY_CLASSES),
                "metrics": {"test": {"auc": 0.9}}, "weights": {"name": "imagenet", "sha256": "abc"},
                "data": {"dataset": "radiography"}}
    (classifier_dir / "classifier.json").write_text(json.dumps(metadata))
    loaded_runs = []
    fake_gan_training = types.SimpleNamespace(
        load_generator=lambda path: loaded_runs.append(path) or (
            build_tiny_generator(), StandInGanConfig(), list(BINARY_CLASSES)
        )
    )
    monkeypatch.setitem(sys.modules, "covid_keras.gan.training", fake_gan_training)
    base = tmp_path / "saved_models"
    argv = ["--classifier", str(classifier_dir), "--gan-run", str(run_dir), "--base", str(base)]
    code, out, _ = run_script("export.py", argv, capsys)
    assert code == 0 and loaded_runs == [str(run_dir)]
    assert "classifier_vgg16 version 1" in out and "gan_run_1 version 1" in out
    card = json.loads((base / "classifier_vgg16" / "1" / "assets.extra" / "model_card.json").read_text())
    assert card["metrics"] == metadata["metrics"] and card["weights"]["sha256"] == "abc"
    assert card["backbone"] == "vgg16" and card["data"] == {"dataset": "radiography"}
    gan_card = json.loads((base / "gan_run_1" / "1" / "assets.extra" / "model_card.json").read_text())
    assert gan_card["data"] == "phantom_small" and gan_card["training_metadata"]["gan_config"]["noise_dim"] == 8
    assert 'name: "classifier_vgg16"' in (base / "models.config").read_text()

    with pytest.raises(SystemExit):
        run_script("export.py", [*argv, "--name", "x"], capsys)

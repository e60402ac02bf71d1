"""A small client for the exported models behind TensorFlow Serving, plus an in-process stand-in.

- REST: `predict_url`, `classify_request` / `generate_request` (the JSON body, bytes as
  `{"b64": ...}`), `post_predict` (urllib, no extra dependency) and `parse_predictions`.
- gRPC: `grpc_predict_request`, `grpc_predict`, `parse_grpc_response` (needs the
  `tensorflow-serving-api` package, imported only when used).
- `LocalModel`: runs the same REST body or gRPC request through a SavedModel loaded in this
  process, converting JSON the way TF Serving does, so everything works without a server.
- `classify_files`: files -> (file, P(COVID), label) through either; a file the model refuses
  (`InvalidInputError`) is named in the error.

TensorFlow itself is imported only by the gRPC and in-process paths: the REST client is
plain Python.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import urllib.error
import urllib.request
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from covid_keras import sources

DEFAULT_SIGNATURE = "serving_default"
# The classifier's Grad-CAM signature (export.EXPLAIN_FILES; serving does not import export).
EXPLAIN_SIGNATURE = "explain"
# TF Serving's REST API base64-encodes string outputs whose name ends like this.
BINARY_OUTPUT_SUFFIX = "_bytes"


class ServingError(RuntimeError):
    """The server (or the in-process model) rejected a request; the message says why."""


class InvalidInputError(ServingError):
    """The model refused the request's content (HTTP 400, InvalidArgument), not a server failure."""


# --------------------------------------------------------------------------- REST


def predict_url(server: str, model_name: str, version: int | None = None) -> str:
    """`http://host:8501` + model -> `http://host:8501/v1/models/<name>[/versions/<v>]:predict`."""
    url = f"{server.rstrip('/')}/v1/models/{model_name}"
    if version is not None:
        url += f"/versions/{int(version)}"
    return url + ":predict"


def b64(data: bytes) -> dict:
    """Bytes as TF Serving's JSON expects them."""
    return {"b64": base64.b64encode(data).decode("ascii")}


def classify_request(files: Sequence[bytes], signature_name: str | None = None) -> dict:
    """Row-format body for the classifier: one `{"b64": ...}` per encoded image file.

    The signature has a single input, so each instance is the bare value.
    """
    body: dict[str, Any] = {"instances": [b64(data) for data in files]}
    if signature_name:
        body["signature_name"] = signature_name
    return body


def generate_request(labels: Sequence[int | str], seeds: Sequence[int]) -> dict:
    """Row-format body for the generator; string labels go to the `generate_by_name` signature."""
    if len(labels) != len(seeds):
        raise ValueError(f"got {len(labels)} labels but {len(seeds)} seeds")
    body: dict[str, Any] = {"instances": [{"label": label, "seed": int(seed)} for label, seed in zip(labels, seeds)]}
    if any(isinstance(label, str) for label in labels):
        body["signature_name"] = "generate_by_name"
    return body


def _decode_b64_values(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, dict):
        return {key: _decode_b64_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_b64_values(item) for item in value]
    return value


def parse_predictions(response: Mapping[str, Any]) -> list:
    """The `predictions` of a REST response, `{"b64": ...}` values turned back into bytes."""
    if "error" in response:
        raise ServingError(response["error"])
    if "predictions" not in response:
        raise ServingError(f"response has no 'predictions' (keys: {sorted(response)})")
    return _decode_b64_values(response["predictions"])


def post_predict(
    server: str, model_name: str, body: Mapping[str, Any], version: int | None = None, timeout: float = 60.0
) -> dict:
    """POST a body to TF Serving's REST predict API; returns the response JSON."""
    url = predict_url(server, model_name, version)
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (json.JSONDecodeError, AttributeError):
            pass
        # TF Serving answers 400 for INVALID_ARGUMENT: the signature refused the input.
        kind = InvalidInputError if error.code == 400 else ServingError
        raise kind(f"{url}: HTTP {error.code}: {detail}") from None
    except urllib.error.URLError as error:
        raise ServingError(f"cannot reach {url}: {error.reason}") from None


# --------------------------------------------------------------------------- gRPC


def _serving_apis():
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as error:
        raise ImportError(
            "the gRPC client needs the tensorflow-serving-api package: pip install 'covid-keras[serving]'"
        ) from error
    return predict_pb2, prediction_service_pb2_grpc


def grpc_predict_request(
    model_name: str,
    inputs: Mapping[str, Any],
    signature_name: str = DEFAULT_SIGNATURE,
    version: int | None = None,
):
    """A `PredictRequest`; `inputs` maps input names to arrays (bytes lists for string inputs)."""
    import tensorflow as tf

    predict_pb2, _ = _serving_apis()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def grpc_classify_request(model_name: str, files: Sequence[bytes], version: int | None = None):
    """The classifier's `PredictRequest`: the files as one string tensor `image_bytes`."""
    return grpc_predict_request(model_name, {"image_bytes": np.array(list(files), dtype=object)}, version=version)


def parse_grpc_response(response) -> dict[str, np.ndarray]:
    """`PredictResponse` -> {output name: numpy array}."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def grpc_predict(target: str, request, timeout: float = 60.0):
    """Send a `PredictRequest` to `host:8500`; returns the `PredictResponse`."""
    import grpc

    _, prediction_service_pb2_grpc = _serving_apis()
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            return stub.Predict(request, timeout=timeout)
        except grpc.RpcError as error:
            raise ServingError(f"{target}: {error.code().name}: {error.details()}") from None


# --------------------------------------------------------------------------- in-process


def resolve_saved_model_dir(path: str | os.PathLike) -> pathlib.Path:
    """A version folder as given, or a model folder's highest version (as TF Serving picks)."""
    path = pathlib.Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((int(p.name) for p in path.glob("*") if p.is_dir() and p.name.isdigit()), reverse=True)
    if not versions:
        raise FileNotFoundError(f"{path} is neither a SavedModel nor a folder of numbered SavedModel versions")
    return path / str(versions[0])


_TF_ERROR_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")


def _short_error(error: Exception) -> str:
    """The line of a TF error that says what was wrong, without the graph trace around it."""
    lines = [line.strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.startswith(_TF_ERROR_NOISE)]
    for line in lines:
        if line.startswith("assertion failed:"):
            return line
    return lines[0] if lines else type(error).__name__


def _json_leaf(value, dtype, where: str):
    """One JSON leaf as TF Serving converts it for an input of `dtype` (tf.DType)."""
    if dtype.name == "string":
        if isinstance(value, dict) and set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError:
                raise ServingError(f"{where}: 'b64' value is not valid base64") from None
        if isinstance(value, str):
            return value.encode("utf-8")
    elif dtype.is_bool:
        if isinstance(value, bool):
            return value
    elif dtype.is_integer:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif dtype.is_floating:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    raise ServingError(f"{where}: JSON value {json.dumps(value)[:60]} is not of the expected type {dtype.name}")


def _json_to_array(value, spec, where: str) -> np.ndarray:
    def convert(item):
        if isinstance(item, list):
            return [convert(element) for element in item]
        return _json_leaf(item, spec.dtype, where)

    converted = convert(value)
    try:
        numpy_dtype = object if spec.dtype.name == "string" else spec.dtype.as_numpy_dtype
        array = np.array(converted, dtype=numpy_dtype)
    except ValueError as error:  # ragged nested lists
        raise ServingError(f"{where}: values do not form a rectangular tensor ({error})") from None
    if not spec.shape.is_compatible_with(array.shape):
        raise ServingError(f"{where}: expected shape {spec.shape}, got {array.shape}")
    return array


def _split_instances(instances: list, input_names: list[str]) -> dict[str, list]:
    """Row format -> one list per input, as TF Serving reads `instances`."""
    is_named = [isinstance(item, dict) and set(item) != {"b64"} for item in instances]
    if len(input_names) == 1 and not any(is_named):
        return {input_names[0]: list(instances)}
    if not all(is_named):
        raise ServingError(
            f"instances must all be objects keyed by the inputs {input_names} (or bare values for one input)"
        )
    columns: dict[str, list] = {name: [] for name in input_names}
    for index, item in enumerate(instances):
        if set(item) != set(input_names):
            raise ServingError(f"instances[{index}] has keys {sorted(item)}; the signature takes {input_names}")
        for name in input_names:
            columns[name].append(item[name])
    return columns


def _json_output(name: str, value):
    """An output value as TF Serving writes it into JSON."""
    if isinstance(value, np.ndarray):
        return [_json_output(name, item) for item in value]
    if isinstance(value, bytes):
        return b64(value) if name.endswith(BINARY_OUTPUT_SUFFIX) else value.decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value


class LocalModel:
    """A SavedModel loaded in this process that answers REST bodies and gRPC requests."""

    def __init__(self, saved_model_dir: str | os.PathLike):
        import tensorflow as tf

        self.path = resolve_saved_model_dir(saved_model_dir)
        self._loaded = tf.saved_model.load(str(self.path))

    def signature(self, name: str | None):
        name = name or DEFAULT_SIGNATURE
        try:
            return self._loaded.signatures[name]
        except KeyError:
            raise ServingError(
                f"{self.path}: no signature {name!r}; it has {sorted(self._loaded.signatures)}"
            ) from None

    def _run(self, function, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        specs = function.structured_input_signature[1]
        if set(arrays) != set(specs):
            raise ServingError(f"inputs {sorted(arrays)} do not match the signature's {sorted(specs)}")
        tensors = {}
        for name, array in arrays.items():
            tensor = tf.constant(array)
            if tensor.dtype != specs[name].dtype:
                raise ServingError(f"input {name!r} must be {specs[name].dtype.name}, got {tensor.dtype.name}")
            tensors[name] = tensor
        try:
            outputs = function(**tensors)
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            raise InvalidInputError(_short_error(error)) from None
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def predict_json(self, body: Mapping[str, Any]) -> dict:
        """What TF Serving's `:predict` REST endpoint would return for this body."""
        function = self.signature(body.get("signature_name"))
        specs = function.structured_input_signature[1]
        names = sorted(specs)
        if "instances" in body:
            instances = body["instances"]
            if not isinstance(instances, list):
                raise ServingError("'instances' must be a list")
            columns = _split_instances(instances, names)
            arrays = {name: _json_to_array(columns[name], specs[name], f"input {name!r}") for name in names}
            outputs = self._run(function, arrays)
            rows = [
                {name: _json_output(name, value[index]) for name, value in outputs.items()}
                for index in range(len(instances))
            ]
            if len(outputs) == 1:
                rows = [next(iter(row.values())) for row in rows]
            return {"predictions": rows}
        if "inputs" in body:
            inputs = body["inputs"]
            if len(names) == 1 and not (isinstance(inputs, dict) and set(inputs) == set(names)):
                inputs = {names[0]: inputs}  # a single input may be given bare
            if not isinstance(inputs, dict) or set(inputs) != set(names):
                raise ServingError(f"'inputs' must name the signature's inputs {names}")
            arrays = {name: _json_to_array(inputs[name], specs[name], f"input {name!r}") for name in names}
            outputs = {name: _json_output(name, value) for name, value in self._run(function, arrays).items()}
            return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        raise ServingError("request body needs 'instances' (row format) or 'inputs' (columnar format)")

    def predict_grpc(self, request):
        """What TF Serving's gRPC `Predict` would return for this `PredictRequest`."""
        import tensorflow as tf

        predict_pb2, _ = _serving_apis()
        function = self.signature(request.model_spec.signature_name)
        arrays = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, value in self._run(function, arrays).items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


# --------------------------------------------------------------------------- files -> predictions


def read_files(paths: Iterable[str | os.PathLike]) -> list[bytes]:
    files = []
    for path in paths:
        try:
            files.append(pathlib.Path(path).read_bytes())
        except OSError as error:
            raise FileNotFoundError(f"cannot read image file {path}: {error.strerror}") from None
    return files


def classify_files(paths: Sequence[str | os.PathLike], **options) -> list[tuple[str, float, str]]:
    """(path, P(COVID), label) per file (`options` as `classify_each_file`'s); the first file the model
    refuses raises InvalidInputError naming it, where `classify_each_file` goes on."""
    results, failures = classify_each_file(paths, **options)
    if failures:
        path, message = failures[0]
        raise InvalidInputError(f"{path}: {message}")
    return results


def classify_each_file(
    paths: Sequence[str | os.PathLike], **options
) -> tuple[list[tuple[str, float, str]], list[tuple[str, str]]]:
    """([(path, P(COVID), label)] for every file the model scores, [(path, why)] for every one it refuses).

    options: server (with model_name, version) or saved_model, and batch_size: see `predict_each_file`.
    """
    scored, failures = predict_each_file(paths, **options)
    return [(path, float(out["covid_probability"]), out["label"]) for path, out in scored], failures


def explain_each_file(
    paths: Sequence[str | os.PathLike], **options
) -> tuple[list[tuple[str, float, str, np.ndarray]], list[tuple[str, str]]]:
    """As `classify_each_file`, through the classifier's `explain` signature: each result also
    carries its Grad-CAM heatmap (float [S, S] in [0, 1], S the model's input size)."""
    scored, failures = predict_each_file(paths, signature_name=EXPLAIN_SIGNATURE, **options)
    return [(path, float(out["covid_probability"]), out["label"], np.asarray(out["heatmap"], dtype=np.float32))
            for path, out in scored], failures


def predict_each_file(
    paths: Sequence[str | os.PathLike],
    *,
    server: str | None = None,
    model_name: str | None = None,
    version: int | None = None,
    saved_model: str | os.PathLike | None = None,
    batch_size: int = 32,
    signature_name: str | None = None,
) -> tuple[list[tuple[str, dict]], list[tuple[str, str]]]:
    """([(path, the signature's outputs)] for every file the model scores, [(path, why)] for every one it refuses).

    Files go `batch_size` at a time; a batch the model refuses is sent again file by file (the
    model answers for a whole batch, and a decoder's error need not say which item it was), so one
    bad file costs its batch a retry, not the run. Missing files are refused before the model loads.
    """
    if (server is None) == (saved_model is None):
        raise ValueError("give exactly one of server (with model_name) or saved_model")
    if server is not None and not model_name:
        raise ValueError("a server needs the model_name to call")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for path in paths:  # before the model loads
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file {path} does not exist or is not a file")
    # What training would have skipped is not scored either; each such file gets its own failure.
    small = [(str(path), why) for path in paths if (why := sources.too_small(path))]
    paths = [path for path in paths if str(path) not in dict(small)]
    local = LocalModel(saved_model) if saved_model is not None and paths else None

    def predict(batch: list) -> list:
        body = classify_request(read_files(batch), signature_name)
        return parse_predictions(local.predict_json(body) if local else post_predict(server, model_name, body, version))

    results, failures = [], []
    for start in range(0, len(paths), batch_size):
        batch = list(paths[start : start + batch_size])
        try:
            scored = list(zip(batch, predict(batch)))
        except InvalidInputError as error:
            scored = []
            if len(batch) == 1:
                failures.append((str(batch[0]), str(error)))
            for path in batch if len(batch) > 1 else ():
                try:
                    scored += list(zip([path], predict([path])))
                except InvalidInputError as alone:
                    failures.append((str(path), str(alone)))
        results += [(str(path), prediction) for path, prediction in scored]
    return results, small + failures

"""Shared runtime of pack's TorchServe handlers: settings, model loading, batching, generic tensor JSON.

Shipped inside every .mar beside one task handler (pack_classifier.py, pack_detector.py, pack_tensors.py). TorchServe
puts the unpacked archive on sys.path, so the handlers import this file as a flat module. Needs numpy and either
onnxruntime (model.onnx) or torch (model.pt); never captum.

Every handler serves a batch of requests at once. A request that cannot be decoded gets its own 400 answer
({"error": ...}); the others in the batch are still answered. Every handler also accepts the generic tensor request
`{"inputs": [{"name", "shape", "dtype", "data"}]}`, which skips pre- and post-processing and returns raw outputs in the
same form; `pack deploy` uses it for its smoke test.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Callable

import numpy as np

METADATA_FILE = "pack.json"
# Per-request settings a multipart request may send as form fields beside the payload.
OPTION_NAMES = frozenset({"top_k", "conf_threshold", "iou_threshold", "max_detections", "output_encoding"})


class RequestError(ValueError):
    """One request is malformed: answered with 400 and this message; the rest of the batch goes on."""


# ---------------------------------------------------------------- settings


def load_settings(model_dir: str, yaml_config: dict[str, Any] | None) -> dict[str, Any]:
    """pack.json (model metadata written by pack) merged with model-config.yaml's `handler:` section."""
    with open(os.path.join(model_dir, METADATA_FILE)) as fh:
        meta = json.load(fh)
    handler = dict((yaml_config or {}).get("handler") or {})
    meta["handler"] = handler
    labels_file = handler.get("labels_file") or meta.get("labels_file")
    meta["labels"] = None
    if labels_file and os.path.isfile(os.path.join(model_dir, labels_file)):
        with open(os.path.join(model_dir, labels_file)) as fh:
            meta["labels"] = [line.strip() for line in fh if line.strip()]
    return meta


# ---------------------------------------------------------------- model


def load_model(model_dir: str, meta: dict[str, Any], device: str = "cpu") -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A callable: list of input arrays (batch first) -> list of output arrays, for every format pack builds:
    model.onnx (onnxruntime), model.pt (TorchScript), model.pt2 (torch.export) or model.aoti.pt2 (AOTInductor).
    Each takes the inputs positionally in the build's order and returns its outputs flat, in the build's order."""
    path = os.path.join(model_dir, meta["serialized_file"])
    threads = int(meta["handler"].get("threads") or 0)
    if meta["format"] == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [("CUDAExecutionProvider", {"device_id": int(device.partition(":")[2] or 0)}), "CPUExecutionProvider"]
        session = ort.InferenceSession(path, options, providers=providers)
        names = [i.name for i in session.get_inputs()]
        order = [i["name"] for i in meta.get("inputs", [])] or names

        def run_onnx(arrays: list[np.ndarray]) -> list[np.ndarray]:
            return [np.asarray(o) for o in session.run(None, {n: a for n, a in zip(order, arrays) if n in names})]

        return run_onnx

    import torch

    if threads:
        torch.set_num_threads(threads)
    if meta["format"] == "torchscript":
        module = torch.jit.load(path, map_location=device).eval()
    elif meta["format"] == "pt2":
        module = torch.export.load(path).module()
    elif meta["format"] == "aoti":
        module = torch._inductor.aoti_load_package(path)
    else:
        raise ValueError(f"unknown model format {meta['format']!r}")

    def flatten(out: Any) -> list[Any]:
        if isinstance(out, dict):
            return [t for v in out.values() for t in flatten(v)]
        if isinstance(out, (list, tuple)):
            return [t for v in out for t in flatten(v)]
        return [out]

    def run_torch(arrays: list[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays])
        return [t.detach().cpu().numpy() for t in flatten(out)]

    return run_torch


# ---------------------------------------------------------------- request bodies


def request_body(request: dict[str, Any]) -> Any:
    """The payload of one TorchServe request: raw body, a multipart field, or decoded JSON."""
    for key in ("body", "data", "file", "image", "instances"):
        if request.get(key) is not None:
            return request[key]
    values = [v for k, v in request.items() if v is not None and k not in OPTION_NAMES]
    if not values:
        raise RequestError("empty request: send an image, or JSON {\"inputs\": [...]}")
    return values[0]


def as_json(body: Any) -> Any | None:
    """The body as a JSON document when it is one (dict or list, or bytes/str holding JSON), else None."""
    if isinstance(body, (dict, list)):
        return body
    if isinstance(body, (bytes, bytearray)):
        if bytes(body[:64]).lstrip()[:1] not in (b"{", b"["):
            return None
        try:
            return json.loads(bytes(body).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"the body looks like JSON but does not parse: {exc}") from None
    if isinstance(body, str):
        if body.lstrip()[:1] in ("{", "["):
            try:
                return json.loads(body)
            except json.JSONDecodeError as exc:
                raise RequestError(f"the body looks like JSON but does not parse: {exc}") from None
    return None


def request_param(request: dict[str, Any], doc: Any, name: str, cast: Callable[[Any], Any], default: Any) -> Any:
    """A per-request setting from the JSON body or a multipart form field, else the default.

    (TorchServe 0.12 does not pass URL query parameters to handlers.)
    """
    value = None
    if isinstance(doc, dict) and doc.get(name) is not None:
        value = doc[name]
    elif request.get(name) is not None:
        value = request[name]
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
    if value is None:
        return default
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name}={value!r} is not a valid {cast.__name__}") from None


# ---------------------------------------------------------------- generic tensors


def is_tensor_request(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("inputs"), list)


def decode_tensors(doc: dict[str, Any], specs: list[dict[str, Any]]) -> list[np.ndarray]:
    """{"inputs": [{"name", "shape", "dtype", "data"}]} -> arrays in the model's input order, checked against specs.

    `data` is a (nested) list of numbers, or a base64 string of the raw little-endian bytes with "encoding": "base64".
    """
    given = doc["inputs"]
    if len(given) != len(specs):
        raise RequestError(f"expected {len(specs)} input(s) ({', '.join(s['name'] for s in specs)}), got {len(given)}")
    by_name = {item.get("name"): item for item in given if isinstance(item, dict)}
    arrays = []
    for position, spec in enumerate(specs):
        item = by_name.get(spec["name"], given[position])
        if not isinstance(item, dict) or "data" not in item:
            raise RequestError(f"input {spec['name']!r}: each input needs name, shape, dtype and data")
        dtype = np.dtype(spec["dtype"])
        if item.get("dtype") not in (None, spec["dtype"]):
            raise RequestError(f"input {spec['name']!r}: dtype {item['dtype']} given, the model takes {spec['dtype']}")
        try:
            if item.get("encoding") == "base64":
                arr = np.frombuffer(base64.b64decode(item["data"], validate=True), dtype=dtype.newbyteorder("<")).astype(dtype)
            else:
                arr = np.asarray(item["data"], dtype=dtype)
        except (ValueError, TypeError) as exc:
            raise RequestError(f"input {spec['name']!r}: data does not decode as {spec['dtype']}: {exc}") from None
        if "shape" in item:
            try:
                shape = tuple(int(d) for d in item["shape"])
                arr = arr.reshape(shape)
            except (ValueError, TypeError):
                raise RequestError(f"input {spec['name']!r}: {arr.size} values do not fill shape {item['shape']}") from None
        check_shape(arr, spec)
        arrays.append(np.ascontiguousarray(arr))
    return arrays


def check_shape(arr: np.ndarray, spec: dict[str, Any]) -> None:
    expected = spec["shape"]
    dynamic = set(spec.get("dynamic_axes", [0]))
    ok = arr.ndim == len(expected) and all(i in dynamic or arr.shape[i] == d for i, d in enumerate(expected))
    if not ok:
        want = ["N" if i in dynamic else d for i, d in enumerate(expected)]
        raise RequestError(f"input {spec['name']!r}: shape {list(arr.shape)} does not fit the model's {want}")


def encode_tensors(names: list[str], arrays: list[np.ndarray], encoding: str | None = None) -> dict[str, Any]:
    outputs = []
    for name, arr in zip(names, arrays):
        item: dict[str, Any] = {"name": name, "shape": list(arr.shape), "dtype": str(arr.dtype)}
        if encoding == "base64":
            item["encoding"] = "base64"
            item["data"] = base64.b64encode(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()).decode("ascii")
        else:
            item["data"] = arr.tolist()
        outputs.append(item)
    return {"outputs": outputs}


# ---------------------------------------------------------------- batching


def run_batched(model: Callable[[list[np.ndarray]], list[np.ndarray]], items: list[list[np.ndarray]], batchable: bool) -> list[list[np.ndarray]]:
    """Run every request's inputs, concatenated along axis 0 when their other axes agree (one model call per group)."""
    results: list[list[np.ndarray] | None] = [None] * len(items)
    groups: dict[tuple, list[int]] = {}
    for index, arrays in enumerate(items):
        key = tuple((a.shape[1:], a.dtype.str) for a in arrays) if batchable else (index,)
        groups.setdefault(key, []).append(index)
    for members in groups.values():
        if len(members) == 1:
            results[members[0]] = model(items[members[0]])
            continue
        stacked = [np.concatenate([items[m][k] for m in members], axis=0) for k in range(len(items[members[0]]))]
        outputs = model(stacked)
        start = 0
        for m in members:
            n = items[m][0].shape[0]
            results[m] = [o[start : start + n] for o in outputs]
            start += n
    return results  # type: ignore[return-value]


class PackHandler:
    """Base of the task handlers: subclasses implement `preprocess_one` and `postprocess_one`.

    preprocess_one(request, doc) -> (arrays, state): arrays are the model inputs (batch first) for this request, state
    is whatever postprocess_one(outputs, state) needs to shape the answer.
    """

    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties.get("model_dir")
        self.settings = load_settings(model_dir, getattr(context, "model_yaml_config", None))
        self.inputs = self.settings["inputs"]
        self.output_names = self.settings["outputs"]
        gpu = context.system_properties.get("gpu_id")  # TorchServe sets it when the worker has a GPU
        self.model = load_model(model_dir, self.settings, f"cuda:{gpu}" if gpu is not None else "cpu")
        self.batchable = all(0 in i.get("dynamic_axes", [0]) for i in self.inputs)
        self.setup()
        self.initialized = True

    def setup(self) -> None:
        """Task-specific settings (thresholds, top-k); called once after the model loaded."""

    def preprocess_one(self, request: dict[str, Any], body: Any, doc: Any) -> tuple[list[np.ndarray], Any]:
        raise RequestError("this model takes JSON {\"inputs\": [{\"name\", \"shape\", \"dtype\", \"data\"}]}")

    def postprocess_one(self, outputs: list[np.ndarray], state: Any) -> Any:
        return encode_tensors(self.output_names, outputs)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        answers: list[Any] = [None] * len(data)
        items: list[list[np.ndarray]] = []
        pending: list[tuple[int, Any]] = []  # (request index, (kind, state))
        for index, request in enumerate(data):
            try:
                request = request or {}
                body = request_body(request)
                doc = as_json(body)
                if is_tensor_request(doc):
                    arrays = decode_tensors(doc, self.inputs)
                    state = ("tensors", doc.get("output_encoding"))
                else:
                    arrays, task_state = self.preprocess_one(request, body, doc)
                    state = ("task", task_state)
                items.append(arrays)
                pending.append((index, state))
            except RequestError as exc:
                answers[index] = self.error(context, index, 400, str(exc))
            except Exception as exc:  # an unexpected decoding problem stays this request's problem
                answers[index] = self.error(context, index, 400, f"{type(exc).__name__}: {exc}")
        if items:
            results = run_batched(self.model, items, self.batchable)
            for (index, (kind, state)), outputs in zip(pending, results):
                try:
                    if kind == "tensors":
                        answers[index] = encode_tensors(self.output_names, outputs, state)
                    else:
                        answers[index] = self.postprocess_one(outputs, state)
                except RequestError as exc:
                    answers[index] = self.error(context, index, 400, str(exc))
        for index in range(len(answers)):
            try:
                context.set_response_content_type(index, "application/json")
            except Exception:  # contexts without per-request headers
                pass
        return [json.dumps(a, separators=(",", ":")) for a in answers]

    @staticmethod
    def error(context: Any, index: int, code: int, message: str) -> dict[str, Any]:
        try:
            context.set_response_status(code=code, phrase=message[:200], idx=index)
        except Exception:  # older contexts, or tests without one
            pass
        return {"error": message, "code": code}


def entry_point(handler_class: type[PackHandler]) -> Callable[[Any, Any], Any]:
    """A module-level `handle(data, context)` for TorchServe, one handler instance per worker."""
    holder: dict[str, PackHandler] = {}

    def handle(data: Any, context: Any) -> Any:
        service = holder.get("service")
        if service is None:
            service = handler_class()
            service.initialize(context)
            holder["service"] = service
        if data is None:
            return None
        return service.handle(data, context)

    return handle

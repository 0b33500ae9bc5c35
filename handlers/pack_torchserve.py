"""TorchServe side of pack's serving runtime: settings, request bodies, per-request options and the batch-aware base
class of the task handlers (pack_classifier.py, pack_detector.py, pack_tensors.py).

Shipped inside every .mar beside the task handler and the shared runtime (pack_runtime.py, pack_images.py); TorchServe
puts the unpacked archive on sys.path, so these are flat modules. Every handler serves a batch of requests at once. A
request that cannot be decoded gets its own 400 answer ({"error": ...}); the others in the batch are still answered.
Every handler also accepts the generic tensor request `{"inputs": [{"name", "shape", "dtype", "data"}]}`, which skips
pre- and post-processing and returns raw outputs in the same form; `pack deploy` uses it for its smoke test.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from pack_requests import (
    check_batch,
    decode_tensors,
    decode_v2,
    encode_tensors,
    encode_v2,
    is_tensor_request,
    is_v2_input,
    is_v2_request,
)
from pack_runtime import RequestError, json_text, load_model, run_batched, without_reprs
from pack_signature import refusal

METADATA_FILE = "pack.json"
# The drain folder of a TorchServe that pack launched (packager/targets/torchserve/drain.py): a file `<name>.v<version>`
# in it makes every worker of that version answer 503 with Retry-After, so nothing is queued when it is unregistered.
DRAIN_ENV = "PACK_DRAIN_DIR"
RETRY_AFTER_S = "1"
# Per-request settings a multipart request may send as form fields beside the payload.
OPTION_NAMES = frozenset({"top_k", "conf_threshold", "iou_threshold", "max_detections", "output_encoding"})


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


def settings_model(model_dir: str, meta: dict[str, Any], device: str = "cpu") -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """The archive's model (pack.json's `serialized_file` in its `format`) through the runtime's load_model."""
    return load_model(
        os.path.join(model_dir, meta["serialized_file"]),
        meta["format"],
        device,
        int(meta["handler"].get("threads") or 0),
        [i["name"] for i in meta.get("inputs", [])] or None,
        list(meta.get("outputs") or []) or None,
    )


# ---------------------------------------------------------------- request bodies


def request_body(request: dict[str, Any]) -> Any:
    """The payload of one TorchServe request: raw body, a multipart field, or decoded JSON."""
    for key in ("body", "data", "file", "image", "instances"):
        if request.get(key) is not None:
            return request[key]
    values = [v for k, v in request.items() if v is not None and k not in OPTION_NAMES]
    if values:
        return values[0]
    fields = [k for k in request if k not in OPTION_NAMES]
    if fields:  # a body sent as a form (curl -d): its text arrives as field names without values
        return "&".join(fields).encode("utf-8", "replace")
    raise RequestError('empty request: send an image, or JSON {"inputs": [...]}')


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


# ---------------------------------------------------------------- the handler


class PackHandler:
    """Base of the task handlers: subclasses implement `preprocess_one` and `postprocess_one`.

    preprocess_one(request, body, doc) -> (arrays, state): arrays are the model inputs (batch first) for this
    request, state is whatever postprocess_one(outputs, state) needs to shape the answer.
    """

    def __init__(self) -> None:
        self.initialized = False
        self.refused = ""  # why this worker serves nothing (its model file did not verify)
        self.model: Callable[[list[np.ndarray]], list[np.ndarray]] = self._unloaded

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties.get("model_dir")
        settings = load_settings(model_dir, getattr(context, "model_yaml_config", None))
        gpu = context.system_properties.get("gpu_id")  # TorchServe sets it when the worker has a GPU
        model = (getattr(context, "manifest", None) or {}).get("model") or {}
        self.configure(
            model_dir, settings, f"cuda:{gpu}" if gpu is not None else "cpu", model.get("modelName"), model.get("modelVersion")
        )

    def configure(self, model_dir: str, settings: dict[str, Any], device: str, name: Any = None, version: Any = None) -> None:
        """Load the model of `model_dir` as `settings` (load_settings) say, on `device` as far as the runtime can
        (pack_runtime.placement); every server that runs this handler (TorchServe, pack's FastAPI app) calls it."""
        self.settings = settings
        self.inputs = settings["inputs"]
        self.output_names = settings["outputs"]
        self.model_name = name or settings.get("name") or ""
        self.model_version = str(version or settings.get("version") or "")
        self.refused = refusal(model_dir, os.path.join(model_dir, settings["serialized_file"]), settings.get("signature"))
        if self.refused:  # nothing unverified is loaded: every request is answered 503 with the reason
            logging.getLogger("pack").error(f"pack: {self.model_name} v{self.model_version}: {self.refused}")
            self.placement, self.initialized = {}, True
            return
        self.model = settings_model(model_dir, settings, device)
        self.placement = dict(getattr(self.model, "placement", None) or {"device": "cpu"})
        self.batchable = all(0 in i.get("dynamic_axes", [0]) for i in self.inputs)
        self.max_batch = int(settings["handler"].get("max_batch") or 0)  # 0: not recorded (an older archive)
        where = self.placement.get("provider") or self.placement.get("device")
        why = f" ({self.placement['reason']})" if self.placement.get("reason") else ""
        logging.getLogger("pack").info(f"pack: {self.model_name} v{self.model_version} runs on {where}{why}")
        self.setup()
        self.initialized = True

    def _unloaded(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError(self.refused)  # never called: handle() answers 503 first

    def setup(self) -> None:
        """Task-specific settings (thresholds, top-k); called once after the model loaded."""

    def preprocess_one(self, request: dict[str, Any], body: Any, doc: Any) -> tuple[list[np.ndarray], Any]:
        raise RequestError('this model takes JSON {"inputs": [{"name", "shape", "dtype", "data"}]}')

    def postprocess_one(self, outputs: list[np.ndarray], state: Any) -> Any:
        return encode_tensors(self.output_names, outputs)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        if self.refused:
            return refuse_all(data, context, self.refused, retry=False)
        if data and all(is_v2_input(item) for item in data):
            return self._enveloped(data)
        answers: list[Any] = [None] * len(data)
        items: list[list[np.ndarray]] = []
        pending: list[tuple[int, Any]] = []  # (request index, (kind, state))
        for index, request in enumerate(data):
            try:
                arrays, state = self._decode(request or {})
                items.append(arrays)
                pending.append((index, state))
            except RequestError as exc:
                answers[index] = self.error(context, index, 400, str(exc))
            except Exception as exc:  # an unexpected decoding problem stays this request's problem
                answers[index] = self.error(context, index, 400, f"{type(exc).__name__}: {exc}")
        if items:
            results = run_batched(self.model, items, self.batchable)
            for (index, state), outputs in zip(pending, results):  # noqa: B905 - runs in the serving image's Python, which may predate 3.10 (no zip(strict=))
                answers[index] = self._answer(context, index, state, outputs)
        for index in range(len(answers)):
            try:
                context.set_response_content_type(index, "application/json")
            except Exception:  # contexts without per-request headers
                pass
        return [json_text(a) for a in answers]

    def _decode(self, request: dict[str, Any]) -> tuple[list[np.ndarray], tuple[str, Any]]:
        """One request's model inputs, and how to answer it: ("v2", (id, outputs wanted)), ("tensors", output encoding) or
        ("task", its state)."""
        body = request_body(request)
        doc = as_json(body)
        if is_v2_request(doc):
            wanted = [o.get("name") for o in doc.get("outputs") or [] if isinstance(o, dict)] or None
            arrays = decode_v2(doc["inputs"], self.inputs)
            check_batch(arrays, self.inputs, self.max_batch)
            return arrays, ("v2", (doc.get("id"), wanted))
        if is_tensor_request(doc):
            arrays = decode_tensors(doc, self.inputs)
            check_batch(arrays, self.inputs, self.max_batch)
            return arrays, ("tensors", doc.get("output_encoding"))
        arrays, task_state = self.preprocess_one(request, body, doc)
        return arrays, ("task", task_state)

    def _answer(self, context: Any, index: int, state: tuple[str, Any], outputs: list[np.ndarray]) -> Any:
        kind, detail = state
        try:
            if kind == "v2":
                return self._v2_answer(outputs, *detail)
            if kind == "tensors":
                return encode_tensors(self.output_names, outputs, detail)
            return self.postprocess_one(outputs, detail)
        except RequestError as exc:
            return self.error(context, index, 400, str(exc))

    def _v2_answer(self, outputs: list[np.ndarray], request_id: Any, wanted: list[str] | None) -> dict[str, Any]:
        answer: dict[str, Any] = {"model_name": self.model_name, "model_version": self.model_version}
        if request_id:
            answer["id"] = str(request_id)
        answer["outputs"] = encode_v2(self.output_names, outputs, wanted)
        return answer

    def _enveloped(self, tensors: list[dict[str, Any]]) -> list[Any]:
        """Under TorchServe's kservev2 envelope: `tensors` are one v2 request's inputs, unpacked by the envelope,
        which answers item i under the name of input i (its own rule); so the outputs come back in order, as many
        as the request had inputs. Errors are raised: the envelope has no per-request status."""
        arrays = decode_v2(tensors, self.inputs)
        check_batch(arrays, self.inputs, self.max_batch)
        outputs = self.model(arrays)
        return [np.asarray(o).tolist() for o in outputs[: len(tensors)]]

    @staticmethod
    def error(context: Any, index: int, code: int, message: str) -> dict[str, Any]:
        message = without_reprs(message)
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
        if draining(context):
            return refuse_all(data, context)
        return service.handle(data, context)

    return handle


def draining(context: Any) -> bool:
    """Whether pack asked the workers of this registered name and version to stop taking requests."""
    folder = os.environ.get(DRAIN_ENV)
    if not folder:
        return False
    name = getattr(context, "model_name", None)  # the registered name (a rollout registers under another one)
    version = ((getattr(context, "manifest", None) or {}).get("model") or {}).get("modelVersion")
    return bool(name) and os.path.exists(os.path.join(folder, f"{name}.v{version}"))


DRAINING = "this model version is being removed; retry shortly"


def refuse_all(data: list[Any], context: Any, message: str = DRAINING, retry: bool = True) -> list[Any]:
    """Every request of the batch: 503 (with Retry-After while the version drains before it is unregistered; without,
    for a model whose file did not verify)."""
    for index in range(len(data)):
        PackHandler.error(context, index, 503, message)
        try:
            if retry:
                context.set_response_header(index, "Retry-After", RETRY_AFTER_S)
            context.set_response_content_type(index, "application/json")
        except Exception:  # contexts without per-request headers
            pass
    return [json_text({"error": message, "code": 503}) for _ in data]

"""pack's FastAPI server: the TorchServe handlers (pack_classifier.py, pack_detector.py, pack_tensors.py on
pack_torchserve.py and pack_runtime.py) behind plain HTTP, so a request gets the very answer TorchServe gives.

Started by `pack deploy --target fastapi` as `python -m uvicorn pack_fastapi:create_app --factory --app-dir <runtime>`
with PACK_FASTAPI_MODELS naming a JSON file {"models": [{"name", "version", "dir", "handler", "handler_settings"}]}:
each `dir` holds pack.json (the metadata a TorchServe worker reads), the export and the labels. Every worker loads every
model at start-up, before it takes a request. No click, no pack CLI here: fastapi, uvicorn, prometheus_client, numpy,
and onnxruntime or torch for the model.

Routes:
  POST /predict, /predict/{name}   what an end user sends (image bytes, tensor JSON, a v2 body) -> the handler's JSON
  GET  /health                     200 when every model is loaded;  GET /models: what is served, and where it runs
  GET  /metrics                    Prometheus: requests, failures, latency (counter and histogram) per model
  Open Inference Protocol v2:      GET /v2, /v2/health/live, /v2/health/ready, /v2/models/{name}[/versions/{v}][/ready],
                                   POST /v2/models/{name}[/versions/{v}]/infer (JSON tensors)
PACK_FASTAPI_DEVICE: auto (a GPU when the machine has one; the default), cpu, or cuda:N.

A request body is at most MAX_REQUEST_BYTES (128 MiB, TorchServe's max_request_size as pack configures it): a larger
Content-Length is answered 413 before any of the body is read, a chunked body 413 as soon as it passes the limit.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) at run time.
import importlib
import json
import os
import time
from typing import Any

from pack_requests import MAX_REQUEST_BYTES, NUMPY_TO_V2, is_v2_request
from pack_runtime import json_text
from pack_torchserve import PackHandler, as_json, load_settings

MODELS_ENV = "PACK_FASTAPI_MODELS"
DEVICE_ENV = "PACK_FASTAPI_DEVICE"
JSON = "application/json"


def visible_gpu() -> int | None:
    """GPU 0 when this machine has an NVIDIA device this process may use, else None (no torch import: an ONNX worker
    stays small)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return None
    return 0 if os.path.exists("/dev/nvidiactl") and os.path.exists("/dev/nvidia0") else None


def device_setting(value: str | None) -> str:
    """PACK_FASTAPI_DEVICE -> the device the handlers are given ("cpu" or "cuda:N")."""
    value = (value or "auto").strip()
    if value == "auto":
        gpu = visible_gpu()
        return "cpu" if gpu is None else f"cuda:{gpu}"
    return value


class Context:
    """What the handlers read of TorchServe's context for one request: they set the answer's status here."""

    def __init__(self) -> None:
        self.status = 200

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status = int(code)

    def set_response_content_type(self, idx: int, value: str) -> None:
        pass


def handler_class(file_name: str) -> type[PackHandler]:
    """The PackHandler subclass a task's entry handler file defines (pack_classifier.py -> ImageClassifier)."""
    module = importlib.import_module(file_name[:-3] if file_name.endswith(".py") else file_name)
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, PackHandler) and value is not PackHandler:
            return value
    raise ValueError(f"{file_name} defines no pack handler")


class Served:
    """One model of the server: its handler, loaded, and its v2 metadata."""

    def __init__(self, entry: dict[str, Any], device: str):
        folder = str(entry["dir"])
        settings = load_settings(folder, {"handler": entry.get("handler_settings") or {}})
        self.handler = handler_class(str(entry["handler"]))()
        self.handler.configure(folder, settings, device, entry["name"], entry["version"])
        self.name, self.version = str(entry["name"]), str(entry["version"])
        self.format = str(settings["format"])
        self.outputs = list(entry.get("outputs") or [{"name": n} for n in settings["outputs"]])

    def answer(self, body: bytes) -> tuple[int, str]:
        """(HTTP status, JSON text) of one request, through the handler as a TorchServe worker runs a batch of one."""
        context = Context()
        text = self.handler.handle([{"body": body}], context)[0]
        return context.status, text

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "format": self.format, "placement": self.handler.placement}

    def metadata(self) -> dict[str, Any]:
        """The v2 model metadata: inputs and outputs with v2 datatypes (-1 for a dynamic axis), and where it runs."""

        def tensor(item: dict[str, Any], dynamic: list[int]) -> dict[str, Any]:
            shape = [-1 if i in dynamic else int(d) for i, d in enumerate(item.get("shape") or [])]
            return {"name": item["name"], "datatype": NUMPY_TO_V2.get(str(item.get("dtype")), "BYTES"), "shape": shape}

        placement = {k: str(v) for k, v in self.handler.placement.items() if k in ("device", "provider", "reason")}
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": f"pack_{self.format}",
            "inputs": [tensor(i, list(i.get("dynamic_axes", [0]))) for i in self.handler.inputs],
            "outputs": [tensor(o, [0]) for o in self.outputs],
            "parameters": placement,
        }


class Metrics:
    """The Prometheus families `pack status` reads (requests, failures, cumulative latency in microseconds, labelled
    by model and version) plus a latency histogram. With PROMETHEUS_MULTIPROC_DIR (set by pack for every launch),
    /metrics adds up every uvicorn worker's numbers."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        self.requests = Counter("pack_inference_requests", "Requests answered with 2xx", labels, registry=self.registry)
        self.failures = Counter("pack_inference_failures", "Requests answered with an error", labels, registry=self.registry)
        self.latency_us = Counter(
            "pack_inference_latency_microseconds", "Cumulative request latency", labels, registry=self.registry
        )
        self.duration = Histogram("pack_request_duration_seconds", "Request latency", labels, registry=self.registry)

    def observe(self, name: str, version: str, status: int, seconds: float) -> None:
        (self.requests if status < 400 else self.failures).labels(name, version).inc()
        self.latency_us.labels(name, version).inc(seconds * 1e6)
        self.duration.labels(name, version).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


def load_models(path: str | None, device: str) -> dict[str, Served]:
    if not path:
        raise RuntimeError(f"{MODELS_ENV} is not set: start this app with `pack deploy --target fastapi`")
    with open(path) as fh:
        entries = json.load(fh)["models"]
    return {str(e["name"]): Served(e, device) for e in entries}


class Routes:
    """The app's endpoints over the served models and their metrics (each a plain function FastAPI calls)."""

    def __init__(self, served: dict[str, Served]):
        self.served = served
        self.metrics = Metrics()

    @staticmethod
    def error(status: int, message: str) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"error": message}, status_code=status)

    def find(self, name: str | None, version: str | None = None) -> Any:
        """The model a route names (the only one when none is named), or the error answer."""
        names = ", ".join(sorted(self.served)) or "none"
        if name is None:
            if len(self.served) == 1:
                return next(iter(self.served.values()))
            return self.error(400, f"name the model: POST /predict/<name> (served: {names})")
        model = self.served.get(name)
        if model is None:
            return self.error(404, f"model {name!r} is not served here (served: {names})")
        if version is not None and version != model.version:
            return self.error(404, f"model {name!r} has no version {version!r} here (served: {model.version})")
        return model

    async def run(self, model: Served, body: bytes) -> Any:
        from fastapi.responses import Response
        from starlette.concurrency import run_in_threadpool

        start = time.perf_counter()
        try:
            status, text = await run_in_threadpool(model.answer, body)
        except Exception as exc:  # the model itself failed: this request's 500, the server goes on
            status, text = 500, json_text({"error": f"{type(exc).__name__}: {exc}"})
        self.metrics.observe(model.name, model.version, status, time.perf_counter() - start)
        return Response(text, status_code=status, media_type=JSON)

    async def predict(self, body: bytes, name: str | None) -> Any:
        model = self.find(name)
        return await self.run(model, body) if isinstance(model, Served) else model

    async def infer(self, body: bytes, name: str, version: str | None) -> Any:
        model = self.find(name, version)
        if not isinstance(model, Served):
            return model
        start = time.perf_counter()
        try:
            doc = as_json(body)
        except ValueError as exc:
            doc, problem = None, str(exc)
        else:
            problem = 'a v2 infer body is JSON {"inputs": [{"name", "shape", "datatype", "data"}]}'
        if is_v2_request(doc):
            return await self.run(model, body)
        self.metrics.observe(model.name, model.version, 400, time.perf_counter() - start)  # a failed request of this model
        return self.error(400, problem)

    def too_large(self, name: str | None, version: str | None = None) -> Any:
        """The 413 of a body over MAX_REQUEST_BYTES, counted as a failed request of the model it names."""
        model = self.find(name, version)
        if isinstance(model, Served):
            self.metrics.observe(model.name, model.version, 413, 0.0)
        return self.error(
            413,
            f"request body over {MAX_REQUEST_BYTES:,} bytes ({MAX_REQUEST_BYTES >> 20} MiB), this server's limit; "
            "send a smaller body (fewer rows or a smaller image per request)",
        )

    def metadata(self, name: str, version: str | None = None) -> Any:
        model = self.find(name, version)
        return model.metadata() if isinstance(model, Served) else model

    def model_ready(self, name: str, version: str | None = None) -> Any:
        model = self.find(name, version)
        if isinstance(model, Served) and model.handler.refused:
            return self.error(503, model.handler.refused)
        return {"name": model.name, "ready": True} if isinstance(model, Served) else model

    def refused(self) -> str:
        """Why some model serves nothing (its file did not verify), '' when none."""
        return "; ".join(f"{m.name} v{m.version}: {m.handler.refused}" for m in self.served.values() if m.handler.refused)

    def health(self) -> Any:
        if not self.served:
            return self.error(503, "no models loaded")
        if self.refused():
            return self.error(503, self.refused())
        return {"status": "healthy", "models": [m.describe() for m in self.served.values()]}

    def listing(self) -> Any:
        return {"models": [m.describe() for m in self.served.values()]}

    def ready(self) -> Any:
        if self.refused():
            return self.error(503, self.refused())
        return {"ready": True} if self.served else self.error(503, "no models loaded")

    def prometheus(self) -> Any:
        from fastapi.responses import Response

        data, content_type = self.metrics.exposition()
        return Response(data, media_type=content_type)


async def bounded_body(request: Any) -> bytes | None:
    """The request's body, or None when it is over MAX_REQUEST_BYTES: refused from its Content-Length before any of it
    is read, else (a chunked body) as soon as what was read passes the limit; the rest is never read."""
    limit = MAX_REQUEST_BYTES
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(models: dict[str, Served] | None = None) -> Any:
    """The FastAPI application (uvicorn's --factory): the models of PACK_FASTAPI_MODELS, or `models` (tests)."""
    from fastapi import FastAPI, Request

    served = models if models is not None else load_models(os.environ.get(MODELS_ENV), device_setting(os.environ.get(DEVICE_ENV)))
    routes = Routes(served)
    app = FastAPI(title="pack", docs_url=None, redoc_url=None, openapi_url=None)

    async def predict(request: Request, name: str | None = None) -> Any:
        body = await bounded_body(request)
        return routes.too_large(name) if body is None else await routes.predict(body, name)

    async def infer(request: Request, name: str, version: str | None = None) -> Any:
        body = await bounded_body(request)
        return routes.too_large(name, version) if body is None else await routes.infer(body, name, version)

    def get(path: str, endpoint: Any) -> None:
        app.add_api_route(path, endpoint, methods=["GET"], response_model=None)

    app.add_api_route("/predict", predict, methods=["POST"], response_model=None)
    app.add_api_route("/predict/{name}", predict, methods=["POST"], response_model=None)
    get("/health", routes.health)
    get("/models", routes.listing)
    get("/metrics", routes.prometheus)
    get("/v2", lambda: {"name": "pack-fastapi", "version": "1", "extensions": []})
    get("/v2/health/live", lambda: {"live": True})
    get("/v2/health/ready", routes.ready)
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        get(base, routes.metadata)
        get(base + "/ready", routes.model_ready)
        app.add_api_route(base + "/infer", infer, methods=["POST"], response_model=None)
    return app

"""The servers a bench launches, and one request to each over keep-alive loopback HTTP.

* TorchServe: `pack deploy --target torchserve` into the bench's own store (a temporary folder), then
  `POST /predictions/<name>` with the body an end user sends (JPEG bytes for image models, so the server decodes and
  pre-processes; tensor JSON otherwise), with the inference token from the server's key file.
* FastAPI (the HTTP baseline): `pack deploy --target fastapi`, then `POST /predict/<name>` with the same body as
  TorchServe gets: pack's handler code behind FastAPI + uvicorn, without TorchServe's frontend and batching.
* Triton: `pack deploy --target triton` (python backend running the ONNX export), then the KServe v2
  `POST /v2/models/<name>/infer` with the pre-processed tensor in Triton's binary-data extension (what tritonclient
  sends with binary_data=True). For detection builds the detector itself is called with the letterboxed tensor, not
  the ensemble with image bytes.

Each caller thread keeps its own connection (http.client), so connection set-up is not part of a request's latency.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..report.build_report import BuildReport
from .inprocess import process_tree, tree_rss_mb


@dataclass
class Served:
    """A server the bench launched and deployed the build to."""

    target: str
    base_url: str
    path: str
    headers: dict[str, str]
    body: bytes
    deploy: dict[str, Any]
    cold_start: dict[str, Any]
    settings: dict[str, Any]
    payload: str
    compare_with: str
    pids: Callable[[], list[int]] = field(default=lambda: [])

    def memory_mb(self) -> float | None:
        return tree_rss_mb(self.pids())

    def make_caller(self, timeout: float) -> Callable[[], Callable[[int], Any]]:
        parts = urllib.parse.urlsplit(self.base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80

        def factory() -> Callable[[int], Any]:
            conn = [http.client.HTTPConnection(host, port, timeout=timeout)]

            def call(_: int) -> bytes:
                for attempt in (0, 1):  # one retry on a connection the server closed between requests
                    try:
                        conn[0].request("POST", self.path, body=self.body, headers=self.headers)
                        response = conn[0].getresponse()
                        data = response.read()
                        break
                    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest):
                        conn[0].close()
                        conn[0] = http.client.HTTPConnection(host, port, timeout=timeout)
                        if attempt:
                            raise
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {data[:160].decode('utf-8', 'replace')}")
                return data

            return call

        return factory


# ---------------------------------------------------------------- the servers, through the Target interface


def launch(
    name: str,
    build_dir: Path,
    report: BuildReport,
    store: Path,
    request: Any,
    timeout: float,
    cold_start: Callable[[dict[str, Any]], dict[str, Any]],
    settings: Callable[[dict[str, Any]], dict[str, Any]],
    **options: Any,
) -> Served:
    """Deploy the build with `pack deploy --target NAME`'s own code, timed, and describe the endpoint it gives."""
    from ..targets import get_target

    target = get_target(name)
    t0 = time.perf_counter()
    result = target.deploy(build_dir, report, target.Options(store=store, timeout=timeout, **options))
    total = time.perf_counter() - t0
    endpoint = target.endpoint(result, report, store, request)
    return Served(
        target=name,
        base_url=endpoint.base_url,
        path=endpoint.path,
        headers=endpoint.headers,
        body=endpoint.body,
        deploy=result,
        cold_start={**cold_start(result.get("timings") or {}), "total_s": round(total, 2)},
        settings=settings(result),
        payload=endpoint.payload,
        compare_with=endpoint.compare_with,
        pids=endpoint.pids,
    )


def torchserve(
    build_dir: Path,
    report: BuildReport,
    store: Path,
    body: bytes,
    content_type: str,
    payload: str,
    settings: dict[str, Any],
    timeout: float,
) -> Served:
    from ..targets import Request

    return launch(
        "torchserve",
        build_dir,
        report,
        store,
        Request(body, content_type, payload, []),
        timeout,
        lambda t: {
            "launch_s": t.get("server_start_s"),
            "load_s": round(sum(t.get(k) or 0.0 for k in ("register_s", "scale_s")), 2),
            "smoke_s": t.get("smoke_s"),
        },
        lambda r: {
            **settings,
            "workers": r.get("workers", settings["workers"]),
            "batch_size": r.get("batch_size"),
            "max_batch_delay_ms": r.get("max_batch_delay_ms"),
        },
        workers=settings["workers"],
        batch_size=settings["batch_size"],
        max_batch_delay_ms=settings["max_batch_delay_ms"],
        threads=settings.get("threads"),
        format=settings["format"],
    )


FASTAPI_DEFAULTS = {"workers": 1, "format": "onnx"}


def fastapi(
    build_dir: Path, report: BuildReport, store: Path, body: bytes, content_type: str, payload: str, timeout: float
) -> Served:
    from ..targets import Request

    settings = dict(FASTAPI_DEFAULTS)
    served = launch(
        "fastapi",
        build_dir,
        report,
        store,
        Request(body, content_type, payload, []),
        timeout,
        lambda t: {"launch_s": t.get("server_start_s"), "load_s": None, "smoke_s": t.get("smoke_s")},
        lambda r: {**settings, "workers": r.get("workers", settings["workers"]), "placement": r.get("placement")},
        workers=settings["workers"],
        format=settings["format"],
    )
    _check_answer(served, timeout)
    return served


def triton(
    build_dir: Path, report: BuildReport, store: Path, arrays: list[np.ndarray], settings: dict[str, Any], timeout: float
) -> Served:
    from ..targets import Request

    served = launch(
        "triton",
        build_dir,
        report,
        store,
        Request(b"", "", "", arrays),
        timeout,
        lambda t: {"launch_s": t.get("server_start_s"), "load_s": t.get("load_s")},
        lambda r: {**settings, "backend": "python", "format": "onnx", "max_batch": r.get("max_batch_size")},
        workers=settings["instances"],
        batch_size=settings["max_batch"],
        max_batch_delay_ms=settings["max_queue_delay_ms"],
        threads=settings.get("threads"),
        backend="python",
        format="onnx",
    )
    roots = served.pids
    served.pids = lambda: sorted({p for root in roots() for p in process_tree(root)})
    _check_answer(served, timeout)
    return served


def _check_answer(served: Served, timeout: float) -> None:
    """One request before the load: the bench must be talking to the model correctly."""
    from ..errors import DeployFailed

    parts = urllib.parse.urlsplit(served.base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("POST", served.path, body=served.body, headers=served.headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise DeployFailed(
            f"{served.target} answered the bench's request with HTTP {response.status}: {data[:200].decode('utf-8', 'replace')}"
        )


def stop(target: str, store: Path) -> dict[str, Any]:
    from ..targets import get_target

    chosen = get_target(target)
    return chosen.stop(chosen.Options(store=store))

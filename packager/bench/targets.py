"""The servers a bench (or a tune point) launches, and one request to each over keep-alive loopback HTTP.

Every server is a target with the `Benchable` capability (packager/targets/capabilities.py), deployed with `pack
deploy --target NAME`'s own code into the bench's own store (a temporary folder), with its bench profile's defaults
under the settings the bench was given. The target says how a client calls what it deployed (`endpoint`): TorchServe
and FastAPI are sent what an end user sends (JPEG bytes for image models, so the server decodes and pre-processes;
tensor JSON otherwise), Triton the pre-processed tensor in its binary-data extension (for detection builds the
detector itself, not the ensemble). One request is checked before the load: the bench must be talking to the model
correctly.

Each caller thread keeps its own connection (http.client), so connection set-up is not part of a request's latency.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..report.build_report import BuildReport
from .inprocess import tree_rss_mb

if TYPE_CHECKING:
    from ..targets import BenchProfile, Request, Target


@dataclass
class Launched:
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


# ---------------------------------------------------------------- the servers, through the registry


RUNTIMES = {"onnx": "onnxruntime", "torchscript": "TorchScript"}  # what runs each served format, in a row's words


def launch(
    target: Target, build_dir: Path, report: BuildReport, store: Path, request: Request, timeout: float, settings: dict[str, Any]
) -> Launched:
    """Deploy the build with `pack deploy`'s own code, timed, with `settings` over the target's bench defaults, check
    one request, and describe the endpoint and what the deploy says it serves."""
    from ..targets import BENCHABLE, require

    benchable = require(BENCHABLE, target)
    profile = benchable.bench
    options = {**profile.defaults, **settings}
    t0 = time.perf_counter()
    result = target.deploy(build_dir, report, target.Options(store=store, timeout=timeout, **options))
    total = time.perf_counter() - t0
    endpoint = benchable.endpoint(result, report, store, request)
    timings = result.get("timings") or {}
    load = round(sum(timings.get(k) or 0.0 for k in profile.load_timings), 2) if profile.load_timings else None
    launched = Launched(
        target=target.name,
        base_url=endpoint.base_url,
        path=endpoint.path,
        headers=endpoint.headers,
        body=endpoint.body,
        deploy=result,
        cold_start={
            "launch_s": timings.get("server_start_s"),
            "load_s": load,
            **({"smoke_s": timings["smoke_s"]} if "smoke_s" in timings else {}),  # where the deploy times one
            "total_s": round(total, 2),
        },
        settings={**options, **{k: result[k] for k in (*options, "placement") if k in result}},  # as deployed
        payload=endpoint.payload,
        compare_with=endpoint.compare_with,
        pids=endpoint.pids,
    )
    _check_answer(launched, timeout)
    return launched


def runtime(launched: Launched, profile: BenchProfile) -> str:
    """What runs the model in a server row: the served format's runtime, in the target's workers or backend."""
    fmt = str(launched.deploy.get("format"))
    return f"{RUNTIMES.get(fmt, fmt)} in {profile.runtime}"


def _check_answer(served: Launched, timeout: float) -> None:
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


def stop(target: Target, store: Path) -> dict[str, Any]:
    return target.stop(target.Options(store=store))

"""The servers a bench launches, and one request to each over keep-alive loopback HTTP.

* TorchServe: `pack deploy --target torchserve` into the bench's own store (a temporary folder), then
  `POST /predictions/<name>` with the body an end user sends (JPEG bytes for image models, so the server decodes and
  pre-processes; tensor JSON otherwise), with the inference token from the server's key file.
* Triton: `pack deploy --target triton` (python backend running the ONNX export), then the KServe v2
  `POST /v2/models/<name>/infer` with the pre-processed tensor in Triton's binary-data extension (what tritonclient
  sends with binary_data=True). For detection builds the detector itself is called with the letterboxed tensor, not
  the ensemble with image bytes.

Each caller thread keeps its own connection (http.client), so connection set-up is not part of a request's latency.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .inprocess import process_tree, tree_rss_mb

Log = Callable[[str], None]


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


# ---------------------------------------------------------------- TorchServe


def torchserve(build_dir: Path, report: dict[str, Any], store: Path, body: bytes, content_type: str, payload: str, settings: dict[str, Any], timeout: float, log: Log) -> Served:
    from ..targets import DeployOptions, call
    from ..targets.torchserve.server import LocalServer, read_tokens

    opts = DeployOptions(
        store=store,
        timeout=timeout,
        workers=settings["workers"],
        batch_size=settings["batch_size"],
        max_batch_delay_ms=settings["max_batch_delay_ms"],
        format=settings["format"],
    )
    t0 = time.perf_counter()
    result = call("torchserve", "deploy", build_dir, report, opts, log)
    total = time.perf_counter() - t0
    timings = result.get("timings") or {}
    token = read_tokens(Path(result["token_file"]))["inference"]
    local = LocalServer(store)
    return Served(
        target="torchserve",
        base_url=result["inference_url"],
        path=f"/predictions/{urllib.parse.quote(report['name'], safe='')}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        body=body,
        deploy=result,
        cold_start={
            "launch_s": timings.get("server_start_s"),
            "load_s": round(sum(timings.get(k) or 0.0 for k in ("register_s", "scale_s")), 2),
            "smoke_s": timings.get("smoke_s"),
            "total_s": round(total, 2),
        },
        settings={**settings, "workers": result.get("workers", settings["workers"]), "batch_size": result.get("batch_size"), "max_batch_delay_ms": result.get("max_batch_delay_ms")},
        payload=payload,
        compare_with="inprocess-eager",
        pids=local.processes,
    )


def stop_torchserve(store: Path, log: Log) -> dict[str, Any]:
    from ..targets import DeployOptions, call

    return call("torchserve", "stop", DeployOptions(store=store), log)


# ---------------------------------------------------------------- Triton


def v2_binary_body(names: list[str], arrays: list[np.ndarray], outputs: list[str]) -> tuple[bytes, int]:
    """A KServe v2 infer request with the tensors in Triton's binary-data extension: (body, JSON header length)."""
    from tritonclient.utils import np_to_triton_dtype

    header = {
        "inputs": [
            {"name": n, "shape": list(a.shape), "datatype": np_to_triton_dtype(a.dtype), "parameters": {"binary_data_size": a.nbytes}}
            for n, a in zip(names, arrays)
        ],
        "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(np.ascontiguousarray(a).tobytes() for a in arrays), len(head)


def decode_v2_binary(data: bytes, header_length: int) -> dict[str, np.ndarray]:
    """Outputs of a v2 binary-data answer (used once to check the bench talks to Triton correctly)."""
    from tritonclient.utils import triton_to_np_dtype

    head = json.loads(data[:header_length])
    offset = header_length
    out = {}
    for item in head.get("outputs", []):
        size = int(item.get("parameters", {}).get("binary_data_size", 0))
        arr = np.frombuffer(data[offset : offset + size], dtype=triton_to_np_dtype(item["datatype"]))
        out[item["name"]] = arr.reshape(item["shape"])
        offset += size
    return out


def triton(build_dir: Path, report: dict[str, Any], store: Path, arrays: list[np.ndarray], settings: dict[str, Any], timeout: float, log: Log) -> Served:
    from ..targets import DeployOptions, call
    from ..targets.triton import server
    from ..targets.triton.repository import io_names

    opts = DeployOptions(
        store=store,
        timeout=timeout,
        workers=settings["instances"],
        batch_size=settings["max_batch"],
        max_batch_delay_ms=settings["max_queue_delay_ms"],
        backend="python",
        format="onnx",
    )
    t0 = time.perf_counter()
    result = call("triton", "deploy", build_dir, report, opts, log)
    total = time.perf_counter() - t0
    timings = result.get("timings") or {}
    in_names, out_names = io_names(report, "python")
    body, head_len = v2_binary_body(in_names, arrays, out_names)
    model = report["name"]  # the model itself (for detection builds: the detector, not the ensemble)
    pid = (result.get("server") or {}).get("pid")
    served = Served(
        target="triton",
        base_url=result["url"],
        path=f"/v2/models/{urllib.parse.quote(model, safe='')}/infer",
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(head_len)},
        body=body,
        deploy=result,
        cold_start={"launch_s": timings.get("server_start_s"), "load_s": timings.get("load_s"), "total_s": round(total, 2)},
        settings={**settings, "backend": "python", "format": "onnx", "max_batch": result.get("max_batch_size")},
        payload=f"pre-processed tensor {list(arrays[0].shape)} {arrays[0].dtype} (v2 binary data, {len(body)} bytes)",
        compare_with="inprocess-onnx-tensor",
        pids=(lambda: process_tree(pid)) if pid else (lambda: []),
    )
    _check_triton_answer(served, out_names, timeout)
    return served


def _check_triton_answer(served: Served, out_names: list[str], timeout: float) -> None:
    from ..errors import DeployFailed

    parts = urllib.parse.urlsplit(served.base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("POST", served.path, body=served.body, headers=served.headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise DeployFailed(f"Triton answered the bench's request with HTTP {response.status}: {data[:200].decode('utf-8', 'replace')}")
        length = int(response.getheader("Inference-Header-Content-Length") or len(data))
        outputs = decode_v2_binary(data, length)
    finally:
        conn.close()
    missing = [n for n in out_names if n not in outputs]
    if missing:
        raise DeployFailed(f"Triton's answer to the bench's request lacks output(s) {', '.join(missing)}")


def stop_triton(store: Path, log: Log) -> dict[str, Any]:
    from ..targets import DeployOptions, call

    return call("triton", "stop", DeployOptions(store=store), log)


STOPPERS = {"torchserve": stop_torchserve, "triton": stop_triton}

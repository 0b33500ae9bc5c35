"""The FastAPI target behind the one Target interface: its options, and its bench profile and the request a client
sends to it (`pack bench`). The server runs pack's own handler code (handlers/pack_fastapi.py) under uvicorn: the
HTTP baseline the other servers are compared with."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...report.build_report import BuildReport
from ..base import ServerTarget, register_target
from ..capabilities import BenchProfile, Endpoint, Request
from ..options import DeployOptions, cli_field, setting_field

STATUS = ("status",)


@dataclass
class FastAPIOptions(DeployOptions):
    url: str | None = cli_field(None, "--url", "Read a running server at this URL, not the one pack launched.", commands=STATUS)
    timeout: float = cli_field(
        180.0, "--timeout", "Seconds to wait for the server and the model.", type=float, commands=("deploy", "status", "undeploy")
    )
    workers: int | None = setting_field("workers")
    port: int | None = cli_field(None, "--port", "Port on 127.0.0.1 (default: the running server's, else a free one).", type=int)
    device: str | None = cli_field(None, "--device", "Where the models run: auto (a GPU when there is one), cpu, or cuda:N.")
    repair: bool = cli_field(
        False,
        "--repair",
        "Restart the server when a model answers its build sample wrong or not at all, then probe it again.",
        is_flag=True,
        commands=STATUS,
    )


@register_target
class FastAPITarget(ServerTarget):
    name = "fastapi"
    Options = FastAPIOptions
    description = "FastAPI + uvicorn running pack's handler code (the HTTP baseline; no auth, loopback only)"
    bench = BenchProfile(
        runtime="uvicorn workers",
        work="the same handler code as the in-process rows, behind FastAPI + uvicorn (no batching)",
        defaults={"workers": 1, "format": "onnx"},
        settings=("workers",),
        http_baseline=True,
    )

    def endpoint(self, deployed: dict[str, Any], report: BuildReport, store: Path, request: Request) -> Endpoint:
        """What an end user sends (image bytes, or tensor JSON) to the deploy's `predict_url`: the body TorchServe gets."""
        from .server import FastAPIServer

        return Endpoint(
            base_url=deployed["url"],
            path=urllib.parse.urlsplit(deployed["predict_url"]).path,
            headers={"Content-Type": request.content_type},
            body=request.body,
            payload=request.description,
            compare_with="inprocess-onnx" if deployed.get("format") == "onnx" else "inprocess-eager",
            pids=FastAPIServer(store).processes,
        )

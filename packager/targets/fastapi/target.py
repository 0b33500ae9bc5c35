"""The FastAPI target behind the one Target interface: its options, and the request a client sends to it (for
`pack bench`). The server runs pack's own handler code (handlers/pack_fastapi.py) under uvicorn: the HTTP baseline
the other servers are compared with."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...report.build_report import BuildReport
from ..base import DeployOptions, Endpoint, Request, ServerTarget, cli_field, register_target

STATUS = ("status",)


@dataclass
class FastAPIOptions(DeployOptions):
    url: str | None = cli_field(None, "--url", "Read a running server at this URL, not the one pack launched.", commands=STATUS)
    timeout: float = cli_field(
        180.0, "--timeout", "Seconds to wait for the server and the model.", type=float, commands=("deploy", "status", "undeploy")
    )
    workers: int | None = cli_field(None, "--workers", "Workers (TorchServe, uvicorn) or model instances (Triton).", type=int)
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

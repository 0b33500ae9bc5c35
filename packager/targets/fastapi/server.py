"""The local FastAPI server (uvicorn running handlers/pack_fastapi.py) pack runs for a store, on the local-server base
(packager/serve/local.py).

Its own parts: the set of models it serves (`models.json`, read by the app at start), the serving runtime's files
(copied at each launch), prometheus_client's multi-process folder (emptied at each launch), the uvicorn command line
(workers, a port given or free) and /health as its health check. `<store>/.servers/fastapi/` holds state.json,
models.json, models/<name>/<version>-<format>/ (pack.json, the export, labels), runtime/, metrics/ and server.log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from ...errors import EnvironmentProblem
from ...serve.http import HttpError
from ...serve.local import Launch, LocalServer
from ...serve.processes import free_ports
from .client import FastAPIClient

APP = "pack_fastapi:create_app"


def port_free(host: str, port: int) -> bool:
    """Nothing listens on host:port now (a bind succeeds; with SO_REUSEADDR, as uvicorn binds, so the closed
    connections of a server just stopped do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class FastAPIServer(LocalServer):
    """The uvicorn pack launched for one store."""

    kind = "fastapi"
    title = "FastAPI server"

    def __init__(self, store: Path):
        super().__init__(store)
        self.models_file = self.root / "models.json"
        self.models_dir = self.root / "models"

    def served(self) -> list[dict[str, Any]]:
        """The set in models.json (what the server loads at its next start), [] when there is none."""
        try:
            doc = json.loads(self.models_file.read_text())
            return list(doc.get("models") or [])
        except (OSError, ValueError, AttributeError):
            return []

    def write_served(self, entries: list[dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.models_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"models": entries}, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.models_file)

    def start(self, port: int | None, workers: int, device: str, timeout: float) -> dict[str, Any]:
        """Launch uvicorn with the set in models.json on 127.0.0.1:`port` (a free one when None) and wait until
        /health answers 200 (every worker loads every model before it takes a request)."""
        return self.ensure(lambda: self.plan(port, workers, device), timeout)[0]

    def plan(self, port: int | None, workers: int, device: str) -> Launch:
        try:
            import fastapi  # noqa: F401
            import prometheus_client  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError as exc:
            raise EnvironmentProblem(f"the fastapi target needs {exc.name}", "pip install 'pack-models[fastapi]'") from None
        host = "127.0.0.1"
        if port is None:
            port = free_ports(1, host)[0]
        elif not port_free(host, port):
            raise EnvironmentProblem(
                f"port {port} on {host} is in use by another process", "pass another --port, or stop what holds it"
            )
        runtime, metrics = self._lay_runtime(), self.root / "metrics"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
        command = [sys.executable, "-m", "uvicorn", APP, "--factory", "--app-dir", str(runtime), "--host", host]
        command += ["--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
        return Launch(
            command,
            host,
            {"http": port},
            f"http://{host}:{port}",
            "pip install 'pack-models[fastapi]'",
            env={
                "PACK_FASTAPI_MODELS": str(self.models_file),
                "PACK_FASTAPI_DEVICE": device,
                "PROMETHEUS_MULTIPROC_DIR": str(metrics),
                "PYTHONPATH": str(runtime),
            },
            record={"port": port, "workers": workers, "device": device, "models": self.served()},
        )

    def _lay_runtime(self) -> Path:
        """Copy the serving runtime's files the app imports (the app, every task's entry handler and what they import)
        into runtime/, afresh; returns that folder."""
        from ...serve.tasks import list_tasks, read_runtime, shipped_files

        names = sorted({n for entry in ["pack_fastapi.py", *(t.handler for t in list_tasks())] for n in shipped_files(entry)})
        runtime = self.root / "runtime"
        shutil.rmtree(runtime, ignore_errors=True)
        runtime.mkdir(parents=True)
        for name in names:
            (runtime / name).write_bytes(read_runtime(name))
        return runtime

    def healthy(self, state: dict[str, Any]) -> bool:
        try:
            return FastAPIClient(state["url"], timeout=5).healthy()
        except HttpError:
            return False

"""`pack deploy --target fastapi`: the FastAPI server's steps of the one deploy skeleton (packager/serve/deployflow.py).

The server serves a set of models, one version per name, loaded by every uvicorn worker at start. A deploy stages the
new version's folder (pack.json, the export, labels), writes the new set and starts the server with it (a running
server is restarted on its own port: the set is read only at start), then sends the build's sample through the v2
infer route and compares the answer with the recorded eager output. On any failure the previous set is put back and
the server restarted with it (or stopped when this deploy launched it), so what served before serves again (exit 4).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...report.build_report import BuildReport
from ...report.formats import Served
from ...report.formats import served as serve_of
from ...report.store import link_or_copy
from ...serve.deployflow import Steps, run
from ...serve.oip import curl_line, sample_request, write_request
from ...serve.settings import SETTINGS
from ..result import deploy_result, server_info, v2_infer_url
from .client import FastAPIClient
from .manage import status, stop, undeploy
from .server import FastAPIServer
from .smoke import smoke_test

logger = logging.getLogger(__name__)

__all__ = ["deploy", "status", "undeploy", "stop"]


def model_entry(
    build_dir: Path, report: BuildReport, served: Served, folder: Path, signature: Sequence[str] | None = None
) -> dict[str, Any]:
    """Lay out `folder` as a worker of the serving runtime reads it (pack.json, the served file, labels: the worker
    settings every server gives pack's handler, packager/serve/worker.py; with `signature`, the build's model.sig and
    the public key the handler checks the served file with) and return the set's entry for it."""
    import json

    from ...serve.tasks import task_for
    from ...serve.worker import SIGNED, signature_settings, worker_settings

    fmt = served.format
    labels = report.labels if report.labels and (build_dir / report.labels).is_file() else None
    meta = worker_settings(report, fmt, Path(labels).name if labels else None)
    folder.mkdir(parents=True)
    link_or_copy(build_dir / served.file, folder / meta["serialized_file"])
    if labels:
        link_or_copy(build_dir / labels, folder / Path(labels).name)
    for source, name in zip(signature or (), SIGNED, strict=False):
        shutil.copyfile(source, folder / name)
    if signature:
        meta["signature"] = signature_settings(served.file)
    (folder / "pack.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return {
        "name": report.name,
        "version": report.version,
        "format": fmt,
        "served_file": served.file,
        "sha256": report.sha256.get(served.file),
        "dir": str(folder),
        "handler": task_for(report).handler,
        "handler_settings": meta.get("handler") or {},
        "outputs": [{"name": o.name, "dtype": o.dtype, "shape": o.served_dims()} for o in report.outputs],
        "signature_checked": bool(signature),
    }


class FastAPISteps(Steps):
    server = "the FastAPI server"

    def prepare(self) -> None:
        o = self.opts
        self.served = serve_of(self.report, o.format)
        self.fmt = self.served.format
        if o.workers is not None:
            SETTINGS["workers"].check(o.workers)
        if o.device is not None and not re.fullmatch(r"auto|cpu|cuda(:[0-9]{1,2})?", o.device):
            raise UsageError(f"--device {o.device!r} is not a device", "use auto, cpu or cuda:N")
        if o.port is not None and not 1 <= int(o.port) <= 65535:
            raise UsageError(f"--port {o.port} is out of range", "use 1 to 65535")
        self.local = FastAPIServer(Path(o.store))
        self.staged: Path | None = None  # the new version's folder this command made
        self.started: dict[str, Any] | None = None

    def connect(self) -> None:
        self.before = self.local.running()  # None: no server (this deploy launches one)
        self.launched = self.before is None
        self.previous = self.local.served() if self.before is not None else []
        self.workers = int(self.opts.workers or (self.before or {}).get("workers") or 1)
        self.port = self.opts.port or (self.before or {}).get("port")
        self.device = self.opts.device or (self.before or {}).get("device") or "auto"

    def observe(self) -> None:
        old = next((e for e in self.previous if e.get("name") == self.name), None)
        signed = bool((self.opts.extra or {}).get("signature"))
        same = (self.version, self.served.file, self.report.sha256.get(self.served.file), signed)
        was = (
            (str(old.get("version")), old.get("served_file"), old.get("sha256"), bool(old.get("signature_checked")))
            if old
            else None
        )
        self.already = was == same
        self.replaced = str(old["version"]) if old is not None and not self.already else None

    def stage(self) -> None:
        folder = self.local.models_dir / self.name / f"{self.version}-{self.fmt}"
        if any(Path(e.get("dir", "")) == folder for e in self.previous) and not self.already:
            folder = folder.with_name(f"{folder.name}.{os.getpid()}")  # other contents under the name: keep the old folder
        self.doing = f"staging {self.name} v{self.version}"
        if self.already:  # this version serves now: its folder stays, and the server is started with it again
            self.entry = next(e for e in self.previous if e.get("name") == self.name)
        else:
            shutil.rmtree(folder, ignore_errors=True)  # what an interrupted deploy may have left
            self.staged = folder
            self.entry = model_entry(self.build_dir, self.report, self.served, folder, (self.opts.extra or {}).get("signature"))
        self.local.write_served([e for e in self.previous if e.get("name") != self.name] + [self.entry])

    def load(self) -> None:
        self.doing = f"starting the FastAPI server with {self.name} v{self.version}"
        t0 = time.monotonic()
        if self.before is not None:
            self.local.stop()
        self.started = self.local.start(self.port, self.workers, self.device, self.timeout)
        self.timings["server_start_s"] = round(time.monotonic() - t0, 2)
        self.client = FastAPIClient(self.started["url"], timeout=self.timeout)

    def smoke(self) -> dict[str, Any]:
        logger.debug(f"smoke test: sample input -> /v2/models/{self.name}/versions/{self.version}/infer")
        result = smoke_test(self.client, self.build_dir, self.report, self.timeout)
        self.timings["smoke_s"] = result["seconds"]
        return result

    def commit(self) -> None:
        """Drop the model folders the served set no longer names (a replaced version, models of a stopped server)."""
        keep = {Path(e["dir"]).resolve() for e in self.local.served()}
        for folder in self.local.models_dir.glob("*/*"):
            if folder.resolve() not in keep:
                shutil.rmtree(folder, ignore_errors=True)
        for folder in self.local.models_dir.glob("*"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    # --- undo
    def undo_files(self) -> None:
        self.local.write_served(self.previous)
        if self.staged is not None:
            shutil.rmtree(self.staged, ignore_errors=True)
            self.staged = None

    def undo_server(self, interrupted: bool) -> list[str]:
        self.local.stop()
        if self.launched or not self.previous:
            return []
        try:
            self.local.start(self.port, self.workers, self.device, self.timeout)
        except Exception as exc:  # say what serves now; the deploy's own error comes first
            return [f"the previous set could not be started again ({exc})"]
        return []

    def stop_server(self) -> None:
        self.local.stop()

    def server_gone(self) -> bool:
        return self.started is not None and self.local.running() is None

    def log_hint(self) -> str | None:
        return f"see the server log {self.local.log_path}"

    def still_serving(self) -> str:
        if self.launched or not self.previous:
            return "the server it started was stopped"
        names = ", ".join(f"{e['name']} v{e['version']}" for e in self.previous)
        return f"the server was restarted with what it served before ({names})"

    def result(self, smoke: dict[str, Any]) -> dict[str, Any]:
        state = self.started or {}
        url = str(state.get("url", "")).rstrip("/")
        placement = next((m.get("placement") for m in self.client.models() if m.get("name") == self.name), None)
        request = write_request(Path(self.opts.store), "fastapi", self.report, sample_request(self.build_dir, self.report))
        model_url = v2_infer_url(url, self.name, self.version)
        v2_curl = curl_line(model_url, request)
        where = (placement or {}).get("provider") or (placement or {}).get("device") or "unknown"
        return deploy_result(
            "fastapi",
            self.report,
            self.served,
            url=url,
            infer_url=model_url,
            v2_curl=v2_curl,
            smoke_test=smoke,
            timings=self.timings,
            server=server_info(self.launched, state.get("pid"), str(self.local.log_path)),
            summary=(
                f"deployed {self.name} v{self.version} ({self.served.file}, on {where}) to FastAPI: "
                f"POST {url}/predict/{self.name}\n"
                f"smoke test passed in {smoke['seconds']:.2f} s "
                f"(max abs error {max((f['max_abs_error'] for f in smoke['outputs']), default=0.0):.3g}); "
                f"{self.workers} worker(s)" + (f"; replaced v{self.replaced}" if self.replaced else "")
            ),
            predict_url=f"{url}/predict/{self.name}",
            metrics_url=f"{url}/metrics",
            workers=self.workers,
            replaced_version=self.replaced,
            serving=[f"{e['name']} v{e['version']}" for e in self.local.served()],
            placement=placement,
        )


def deploy(build_dir: Path, report: BuildReport, opts: Any) -> dict[str, Any]:
    return run(FastAPISteps(build_dir, report, opts))

"""`pack status / undeploy / stop --target fastapi`: what the server serves and where each model runs, each model probed
with its build's sample (the deploy's smoke test; `--repair` restarts the server and probes again), request counts and
latency from its Prometheus metrics; undeploy restarts the server without the model (stops it when none is left)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from ...errors import EnvironmentProblem, UsageError
from ...report.build_report import BuildReport
from ...report.store import StoreLock
from ...serve.health import Deployed, check_and_repair, health_line
from ...serve.http import translated
from ...serve.metrics import Families, read, summary_lines
from ..result import v2_infer_url
from .client import FastAPIClient
from .server import FastAPIServer
from .smoke import smoke_test

logger = logging.getLogger(__name__)

METRICS = Families(
    success="pack_inference_requests_total",
    failure="pack_inference_failures_total",
    latency_us="pack_inference_latency_microseconds_total",
    model_label="model",
    version_label="version",
)


def status(opts: Any) -> dict[str, Any]:
    local = FastAPIServer(Path(opts.store))
    state = None if opts.url else local.running()
    if state is None and not opts.url:
        return {
            "target": "fastapi",
            "running": False,
            "models": [],
            "summary": f"no FastAPI server launched by pack for store {opts.store} "
            "(`pack deploy MODEL --target fastapi` starts one)",
        }
    url = str(opts.url or (state or {})["url"]).rstrip("/")
    url = url if "://" in url else "http://" + url
    client = FastAPIClient(url, timeout=min(opts.timeout, 60))
    with translated("reading what the FastAPI server serves", refused=EnvironmentProblem):
        models = client.models()
    for entry in models:
        entry["infer_url"] = v2_infer_url(url, str(entry["name"]), str(entry["version"]))

    def probe(folder: Path, report: BuildReport) -> dict[str, Any]:
        return smoke_test(client, folder, report, min(opts.timeout, 60))

    def restart() -> None:
        with StoreLock(Path(opts.store) / ".servers", wait=opts.timeout):
            was = local.running() or {}
            local.stop()
            local.start(was.get("port"), int(was.get("workers") or 1), str(was.get("device") or "auto"), opts.timeout)

    repair = restart if getattr(opts, "repair", False) and state is not None else None
    for entry in models:
        deployed = Deployed(str(entry["name"]), str(entry["version"]), Path(opts.store))
        entry["health"] = check_and_repair(deployed, probe, repair, min(opts.timeout, 60))
        if entry["health"].get("repair"):
            repair = None  # one restart reloads every model
    metrics = read(f"{url}/metrics", METRICS)
    from ...console import table

    rows = [[m["name"], m["version"], m.get("format", ""), (m.get("placement") or {}).get("provider", "")] for m in models]
    return {
        "target": "fastapi",
        "running": True,
        "url": url,
        "pid": (state or {}).get("pid"),
        "workers": (state or {}).get("workers"),
        "models": models,
        "metrics": metrics,
        "summary": "\n".join(
            [
                f"FastAPI server at {url}" + (f" (pid {state['pid']}, {state['workers']} worker(s))" if state else ""),
                table(rows, ["model", "version", "format", "runs on"]) if rows else "no models served",
                "health (each version's build sample):",
                *(health_line(m["name"], m["version"], m["health"]) for m in models),
                *summary_lines(metrics),
            ]
        ),
    }


def undeploy(name: str, version: str | None, opts: Any) -> dict[str, Any]:
    local = FastAPIServer(Path(opts.store))
    with StoreLock(Path(opts.store) / ".servers", wait=opts.timeout):
        state = local.running()
        if state is None:
            raise UsageError(f"no FastAPI server launched by pack for store {opts.store}", "nothing to undeploy")
        served = local.served()
        entry = next((e for e in served if e.get("name") == name), None)
        if entry is None:
            raise UsageError(f"{name!r} is not served by the FastAPI server at {state['url']}")
        if version is not None and str(entry["version"]) != version:
            raise UsageError(f"{name!r} has no version {version} served (served: {entry['version']})")
        remaining = [e for e in served if e.get("name") != name]
        local.stop()
        local.write_served(remaining)
        if remaining:
            local.start(state["port"], int(state["workers"]), str(state.get("device") or "auto"), opts.timeout)
        shutil.rmtree(local.models_dir / name, ignore_errors=True)
    logger.info(f"removed {name} v{entry['version']}" + ("" if remaining else "; no model left, the server was stopped"))
    return {
        "target": "fastapi",
        "model": name,
        "removed": [str(entry["version"])],
        "remaining": [f"{e['name']} v{e['version']}" for e in remaining],
        "stopped": not remaining,
        "summary": f"removed {name} v{entry['version']} from the FastAPI server"
        + (f"; still served: {', '.join(e['name'] for e in remaining)}" if remaining else "; no model left, so it was stopped"),
    }


def stop(opts: Any) -> dict[str, Any]:
    return FastAPIServer(Path(opts.store)).stop()

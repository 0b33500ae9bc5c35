"""`pack status / undeploy / stop --target torchserve`: what is registered and how healthy it is (probed with each
build's sample, repaired on --repair: health.py), unregister (each version drained first: drain.py), stop the launched server."""

from __future__ import annotations

import logging
from typing import Any

from ...errors import EnvironmentProblem, UsageError
from ...serve import watcher
from ...serve.deployflow import server_lock
from ...serve.health import health_line
from ...serve.http import translated
from ...serve.metrics import Families, read, summary_lines
from ..options import DeployOptions
from ..result import v2_infer_url
from .connection import connect
from .drain import drain_then
from .health import probe_all
from .server import TorchServeServer

logger = logging.getLogger(__name__)

METRICS = Families(
    success="ts_inference_requests_total",
    latency_us="ts_inference_latency_microseconds",
    model_label="model_name",
    version_label="model_version",
)


def status(opts: DeployOptions) -> dict[str, Any]:
    conn = connect(opts, start=False)
    if conn is None:
        return {
            "target": "torchserve",
            "running": False,
            "models": [],
            "summary": f"no TorchServe launched by pack for store {opts.store} (`pack deploy MODEL` starts one)",
        }
    models: list[dict[str, Any]] = []
    url = conn.inference_client.base_url.rstrip("/") if conn.inference_client else None
    with translated("reading TorchServe's registered models", refused=EnvironmentProblem):
        for entry in conn.management.list_models():
            described = conn.management.versions(entry["modelName"])
            default = conn.management.default_version(entry["modelName"]) if described else None
            for d in described:
                workers = d.get("workers") or []
                models.append(
                    {
                        "model": d.get("modelName"),
                        "version": str(d.get("modelVersion")),
                        "default": str(d.get("modelVersion")) == default,
                        # TorchServe 0.12 has v2 routes for the default version only
                        "infer_url": v2_infer_url(url, str(d.get("modelName")), None)
                        if url and str(d.get("modelVersion")) == default
                        else None,
                        "mar": d.get("modelUrl"),
                        "batch_size": d.get("batchSize"),
                        "max_batch_delay_ms": d.get("maxBatchDelay"),
                        "min_workers": d.get("minWorkers"),
                        "max_workers": d.get("maxWorkers"),
                        "workers": [
                            {
                                "id": w.get("id"),
                                "status": w.get("status"),
                                "pid": w.get("pid"),
                                "memory_bytes": w.get("memoryUsage"),
                            }
                            for w in workers
                        ],
                    }
                )
    with translated("probing the registered models", refused=EnvironmentProblem):
        probe_all(conn, models, opts.store, min(opts.timeout, 60), bool(getattr(opts, "repair", False)))
    result = {
        "target": "torchserve",
        "running": True,
        "url": url,
        "management_url": conn.management.base_url,
        "token_file": conn.token_file,
        "pid": (conn.local.state() or {}).get("pid") if conn.local else None,
        "models": models,
    }
    from ...console import table

    rows = [
        [
            m["model"],
            m["version"],
            "yes" if m["default"] else "",
            str(m["batch_size"]),
            f"{sum(w['status'] == 'READY' for w in m['workers'])}/{len(m['workers'])}",
        ]
        for m in models
    ]
    metrics_url = (conn.local.state() or {}).get("metrics_url") if conn.local else None
    metrics = read(f"{metrics_url}/metrics", METRICS) if metrics_url else None
    result["metrics"] = metrics
    watching = watcher.describe(conn.local) if conn.local else None
    result["watcher"] = watching
    where = url or conn.management.base_url
    head = f"TorchServe at {where} (management {conn.management.base_url})"
    result["summary"] = "\n".join(
        [
            head,
            table(rows, ["model", "version", "default", "batch", "ready workers"]) if rows else "no models registered",
            *(["health (each version's build sample):"] + [health_line(m["model"], m["version"], m["health"]) for m in models]),
            *(summary_lines(metrics) if metrics else ["metrics: unknown for a server given by --url"]),
            *([watcher.status_line(watching)] if watching else []),
        ]
    )
    return result


def undeploy(name: str, version: str | None, opts: DeployOptions) -> dict[str, Any]:
    with server_lock(opts):  # never while a deploy or the watcher's repair changes the server
        return _undeploy(name, version, opts)


def _undeploy(name: str, version: str | None, opts: DeployOptions) -> dict[str, Any]:
    conn = connect(opts, start=False)
    if conn is None:
        raise UsageError(f"no TorchServe launched by pack for store {opts.store}", "nothing to undeploy (or pass --url)")
    with translated(f"reading the versions of {name} on TorchServe", refused=EnvironmentProblem):
        described = conn.management.versions(name)
        default = conn.management.default_version(name) if described else None
    if not described:
        raise UsageError(f"{name!r} is not registered on TorchServe at {conn.management.base_url}")
    known = [str(d.get("modelVersion")) for d in described]
    if version is not None and str(version) not in known:
        raise UsageError(f"{name!r} has no version {version} registered (registered: {', '.join(known)})")
    targets = [str(version)] if version is not None else sorted(known, key=lambda v: v == default)  # the default last
    removed = []
    drain_dir = conn.local.drain_dir if conn.local else None
    for v in targets:
        hint = "undeploy the other versions first, or deploy another version to make it the default" if v == default else None
        with translated(f"unregistering {name} v{v}", hint):
            drain_then(conn.management, drain_dir, name, v, opts.timeout)
        removed.append(v)
        logger.info(f"unregistered {name} v{v}")
        if conn.model_store is not None:
            (conn.model_store / f"{name}.v{v}.mar").unlink(missing_ok=True)
    remaining = [v for v in known if v not in removed]
    return {
        "target": "torchserve",
        "model": name,
        "removed": removed,
        "remaining": remaining,
        "summary": f"unregistered {name} version(s) {', '.join(removed)}"
        + (f"; still registered: {', '.join(remaining)}" if remaining else ""),
    }


def stop(opts: DeployOptions) -> dict[str, Any]:
    return watcher.stop_with(TorchServeServer(opts.store))

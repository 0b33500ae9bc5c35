"""`pack status / undeploy --target triton`: what the server's repository index knows, each deployment's health (probed
with its build's sample, repaired on --repair: health.py), and unloading a deployment."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...errors import DeployFailed, EnvironmentProblem, UsageError
from ...serve import watcher
from ...serve.deployflow import server_lock
from ...serve.health import health_line
from ...serve.http import translated
from ...serve.metrics import Families, read, summary_lines
from ..result import v2_infer_url
from .client import TritonHTTP
from .health import probe_all
from .server import TritonServer

logger = logging.getLogger(__name__)

METRICS = Families(
    success="nv_inference_request_success",
    failure="nv_inference_request_failure",
    latency_us="nv_inference_request_duration_us",
    model_label="model",
    version_label="version",
)


def _client_for(opts: Any) -> tuple[TritonHTTP | None, Any]:
    if opts.url:
        return TritonHTTP(opts.url, timeout=min(opts.timeout, 30)), None
    state = TritonServer(Path(opts.store)).current()
    if state is None:
        return None, None
    return TritonHTTP(state.url, timeout=min(opts.timeout, 30)), state


def stop(opts: Any) -> dict[str, Any]:
    return watcher.stop_with(TritonServer(Path(opts.store)))


def status(opts: Any) -> dict[str, Any]:
    client, state = _client_for(opts)
    if client is None:
        return {
            "target": "triton",
            "running": False,
            "models": [],
            "summary": f"no Triton server launched by pack is running for store {opts.store}",
        }
    with translated("reading Triton's repository index", refused=EnvironmentProblem):
        index = client.index()
        meta = client.metadata()
    models = [
        {
            "name": e.get("name"),
            "version": e.get("version"),
            "state": e.get("state", "UNKNOWN"),
            "reason": e.get("reason", ""),
            "infer_url": v2_infer_url(client.url, str(e["name"]), str(e["version"])) if e.get("version") else None,
        }
        for e in sorted(index, key=lambda e: (e.get("name", ""), e.get("version", "")))
    ]
    lines = [
        f"Triton {meta.get('version', '?')} at {client.url}"
        + (f" (pid {state.pid}, backends: {', '.join(state.backends)})" if state else "")
    ]
    for m in models:
        lines.append(
            f"  {m['name']:<28} v{m['version'] or '-':<4} {m['state']}"
            + (f"  {m['reason']}" if m["reason"] and m["state"] != "READY" else "")
        )
    if not models:
        lines.append("  (no models)")
    with translated("probing the deployed models", refused=EnvironmentProblem):
        health = probe_all(client, state, Path(opts.store), min(opts.timeout, 60), bool(getattr(opts, "repair", False)))
    lines += ["health (each deployment's build sample):"] + [health_line(n, h["version"], h) for n, h in health.items()]
    if not health:
        lines.append("  (no deployment of pack's to probe)")
    metrics = read(f"http://{state.host}:{state.metrics_port}/metrics", METRICS) if state else None
    lines += summary_lines(metrics) if metrics else ["metrics: unknown for a server given by --url (Triton serves them on :8002)"]
    watching = watcher.describe(TritonServer(Path(opts.store))) if state else None
    lines += [watcher.status_line(watching)] if watching else []
    return {
        "target": "triton",
        "running": True,
        "url": client.url,
        "server_version": meta.get("version"),
        "pid": state.pid if state else None,
        "backends": state.backends if state else None,
        "models": models,
        "deployments": state.deployments if state else None,
        "health": health,
        "metrics": metrics,
        "watcher": watching,
        "summary": "\n".join(lines),
    }


def undeploy(name: str, version: str | None, opts: Any) -> dict[str, Any]:
    with server_lock(opts):  # never while a deploy or the watcher's repair changes the server
        return _undeploy(name, version, opts)


def _undeploy(name: str, version: str | None, opts: Any) -> dict[str, Any]:
    client, state = _client_for(opts)
    if client is None:
        raise UsageError(
            f"no Triton server launched by pack is running for store {opts.store}",
            "nothing to undeploy (pass --url for another server)",
        )
    with translated("reading Triton's repository index", refused=EnvironmentProblem):
        states = client.states()
    recorded = (state.deployments.get(name) if state else None) or {}
    names = recorded.get("models") or [
        n for n in (f"{name}_preprocess", name, f"{name}_postprocess", f"{name}_ensemble") if n in states
    ]
    loaded = [n for n in names if states.get(n, {}).get("state") == "READY"]
    if name not in states or states[name].get("state") != "READY":
        known = ", ".join(sorted(n for n, e in states.items() if e.get("state") == "READY")) or "none"
        raise UsageError(f"{name} is not loaded on {client.url} (loaded: {known})")
    if version is not None and str(states[name].get("version")) != str(version):
        raise UsageError(f"{name} version {version} is not the loaded one (loaded: version {states[name].get('version')})")
    unloaded = []
    wait = min(opts.timeout, 60)
    for n in reversed(loaded):
        with translated(f"unloading {n}"):
            client.unload(n, timeout=opts.timeout)
            gone = client.wait_unloaded(n, wait)
        if not gone:
            raise DeployFailed(
                f"{n} is still loaded {wait:.0f} s after the unload request",
                f"see the server log {state.log}" if state else "see the server's log",
            )
        unloaded.append(n)
    if state:
        TritonServer(Path(opts.store)).record_deployment(name, None)
    logger.info(f"unloaded {', '.join(unloaded)}")
    return {
        "target": "triton",
        "model": name,
        "version": str(states[name].get("version")),
        "unloaded": unloaded,
        "url": client.url,
        "summary": f"unloaded {', '.join(unloaded)} from {client.url}",
    }

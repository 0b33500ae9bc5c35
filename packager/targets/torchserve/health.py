"""`pack status [--repair] --target torchserve`: each registered version probed with its build's sample (the deploy's
smoke test), not only /ping and the workers' status; `--repair` scales an unhealthy version's workers to zero and
back (TorchServe starts fresh worker processes and loads the model again), through the management API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...serve.health import UNHEALTHY, UNKNOWN, Deployed, check_and_repair
from .connection import Connection
from .smoke import smoke_test


def probe_all(conn: Connection, models: list[dict[str, Any]], store: Path, timeout: float, repair: bool) -> None:
    """Add each model entry's `health` (see packager/serve/health.py), in place."""
    for entry in models:
        name, version = str(entry["model"]), str(entry["version"])
        workers = max(len(entry.get("workers") or []), int(entry.get("min_workers") or 0), 1)
        health = check_and_repair(
            Deployed(name, version, Path(store)),
            _probe(conn, version, timeout),
            _rescale(conn, name, version, workers, timeout) if repair else None,
            timeout,
        )
        if health.get("repair"):  # new workers: list them as they are now
            entry["workers"] = _workers_now(conn, name, version, entry.get("workers") or [])
        ready = sum(w.get("status") == "READY" for w in entry.get("workers") or [])
        if health["health"] == UNKNOWN and ready == 0:  # no build to probe with, and nothing that could answer
            health = {**health, "health": UNHEALTHY, "reason": f"no READY worker ({health['reason']})"}
        entry["health"] = health


def _probe(conn: Connection, version: str, timeout: float) -> Any:
    def probe(folder: Path, report: Any) -> dict[str, Any]:

        result: dict[str, Any] = smoke_test(conn, folder, report, version, timeout)
        return result

    return probe


def _rescale(conn: Connection, name: str, version: str, workers: int, timeout: float) -> Any:
    def rescale() -> None:
        conn.management.scale(name, version, 0, timeout)
        conn.management.scale(name, version, workers, timeout)

    return rescale


def _workers_now(conn: Connection, name: str, version: str, before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for described in conn.management.versions(name):
        if str(described.get("modelVersion")) == version:
            return [
                {"id": w.get("id"), "status": w.get("status"), "pid": w.get("pid"), "memory_bytes": w.get("memoryUsage")}
                for w in described.get("workers") or []
            ]
    return before

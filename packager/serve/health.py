"""Health that tells the truth, for every server target: `pack status` probes each deployed model with its build's
recorded sample (the smoke test: the gate's one comparison, packager/report/samples.py), not only the server's ready
endpoint, and with `--repair` reloads an unhealthy one and probes it again until it answers right.

A target passes its own probe (its smoke test) and repair (a reload through its own API); this module decides what
the answers mean. Nothing here signals a process: a repair goes through the server's API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PackError
from ..report.build_report import FILE, BuildReport
from .http import HttpError

HEALTHY, UNHEALTHY, UNKNOWN = "healthy", "unhealthy", "unknown"

Probe = Callable[[Path, BuildReport], dict[str, Any]]  # the smoke test of one deployed build: {"passed", "reason"}
Repair = Callable[[], None]  # reload the model through the server's API


@dataclass(frozen=True)
class Deployed:
    """One model a server serves, and the build in the store it was deployed from."""

    name: str
    version: str
    store: Path

    @property
    def folder(self) -> Path:
        return Path(self.store) / self.name / str(self.version)


def check(model: Deployed, probe: Probe) -> dict[str, Any]:
    """{"health": healthy | unhealthy | unknown, "reason", "probe_s"}: the build's sample sent to the served model."""
    if not (model.folder / FILE).is_file():
        return {"health": UNKNOWN, "reason": f"no build {model.name} v{model.version} in the store to probe it with"}
    try:
        report = BuildReport.load(model.folder)
    except PackError as exc:
        return {"health": UNKNOWN, "reason": exc.line()}
    start = time.monotonic()
    try:
        result = probe(model.folder, report)
    except (PackError, HttpError, OSError) as exc:
        result = {"passed": False, "reason": exc.line() if isinstance(exc, PackError) else str(exc)}
    seconds = round(time.monotonic() - start, 3)
    if result.get("passed"):
        return {"health": HEALTHY, "probe_s": seconds}
    return {"health": UNHEALTHY, "reason": str(result.get("reason") or "the sample's answer is wrong"), "probe_s": seconds}


def check_and_repair(model: Deployed, probe: Probe, repair: Repair | None, wait: float) -> dict[str, Any]:
    """check(), and when unhealthy and `repair` is given: reload, then probe again until healthy or `wait` seconds
    have passed. The result says what was wrong and how long the recovery took."""
    health = check(model, probe)
    if health["health"] != UNHEALTHY or repair is None:
        return health
    start = time.monotonic()
    try:
        repair()
    except (PackError, HttpError, OSError) as exc:
        reason = exc.line() if isinstance(exc, PackError) else str(exc)
        return {**health, "repair": {"repaired": False, "reason": f"the reload failed: {reason}"}}
    after = check(model, probe)
    while after["health"] == UNHEALTHY and time.monotonic() - start < wait:
        time.sleep(0.5)
        after = check(model, probe)
    repaired = after["health"] == HEALTHY
    record = {"repaired": repaired, "was": health["reason"], "seconds": round(time.monotonic() - start, 2)}
    return {**after, "repair": record}


def health_line(name: str, version: str, health: dict[str, Any]) -> str:
    """What `pack status` prints for one model's health."""
    repair = health.get("repair")
    line = f"  {name} v{version}: {health['health']}"
    if repair and repair["repaired"]:
        return f"{line} (repaired in {repair['seconds']} s; it was unhealthy: {repair['was']})"
    if health.get("reason"):
        line += f" ({health['reason']})"
    if repair:
        line += f"; not repaired: {repair.get('reason') or 'still failing ' + str(repair['seconds']) + ' s after the reload'}"
    return line


def each_health(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"NAME vVERSION": health} of a `pack status` document, whichever target wrote it: a `health` map by deployment
    (with each one's version), or a `health` in each entry of `models` (named `model` or `name`)."""
    found: dict[str, dict[str, Any]] = {}
    by_name = status.get("health")
    for name, health in (by_name or {}).items() if isinstance(by_name, dict) else []:
        found[f"{name} v{health.get('version')}"] = health
    for entry in status.get("models") or []:
        health = entry.get("health") if isinstance(entry, dict) else None
        if isinstance(health, dict):
            found[f"{entry.get('model') or entry.get('name')} v{entry.get('version')}"] = health
    return found

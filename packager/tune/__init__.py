"""`pack tune`: the best server settings for a build under a p99 latency bound, measured on the real server.

    pack tune MODEL --target triton|torchserve [--p99-ms N] [--budget-s N] [--concurrency N]

The tunable targets are those the registry finds with the `Tunable` capability (packager/targets/capabilities.py);
each is deployed and measured as `pack bench` measures it (its bench profile). The target says which settings it has
and their candidate values (`Tunable.tuning_space`: workers, server-side batch size, batching delay, onnxruntime
threads, by the deploy options' names). The search starts from the settings the build serves now and walks one
setting at a time (coordinate search), each candidate deployed for real into a private store and
measured under closed-loop load (packager/tune/point.py), until no step improves or the budget is spent. Every point
on the frontier was loaded, smoke-tested and served. The best point under the bound is written into the build by
the target (`Tunable.adopt_settings`: config.pbtxt, model-config.yaml), through the same offline checks as a build,
and recorded in report.json; later deploys use it.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .frontier import best, closest, frontier, public
from .point import Window, run_point

if TYPE_CHECKING:
    from ..targets import Target

logger = logging.getLogger(__name__)


@dataclass
class TuneOptions:
    model: str
    target: str  # one of the tunable targets (`capable(TUNABLE)`)
    version: str | None = None
    store: Path = Path("model_store")
    p99_ms: float | None = None
    budget_s: float = 240.0
    window: Window = field(default_factory=Window)
    write: bool = True
    plot: Path | None = None


def search(
    space: dict[str, list[Any]], start: dict[str, Any], measure: Any, budget_s: float, p99_ms: float | None
) -> list[dict[str, Any]]:
    """Coordinate search: from `start`, try every value of one setting at a time around the best point so far; a
    pass over all settings that finds nothing better ends it, as does the budget (a point is started only when the
    slowest point so far still fits)."""
    started = time.perf_counter()
    points: dict[tuple[Any, ...], dict[str, Any]] = {}
    slowest = 0.0

    def visit(settings: dict[str, Any]) -> bool:
        nonlocal slowest
        key = tuple(sorted(settings.items()))
        if key in points:
            return True
        if points and time.perf_counter() - started + slowest > budget_s:
            return False
        points[key] = measure(settings)
        slowest = max(slowest, points[key].get("seconds", 0.0))
        return True

    def incumbent() -> dict[str, Any]:
        found = best(list(points.values()), p99_ms) or closest(list(points.values()))
        return dict(found["settings"]) if found else dict(start)

    visit(dict(start))
    for _ in range(3):  # passes over every setting
        before = incumbent()
        for knob, values in space.items():
            for value in values:
                if not visit({**incumbent(), knob: value}):
                    return list(points.values())
        if incumbent() == before:
            break
    return list(points.values())


def run_tune(o: TuneOptions) -> dict[str, Any]:
    from ..report.integrity import intact_build
    from ..report.store import leftover_scratch, scratch_store
    from ..targets import BENCHABLE, TUNABLE, get_target, require

    server = get_target(o.target)
    target, profile = require(TUNABLE, server), require(BENCHABLE, server).bench  # measured as the bench measures it
    folder, report = intact_build(o.store, o.model, o.version)  # only a build that matches its report is served
    space, start = target.tuning_space(report)
    request = _request(folder, report, profile.tensors)
    for left in leftover_scratch(o.store):  # what a killed tune left: its servers, then its folder
        _stop(server, left / "store")
        shutil.rmtree(left, ignore_errors=True)
    scratch = scratch_store(o.store, "tune")
    started = time.perf_counter()
    logger.info(f"tuning {report.name} v{report.version} on {o.target}: {_space_text(space)}; budget {o.budget_s:g} s")
    try:
        points = search(
            space,
            start,
            lambda s: run_point(server, folder, report, scratch / "store", s, request, o.window),
            o.budget_s,
            o.p99_ms,
        )
    finally:
        _stop(server, scratch / "store")
        shutil.rmtree(scratch, ignore_errors=True)
    chosen = best(points, o.p99_ms)
    doc: dict[str, Any] = {
        "tune": 1,
        "model": report.name,
        "version": report.version,
        "target": o.target,
        "p99_bound_ms": o.p99_ms,
        "concurrency": o.window.concurrency,
        "space": space,
        "frontier": [public(p) for p in frontier(points)],
        "best": public(chosen) if chosen else None,
        "written": [],
        "points": points,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if chosen and o.write:
        tuned = {**public(chosen), "p99_bound_ms": o.p99_ms, "concurrency": o.window.concurrency}
        tuned["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        written = target.adopt_settings(folder, report, chosen["settings"], tuned)
        doc["written"] = [str(folder / rel) for rel in written]  # a signed build: see packager/report/trust.py
    return doc


def _request(folder: Path, report: Any, tensors: bool) -> Any:
    """What each point is sent, as the bench sends it: the end user's request, or the pre-processed tensors for a
    target whose bench profile says so."""
    from ..bench import inprocess as ip
    from ..targets import Request

    body, content_type, description = ip.request_payload(folder, report)
    arrays = ip.preprocessed(ip.handler_instance(folder, report, lambda a: a, "onnx"), body) if tensors else []
    return Request(body, content_type, description, arrays)


def _stop(target: Target, store: Path) -> None:
    try:
        target.stop(target.Options(store=store))
    except Exception as exc:  # never hide the search's own error behind a failed stop; say what is left
        logger.warning(f"could not stop the tune's {target.name} server: {exc}")


def _space_text(space: dict[str, list[Any]]) -> str:
    return ", ".join(f"{k} {'/'.join(map(str, v))}" for k, v in space.items())


__all__ = ["TuneOptions", "Window", "run_tune", "search"]

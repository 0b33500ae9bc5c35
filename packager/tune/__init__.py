"""`pack tune`: the best server settings for a build under a p99 latency bound, measured on the real server.

    pack tune MODEL --target triton|torchserve [--p99-ms N] [--budget-s N] [--concurrency N]

The tunable targets are those the registry finds with the `Tunable` capability (packager/targets/capabilities.py);
each is deployed and measured as `pack bench` measures it (its bench profile). The target says which settings it has
and their candidate values (`Tunable.tuning_space`: workers, server-side batch size, batching delay, onnxruntime
threads, by the deploy options' names). The search starts from the settings the build serves now and walks one
setting at a time (coordinate search), each candidate deployed for real into a private store and
measured under closed-loop load (packager/tune/point.py), until no step improves or the budget is spent. Every point
on the frontier was loaded, smoke-tested and served. A best point whose windows never agreed (`stable: false`) is
deployed and measured again while the budget lasts (`settle`); one still unstable at the end is written with a
warning and the warning recorded. The best point under the bound is written into the build by
the target (`Tunable.adopt_settings`: config.pbtxt, model-config.yaml), through the same offline checks as a build,
and recorded in report.json; later deploys use it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .frontier import best, closest, describe, frontier, public
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
    slowest point so far still fits twice: once for it, once kept for re-measuring an unstable best, see `settle`)."""
    started = time.perf_counter()
    points: dict[tuple[Any, ...], dict[str, Any]] = {}
    slowest = 0.0

    def visit(settings: dict[str, Any]) -> bool:
        nonlocal slowest
        key = tuple(sorted(settings.items()))
        if key in points:
            return True
        if points and time.perf_counter() - started + 2 * slowest > budget_s:
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


def settle(
    points: list[dict[str, Any]], measure: Any, p99_ms: float | None, seconds_left: float
) -> tuple[dict[str, Any] | None, list[str]]:
    """The best point, measured again while it is not stable and `seconds_left` still holds its measurement: each
    new measurement replaces the point (`remeasured` counts them); when the new figures make another point the best,
    that one is settled in turn. Returns the best and the warnings for the report (a best still unstable)."""
    while True:
        chosen = best(points, p99_ms)
        if chosen is None or chosen.get("stable"):
            return chosen, []
        cost = max(float(chosen.get("seconds") or 0.0), 1.0)
        if cost > seconds_left:
            break
        logger.info(f"re-measuring the best, {describe(chosen['settings'])}: not stable ({chosen.get('spread_pct')}% apart)")
        again = dict(measure(chosen["settings"]))
        again["remeasured"] = int(chosen.get("remeasured", 0)) + 1
        points[points.index(chosen)] = again
        seconds_left -= max(float(again.get("seconds") or 0.0), 1.0)
    times = chosen.get("remeasured", 0)
    warning = (
        f"the best setting ({describe(chosen['settings'])}) is not stable: its last two windows were "
        f"{chosen.get('spread_pct')}% apart after {times} re-measurement{'' if times == 1 else 's'} "
        "(the budget ended); its figures may not come back: a longer --window-s or --budget-s, or a quieter machine, helps"
    )
    logger.warning(warning)
    return chosen, [warning]


def run_tune(o: TuneOptions) -> dict[str, Any]:
    from ..report.integrity import intact_build
    from ..report.store import drop_scratch, leftover_scratch, scratch_store
    from ..targets import BENCHABLE, TUNABLE, get_target, require

    server = get_target(o.target)
    target, profile = require(TUNABLE, server), require(BENCHABLE, server).bench  # measured as the bench measures it
    folder, report = intact_build(o.store, o.model, o.version)  # only a build that matches its report is served
    space, start = target.tuning_space(report)
    request = _request(folder, report, profile.tensors)
    for left in leftover_scratch(o.store):  # what a killed tune or bench left: its servers, then its folder
        _stop(server, left / "store")
        drop_scratch(left)
    scratch = scratch_store(o.store, "tune")
    started = time.perf_counter()
    logger.info(f"tuning {report.name} v{report.version} on {o.target}: {_space_text(space)}; budget {o.budget_s:g} s")
    try:

        def measure(settings: dict[str, Any]) -> dict[str, Any]:
            return run_point(server, folder, report, scratch / "store", settings, request, o.window)

        points = search(space, start, measure, o.budget_s, o.p99_ms)
        chosen, warnings = settle(points, measure, o.p99_ms, o.budget_s - (time.perf_counter() - started))
    finally:
        _stop(server, scratch / "store")
        if not drop_scratch(scratch):  # kept while a server of it is recorded: `pack status` lists it, `pack stop` ends it
            logger.warning(f"a server of this tune is still recorded under {scratch}; `pack stop` stops it")
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
        "warnings": warnings,
        "points": points,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if chosen and o.write:
        tuned = {**public(chosen), "p99_bound_ms": o.p99_ms, "concurrency": o.window.concurrency, "warnings": warnings}
        tuned.update({k: chosen[k] for k in ("spread_pct", "remeasured") if k in chosen})
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


__all__ = ["TuneOptions", "Window", "run_tune", "search", "settle"]

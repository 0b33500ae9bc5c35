"""One point of `pack tune`: deploy the build with one set of server settings (the real server, through the target's
own deploy, smoke test included), warm it up as `pack bench` does (packager/bench/load.py's `warm_up`), then measure
windows of closed-loop load (the bench's load generator, request and client) until two in a row agree.

Stable: the throughputs of the last two windows differ by under 10% of their mean. After `max_windows` windows a
point that never settled is kept with `stable: false`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..report.build_report import BuildReport

if TYPE_CHECKING:
    from ..targets import Target

logger = logging.getLogger(__name__)

STABLE_SPREAD = 0.10


@dataclass
class Window:
    seconds: float = 2.0  # one measurement window
    warmup: int = 2  # untimed requests per caller before the warm-up second (bench.load.warm_up, as `pack bench --warmup`)
    max_windows: int = 4
    concurrency: int = 8
    timeout: float = 180.0


def throughput_spread(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    last = values[-2:]
    mean = sum(last) / 2
    return abs(last[0] - last[1]) / mean if mean > 0 else None


def measure_point(make_caller: Any, w: Window) -> dict[str, Any]:
    """Warm-up, then windows until stable or `max_windows`; figures from the stable windows' pooled latencies."""
    from ..bench.load import run_load, warm_up

    warm_up(make_caller, w.concurrency, w.warmup)
    rates: list[float] = []
    latencies: list[list[float]] = []
    errors, samples = 0, []
    for _ in range(w.max_windows):
        result = run_load(make_caller, requests=10**9, concurrency=w.concurrency, time_limit_s=w.seconds)
        errors += result.errors
        samples += result.error_samples
        rates.append(len(result.latencies_s) / result.seconds if result.seconds > 0 else 0.0)
        latencies.append(result.latencies_s)
        spread = throughput_spread(rates)
        if spread is not None and spread < STABLE_SPREAD:
            break
    spread = throughput_spread(rates)
    pooled = np.asarray([t for window in latencies[-2:] for t in window], dtype=np.float64) * 1000.0  # the last two windows
    figures: dict[str, Any] = {
        "throughput_rps": round(float(np.mean(rates[-2:])), 2),
        "p50_ms": round(float(np.percentile(pooled, 50)), 2) if pooled.size else None,
        "p99_ms": round(float(np.percentile(pooled, 99)), 2) if pooled.size else None,
        "stable": spread is not None and spread < STABLE_SPREAD,
        "spread_pct": None if spread is None else round(100 * spread, 1),
        "windows": len(rates),
        "requests": int(sum(len(x) for x in latencies)),
        "errors": errors,
    }
    if errors:
        figures["error"] = f"{errors} request(s) failed under load: {samples[0][:160] if samples else ''}"
    return figures


def deploy_point(
    target: Target, build_dir: Path, report: BuildReport, store: Path, settings: dict[str, Any], request: Any, timeout: float
) -> Any:
    """Deploy with `settings` (deploy option names) over the target's bench defaults, into the tune's own store, as the
    bench deploys (the bench's `Launched`: an endpoint and a caller factory). A version deployed before is taken down
    first, so the new settings load."""
    from ..bench.targets import launch
    from ..errors import PackError

    try:
        target.undeploy(report.name, report.version, target.Options(store=store, timeout=timeout))
    except PackError:  # nothing deployed yet (the first point): nothing to take down
        pass
    return launch(target, build_dir, report, store, request, timeout, settings)


def run_point(
    target: Target, build_dir: Path, report: BuildReport, store: Path, settings: dict[str, Any], request: Any, w: Window
) -> dict[str, Any]:
    """Deploy and measure one point; a point that cannot be deployed or served is recorded with its error. An
    environment problem (no server, no backend for the build: no setting changes it) ends the search, with its own
    line and exit code."""
    from ..errors import EnvironmentProblem, PackError

    started = time.perf_counter()
    point: dict[str, Any] = {"settings": dict(settings)}
    try:
        server = deploy_point(target, build_dir, report, store, settings, request, w.timeout)
        point["deploy_s"] = server.cold_start["total_s"]
        point["applied"] = server.settings  # what the deploy (the server, where it says) applied: the bench's row shows the same
        point.update(measure_point(server.make_caller(w.timeout), w))
    except EnvironmentProblem:
        raise
    except PackError as exc:
        point["error"] = exc.message
    point["seconds"] = round(time.perf_counter() - started, 2)
    if point.get("error"):
        logger.info(f"  {_label(settings)}: failed ({point['error'][:160]})")
    else:
        logger.info(
            f"  {_label(settings)}: {point['throughput_rps']:.1f} req/s, p50 {point['p50_ms']} ms, p99 {point['p99_ms']} ms"
            + ("" if point["stable"] else f" (unstable: {point['spread_pct']}% apart)")
        )
    return point


def _label(settings: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())


__all__ = ["Window", "measure_point", "run_point", "throughput_spread"]

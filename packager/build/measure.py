"""Latency measurement, time-boxed: one runner at one batch size until its timings are stable or its window ends
(`measure`), and every (format, batch size) of a build within one total budget (`measure_all`).

Stable means the spread of the timed runs, (p90 - p10) / p50, is under 10% over at least five runs: then the
measurement stops early. A cell whose window ends first is recorded with `stable: false` and its spread, so nobody
reads a noisy figure as a precise one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .runners import Runner

STABLE_SPREAD = 0.10  # (p90 - p10) / p50 under this over STABLE_RUNS runs: stable, stop measuring
STABLE_RUNS = 5
MEASURE_BUDGET_S = 3.0  # pack build's default: every format at every batch size, in all


def spread(times: Sequence[float]) -> float | None:
    if len(times) < 2:
        return None
    p10, p50, p90 = np.percentile(np.asarray(times), [10, 50, 90])
    return float((p90 - p10) / p50) if p50 > 0 else None


def measure(
    runner: Runner, inputs: list[np.ndarray], batch: int, iterations: int = 10, warmup: int = 1, time_cap_s: float = 0.5
) -> dict[str, Any]:
    """Warm up, then time runs until `iterations`, or until stable, or until `time_cap_s` has passed (at least one
    timed run, three when the window allows)."""
    for _ in range(warmup):
        runner(inputs)
    times: list[float] = []
    deadline = time.perf_counter() + time_cap_s
    while len(times) < iterations:
        start = time.perf_counter()
        runner(inputs)
        times.append(time.perf_counter() - start)
        now = time.perf_counter()
        if len(times) >= STABLE_RUNS and (spread(times) or 0.0) < STABLE_SPREAD:
            break
        if now >= deadline and (len(times) >= 3 or now + times[-1] > deadline + time_cap_s):
            break
    return summarize(times, batch, warmup)


def summarize(times: list[float], batch: int, warmup: int) -> dict[str, Any]:
    arr = np.array(times) * 1000.0
    mean_s = float(arr.mean()) / 1000.0
    s = spread(times)
    return {
        "batch": batch,
        "iterations": len(times),
        "warmup": warmup,
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "throughput_per_s": round(batch / mean_s, 2) if mean_s > 0 else None,
        "spread_pct": None if s is None else round(100 * s, 1),
        "stable": s is not None and len(times) >= 3 and s < STABLE_SPREAD,
    }


Cell = tuple[str, int, Runner, list[np.ndarray]]  # (name, batch size, runner, inputs)


def measure_all(
    cells: list[Cell],
    budget_s: float,
    iterations: int,
    warm: set[str] | frozenset[str] = frozenset(),
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every (name, batch, runner, inputs) cell within `budget_s` in all: each cell gets an equal share of what is
    left (so a cell that stabilises early leaves its time to the next). Runners named in `warm` have already run at
    these sizes (the gate ran them) and get no warm-up run. Returns ({name: {batch: figures}}, totals)."""
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for index, (name, batch, runner, inputs) in enumerate(cells):
        left = budget_s - (time.perf_counter() - started)
        window = max(left, 0.0) / (len(cells) - index)
        figures = measure(runner, inputs, batch, iterations=iterations, warmup=0 if name in warm else 1, time_cap_s=window)
        figures["window_s"] = round(window, 3)
        results.setdefault(name, {})[str(batch)] = figures
    seconds = time.perf_counter() - started
    totals = {
        "budget_s": budget_s,
        "seconds": round(seconds, 2),
        "cells": len(cells),
        "stable": sum(1 for f in results.values() for c in f.values() if c["stable"]),
    }
    return results, totals


__all__ = ["MEASURE_BUDGET_S", "STABLE_SPREAD", "Cell", "measure", "measure_all", "spread", "summarize"]

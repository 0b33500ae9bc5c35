"""Warm-up and latency measurement of one runner at one batch size (a bounded loop: iterations and a time cap)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .runners import Runner


def measure(
    runner: Runner, inputs: list[np.ndarray], batch: int, iterations: int = 10, warmup: int = 1, time_cap_s: float = 0.5
) -> dict[str, Any]:
    for _ in range(warmup):
        runner(inputs)
    times: list[float] = []
    deadline = time.perf_counter() + time_cap_s
    while len(times) < iterations and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        runner(inputs)
        times.append(time.perf_counter() - start)
    arr = np.array(times) * 1000.0
    mean_s = float(arr.mean()) / 1000.0
    return {
        "batch": batch,
        "iterations": len(times),
        "warmup": warmup,
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "throughput_per_s": round(batch / mean_s, 2) if mean_s > 0 else None,
    }

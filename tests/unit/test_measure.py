"""How `pack build` measures (packager/build/measure.py), on made-up runners: bounded by iterations and a time cap,
the whole measurement time-boxed, and what is stable said. (The measurements of a real build:
tests/integration/test_build.py.)"""

from __future__ import annotations

import numpy as np
import pytest


def test_measure_is_bounded_by_iterations_and_a_time_cap() -> None:
    import time

    from packager.build.measure import measure

    calls: list[int] = []

    def runner(arrays: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(1)
        return arrays

    result = measure(runner, [np.zeros(1)], batch=4, iterations=5, warmup=2)
    assert result["iterations"] == 5 and len(calls) == 7 and result["warmup"] == 2
    calls.clear()

    def slow(arrays: list[np.ndarray]) -> list[np.ndarray]:
        time.sleep(0.02)
        return arrays

    capped = measure(slow, [np.zeros(1)], batch=1, iterations=1000, warmup=0, time_cap_s=0.05)
    assert 3 <= capped["iterations"] < 1000  # at least 3 runs, then the time cap stops it


def test_measure_all_is_time_boxed_and_says_what_is_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget bounds the whole measurement; a steady runner stops early as stable, a noisy one is marked. The
    runners advance a fake clock, so the test does not depend on the machine's load."""
    import itertools
    from types import SimpleNamespace

    from packager.build import measure as measure_module
    from packager.build.measure import Cell, measure_all

    clock = [0.0]
    monkeypatch.setattr(measure_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def steady(arrays: list[np.ndarray]) -> list[np.ndarray]:
        clock[0] += 0.002
        return arrays

    delays = itertools.cycle([0.001, 0.02])

    def noisy(arrays: list[np.ndarray]) -> list[np.ndarray]:
        clock[0] += next(delays)
        return arrays

    zeros: list[np.ndarray] = [np.zeros(1)]
    cells: list[Cell] = [("steady", 1, steady, zeros), ("noisy", 1, noisy, zeros)]
    results, totals = measure_all(cells, budget_s=0.3, iterations=1000, warm={"steady"})
    assert clock[0] <= 0.3 + 0.02  # the budget, overrun by one run at most
    steady_fig, noisy_fig = results["steady"]["1"], results["noisy"]["1"]
    assert steady_fig["stable"] and steady_fig["iterations"] < 50 and steady_fig["warmup"] == 0
    assert not noisy_fig["stable"] and noisy_fig["spread_pct"] > 10 and noisy_fig["warmup"] == 1
    assert totals["cells"] == 2 and totals["stable"] == 1

"""`pack tune`'s search and frontier logic on made-up measurements (the real servers: tests/integration/test_tune_servers.py)."""

from __future__ import annotations

from typing import Any

from packager.tune import search, settle
from packager.tune.frontier import best, dominates, frontier
from packager.tune.point import throughput_spread


def _point(rps: float, p99: float, **settings: Any) -> dict[str, Any]:
    return {"settings": settings, "throughput_rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "stable": True}


def test_the_frontier_keeps_only_undominated_points_and_best_respects_the_bound() -> None:
    a, b, c, d = _point(100, 10, w=1), _point(200, 30, w=2), _point(150, 40, w=3), _point(300, 90, w=4)
    failed = {"settings": {"w": 5}, "error": "deploy failed"}
    points = [a, b, c, d, failed]
    assert dominates(b, c) and not dominates(a, b)
    assert frontier(points) == [d, b, a]
    assert best(points, None) is d
    assert best(points, 35) is b  # the most requests/s with p99 under 35 ms
    assert best(points, 5) is None


def test_search_walks_one_setting_at_a_time_and_stops_when_nothing_improves() -> None:
    measured: list[dict[str, Any]] = []

    def measure(settings: dict[str, Any]) -> dict[str, Any]:
        measured.append(settings)
        rps = 100 * settings["batch"] + 10 * settings["workers"]
        return {**_point(rps, 10 * settings["batch"]), "settings": settings, "seconds": 0.0}

    space = {"batch": [1, 2, 4], "workers": [1, 2]}
    points = search(space, {"batch": 1, "workers": 1}, measure, budget_s=60, p99_ms=25)
    assert len(measured) == len({tuple(sorted(s.items())) for s in measured})  # no point measured twice
    chosen = best(points, 25)
    assert chosen is not None and chosen["settings"] == {"batch": 2, "workers": 2}  # batch 4 breaks the bound


def test_search_stops_at_the_budget() -> None:
    def slow(settings: dict[str, Any]) -> dict[str, Any]:
        return {**_point(1, 1), "settings": settings, "seconds": 100.0}

    points = search({"batch": [1, 2, 4]}, {"batch": 1}, slow, budget_s=50, p99_ms=None)
    assert len(points) == 1  # the first point took longer than what is left: no second one starts


def test_an_unstable_best_is_measured_again_until_it_is_stable() -> None:
    """The best point marked stable: false is measured again; the new figures replace it (counted), and a stable best
    ends it with no warning."""
    unstable = {**_point(300, 20, w=2), "stable": False, "spread_pct": 36.0, "seconds": 10.0}
    points = [_point(100, 10, w=1), unstable]
    figures = [{**_point(280, 21, w=2), "stable": False, "spread_pct": 20.0, "seconds": 10.0}, _point(260, 22, w=2)]
    asked: list[dict[str, Any]] = []

    def measure(settings: dict[str, Any]) -> dict[str, Any]:
        asked.append(settings)
        return {**figures[len(asked) - 1], "seconds": 10.0}

    chosen, warnings = settle(points, measure, None, seconds_left=100)
    assert asked == [{"w": 2}, {"w": 2}] and warnings == []
    assert chosen is not None and chosen["stable"] and chosen["throughput_rps"] == 260 and chosen["remeasured"] == 2
    assert points[1] is chosen and len(points) == 2  # replaced, not added


def test_a_best_still_unstable_when_the_budget_ends_comes_with_a_warning() -> None:
    def measure(settings: dict[str, Any]) -> dict[str, Any]:
        return {**_point(300, 20, **settings), "stable": False, "spread_pct": 30.0, "seconds": 10.0}

    points = [{**_point(300, 20, w=2), "stable": False, "spread_pct": 36.0, "seconds": 10.0}]
    chosen, warnings = settle(points, measure, None, seconds_left=25)  # room for two more measurements
    assert chosen is not None and chosen["remeasured"] == 2 and not chosen["stable"]
    assert len(warnings) == 1 and "is not stable" in warnings[0] and "30.0% apart after 2 re-measurements" in warnings[0]
    nothing_left = [{**_point(300, 20, w=2), "stable": False, "spread_pct": 36.0, "seconds": 10.0}]
    chosen, warnings = settle(nothing_left, measure, None, seconds_left=5)
    assert chosen is not None and "remeasured" not in chosen and "after 0 re-measurements" in warnings[0]


def test_stability_is_two_windows_within_ten_percent() -> None:
    assert throughput_spread([100.0]) is None
    assert (throughput_spread([50.0, 100.0, 104.0]) or 1) < 0.1
    assert (throughput_spread([100.0, 130.0]) or 0) > 0.1


def test_bench_measures_a_tuned_build_at_its_tuned_settings() -> None:
    """One name per setting from tune to bench: a row runs at the settings `pack tune` recorded, by the same names,
    over the target's bench defaults; a flag wins over both, and applies only to a target that has the setting."""
    import pytest

    from packager.bench.settings import profiles, row_settings
    from packager.errors import UsageError
    from packager.report.build_report import BuildReport

    report = BuildReport.__new__(BuildReport)
    tuned = {"workers": 2, "batch_size": 4, "max_batch_delay_ms": 0, "threads": 1}
    report.targets = {"triton": {"tuned": {"settings": tuned}}}
    triton, torchserve = profiles()["triton"], profiles()["torchserve"]
    assert row_settings(report, "triton", triton, {}) == ({**triton.defaults, **tuned}, True)
    given = {"workers": 3, "format": "torchscript", "threads": None}  # Triton's bench row serves ONNX whatever --format says
    assert row_settings(report, "triton", triton, given) == ({**triton.defaults, **tuned, "workers": 3}, True)
    assert row_settings(report, "torchserve", torchserve, {}) == (torchserve.defaults, False)
    assert row_settings(report, "torchserve", torchserve, {"format": "torchscript"})[0]["format"] == "torchscript"
    with pytest.raises(UsageError, match="--workers 0 is out of range"):
        row_settings(report, "triton", triton, {"workers": 0})


def test_a_bench_row_is_set_against_the_tune_only_at_exactly_its_settings_and_concurrency() -> None:
    from packager.bench.settings import tuned_figures, vs_tuned
    from packager.report.build_report import BuildReport

    report = BuildReport.__new__(BuildReport)
    tuned = {"workers": 1, "batch_size": 8}
    report.targets = {"triton": {"tuned": {"settings": tuned, "throughput_rps": 50.0, "p99_ms": 200.0, "concurrency": 8}}}
    figures = tuned_figures(report, "triton", {**tuned, "threads": 0, "format": "onnx"})
    assert figures is not None and figures["throughput_rps"] == 50.0
    assert tuned_figures(report, "triton", {**tuned, "workers": 2}) is None  # a flag changed a setting: no comparison
    assert vs_tuned({"concurrency": 8, "throughput_rps": 45.0, "p99_ms": 220.0}, figures) == {"throughput": 0.9, "p99": 1.1}
    assert vs_tuned({"concurrency": 32, "throughput_rps": 45.0, "p99_ms": 220.0}, figures) is None


def test_the_settings_triton_reports_for_a_loaded_model_in_the_deploy_options_names() -> None:
    from packager.targets.triton.tuning import served_settings

    config = {
        "max_batch_size": 16,
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
        "dynamic_batching": {"max_queue_delay_microseconds": "4000"},  # uint64: a string in Triton's JSON
        "parameters": {"pack_threads": {"string_value": "1"}},
    }
    assert served_settings(config) == {"batch_size": 16, "workers": 2, "max_batch_delay_ms": 4, "threads": 1}
    assert served_settings({"max_batch_size": 0}) == {"batch_size": 0, "max_batch_delay_ms": 0}

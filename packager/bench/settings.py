"""What a bench row of a server is measured with: the targets that can be benched (the `Benchable` capability) and
their profiles, and each row's server settings by the one rule (packager/serve/settings.py): the flag when given,
else what `pack tune` wrote into the build, else the target's bench default. The names are the deploy options' own,
from the flag to the tuned record to the row."""

from __future__ import annotations

from typing import Any

from ..report.build_report import BuildReport
from ..serve.settings import resolve
from ..targets import BENCHABLE, BenchProfile, capable


def profiles() -> dict[str, BenchProfile]:
    """The bench profile of every target that has one, by name, in the registry's order."""
    return {name: target.bench for name, target in capable(BENCHABLE).items()}


def tuned_settings(report: BuildReport, target: str) -> dict[str, Any]:
    """The settings `pack tune` wrote into the build for `target` (empty when it was never tuned)."""
    return dict((report.target(target).get("tuned") or {}).get("settings") or {})


def row_settings(report: BuildReport, target: str, profile: BenchProfile, given: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The deploy options a server row is measured with, and whether `pack tune` chose them: the bench measures a
    server as it would be deployed, and its row says so (`settings.tuned`). A flag applies to every row whose target
    has that setting."""
    tuned = tuned_settings(report, target)
    mine = {k: v for k, v in given.items() if k in profile.settings}
    return resolve(mine, {k: v for k, v in tuned.items() if k in profile.settings}, profile.defaults), bool(tuned)


def tuned_figures(report: BuildReport, target: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """What `pack tune` measured for `target`, when a row runs at exactly the settings it wrote (no flag changed one):
    the figures the row's run at the tuned concurrency should reproduce. None otherwise."""
    record = report.target(target).get("tuned") or {}
    chosen = record.get("settings") or {}
    if not chosen or any(settings.get(k) != v for k, v in chosen.items()):
        return None
    keys = ("settings", "throughput_rps", "p50_ms", "p99_ms", "stable", "concurrency", "measured_at")
    return {k: record.get(k) for k in keys}


def vs_tuned(run: dict[str, Any], figures: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run at the tuned concurrency against the tuned figures: bench / tune for throughput and p99 (1.0: the same)."""
    if not figures or run.get("concurrency") != figures.get("concurrency"):
        return None

    def ratio(a: Any, b: Any) -> float | None:
        return round(float(a) / float(b), 3) if a and b else None

    return {
        "throughput": ratio(run.get("throughput_rps"), figures.get("throughput_rps")),
        "p99": ratio(run.get("p99_ms"), figures.get("p99_ms")),
    }


__all__ = ["profiles", "row_settings", "tuned_figures", "tuned_settings", "vs_tuned"]

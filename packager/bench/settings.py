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


__all__ = ["profiles", "row_settings", "tuned_settings"]

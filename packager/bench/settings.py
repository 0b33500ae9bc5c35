"""The server settings a bench row is measured with: what `pack tune` wrote into the build, when it did."""

from __future__ import annotations

from typing import Any

from ..report.build_report import BuildReport

# `pack tune`'s settings (deploy option names) as the bench's own names for each server.
TUNED_AS = {
    "torchserve": {
        "workers": "workers",
        "batch_size": "batch_size",
        "max_batch_delay_ms": "max_batch_delay_ms",
        "threads": "threads",
    },
    "triton": {
        "workers": "instances",
        "batch_size": "max_batch",
        "max_batch_delay_ms": "max_queue_delay_ms",
        "threads": "threads",
    },
}


def tuned_settings(report: BuildReport, target: str) -> dict[str, Any]:
    """The settings `pack tune` wrote into the build for `target` (empty when it was never tuned), in the bench's
    names: the bench measures a server as it would be deployed, and its row says so (`settings.tuned`)."""
    tuned = (report.target(target).get("tuned") or {}).get("settings") or {}
    names = TUNED_AS.get(target, {})
    return {**{names[k]: v for k, v in tuned.items() if k in names}, "tuned": True} if tuned else {}

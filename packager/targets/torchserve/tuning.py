"""What `pack tune` may change on TorchServe, and writing the chosen settings into the build's archive.

The settings are deploy options: `--workers` (minWorkers = maxWorkers), `--batch-size` and `--max-batch-delay`
(TorchServe's server-side batching) and `--threads` (onnxruntime intra-op threads per worker, read by pack's handler
from model-config.yaml). Writing them is `pack archive --force` with those options: the .mar and config.properties
are rewritten atomically, checked, and recorded with their digests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...report.build_report import BuildReport


def tuning_space(report: BuildReport) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """({setting: candidate values in search order}, the start: what the build's archive carries now)."""
    from .config import settings_from

    now = settings_from(report)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    batchable = report.inputs_batchable
    start = {
        "workers": now.min_workers,
        "batch_size": now.batch_size,
        "max_batch_delay_ms": now.max_batch_delay_ms,
        "threads": now.threads,
    }
    space: dict[str, list[Any]] = {
        "workers": sorted({1, 2, min(4, cpus)}),
        "batch_size": [1, 4, 8] if batchable else [1],
        "threads": sorted({0, 1, cpus}),
        "max_batch_delay_ms": [0, 5, 20] if batchable else [0],
    }
    return space, start


def adopt(build_dir: Path, report: BuildReport, settings: dict[str, Any], tuned: dict[str, Any]) -> list[str]:
    from ..options import DeployOptions
    from . import archive

    opts = DeployOptions(
        store=build_dir.parent.parent,
        format=settings.get("format"),
        workers=int(settings["workers"]),
        batch_size=int(settings["batch_size"]),
        max_batch_delay_ms=int(settings["max_batch_delay_ms"]),
        threads=int(settings["threads"]),
        extra={"force": True, "tuned": tuned},
    )
    result = archive(build_dir, report, opts)
    return [result["mar"], result["config"]]

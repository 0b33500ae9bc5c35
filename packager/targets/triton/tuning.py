"""Triton's server settings as a build's repository records them, what `pack tune` may change of them, and writing
the chosen settings into the build's repository.

The settings are deploy options (`--workers` = instance_group count, `--batch-size` = max_batch_size, `--max-batch-delay`
= dynamic batching's max_queue_delay, `--threads` = onnxruntime intra-op threads per instance). onnxruntime's
inter-op threads are not searched: they act only in its parallel execution mode, which pack's runner does not use.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ...report.build_report import BuildReport
from ...report.store import StoreLock

logger = logging.getLogger(__name__)

FOLDER = "triton"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def settings_of(recorded: dict[str, Any]) -> dict[str, Any]:
    """The settings a repository section of report.json records (config.pbtxt's words), in the settings' own names
    (None: not recorded)."""
    delay_us = recorded.get("max_queue_delay_us")
    return {
        "workers": recorded.get("instances"),
        "batch_size": recorded.get("max_batch"),
        "max_batch_delay_ms": None if delay_us is None else int(delay_us) // 1000,
        "threads": recorded.get("threads"),
    }


def served_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a running Triton reports for a loaded model (its model config, as JSON), in the deploy options'
    names: what it applied, whatever was asked (a setting it does not report is left out)."""
    out: dict[str, Any] = {}
    if "max_batch_size" in config:
        out["batch_size"] = int(config["max_batch_size"])
    groups = config.get("instance_group") or []
    if groups:
        out["workers"] = sum(int(g.get("count", 1)) for g in groups)
    delay = (config.get("dynamic_batching") or {}).get("max_queue_delay_microseconds")
    if delay is not None:
        out["max_batch_delay_ms"] = int(delay) // 1000
    elif "max_batch_size" in config:
        out["max_batch_delay_ms"] = 0
    parameters = config.get("parameters") or {}
    threads = (parameters.get("pack_threads") or parameters.get("intra_op_thread_count") or {}).get("string_value")
    if threads is not None and str(threads).lstrip("-").isdigit():
        out["threads"] = int(threads)
    return out


def tuning_space(report: BuildReport) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """({setting: candidate values in search order}, the start: what the build serves now)."""
    from ...serve.settings import resolve
    from .repository import DEFAULT_MAX_BATCH, _batchable

    cpus = _cpus()
    batchable = _batchable(report)
    defaults = {"workers": 1, "batch_size": DEFAULT_MAX_BATCH if batchable else 0, "max_batch_delay_ms": 1, "threads": 0}
    start = {k: int(v) for k, v in resolve({}, settings_of(report.target("triton").get("settings") or {}), defaults).items()}
    space: dict[str, list[Any]] = {
        "batch_size": [1, 4, 8, 16] if batchable else [0],
        "workers": sorted({1, 2, min(4, cpus)}),
        "threads": sorted({0, 1, max(1, cpus // 2), cpus}),
        "max_batch_delay_ms": [0, 1, 4] if batchable else [0],
    }
    return space, start


def adopt(build_dir: Path, report: BuildReport, settings: dict[str, Any], tuned: dict[str, Any]) -> list[str]:
    """Regenerate build_dir/triton/ with `settings`, check it offline, swap it in and record it (digests, the
    settings later deploys start from, and what was measured): all or nothing. Returns the files written."""
    from ...report.integrity import require_intact
    from ...report.trust import current
    from .check import check_repository, raise_on_errors
    from .repository import RepoOptions, generate, report_section

    with StoreLock(build_dir.parent):
        report = BuildReport.load(build_dir)  # re-read under the lock
        require_intact(build_dir, report)
        staging = build_dir / f".{FOLDER}-tune-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        old = build_dir / f".{FOLDER}-old-{os.getpid()}"
        rule = current("pack tune")
        try:
            ropts = RepoOptions(
                backend="python",
                fmt=report.target("triton").get("format") or "onnx",
                instances=int(settings["workers"]),
                max_batch=int(settings["batch_size"]),
                max_queue_delay_us=int(settings["max_batch_delay_ms"]) * 1000,
                threads=int(settings["threads"]),
            )
            section = generate(build_dir, report, ropts, staging)
            raise_on_errors(check_repository(staging))
            recorded = report_section(section, FOLDER)
            files = recorded["files"]
            rule.drop(build_dir)  # the signature goes before the first file is replaced (packager/report/trust.py)
            os.rename(build_dir / FOLDER, old)
            os.rename(staging, build_dir / FOLDER)
            report.sha256 = {k: v for k, v in report.sha256.items() if not k.startswith(f"{FOLDER}/")}
            report.targets["triton"] = {**recorded, "tuned": tuned}
            rule.save(build_dir, report, rewritten=files)
        except BaseException:  # put the old repository back: all or nothing
            if old.exists():
                shutil.rmtree(build_dir / FOLDER, ignore_errors=True)
                os.rename(old, build_dir / FOLDER)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        rule.seal(build_dir)  # under the lock, once the old repository is gone (packager/report/trust.py)
    logger.info(f"wrote the tuned settings into {build_dir / FOLDER} (offline check passed)")
    return [f for f in files if f.endswith("config.pbtxt")]

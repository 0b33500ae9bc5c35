"""`pack optimize`: make and judge variants for an existing, verified build, then rewrite its report and its target
packages; and the variants table both `pack build` and `pack optimize` print.

The build is copied into a temporary folder beside it under the model's lock, the variants are judged and the
targets re-packaged there, and the folder replaces the build only when everything succeeded: a failed or
interrupted optimize leaves the build as it was. A signed build's signature is dropped from the copy and, with
`--sign-key`, the copy is signed again before it replaces the build (packager/report/trust.py).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..console import table
from ..errors import UsageError
from ..report.build_report import BuildReport
from . import FOLDER, VariantSettings

logger = logging.getLogger(__name__)

Packager = Callable[[Path, BuildReport], dict[str, Any]]
REFERENCE = "the recorded sample (eager) and the build's cases run through the base ONNX export (gated against eager)"


def optimize(
    store: Path,
    name: str,
    version: str | None,
    settings: VariantSettings,
    iterations: int,
    packagers: Mapping[str, Packager] | None = None,
) -> tuple[BuildReport, Path]:
    from ..export import runner_for
    from ..report.integrity import require_intact
    from ..report.store import AtomicVersion, find_build
    from ..report.trust import current
    from .calibration import optimize_cases
    from .judge import run_variants

    if not settings.kinds and settings.serve is None:
        raise UsageError("nothing to optimize", "name variants with --variants (e.g. int8-dynamic,ort-optimized)")
    folder = find_build(store, name, version)
    atomic = AtomicVersion(store, name, folder.name, force=True)
    with atomic as tmp:
        report = BuildReport.load(folder)  # read and verified under the model's lock
        require_intact(folder, report)
        if "onnx" not in report.artifacts:
            raise UsageError(f"the build {folder} has no ONNX export", "rebuild it with onnx among --formats")
        logger.debug(f"copying {folder} to work on")
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        shutil.rmtree(tmp / FOLDER, ignore_errors=True)  # variants of an earlier optimize are made again or dropped
        base = runner_for("onnx", tmp / report.artifacts["onnx"], report.device)
        cases = optimize_cases(tmp, report, base)
        report.variants = run_variants(tmp, report, settings, cases, REFERENCE, iterations)
        report.targets = {n: package(tmp, report) for n, package in (packagers or {}).items()}
        rule = current("pack optimize")
        rule.save(tmp, report)  # drops the copy's signature and records what becomes of it
        rule.seal(tmp)  # signs the copy with --sign-key before it replaces the build
        final = atomic.commit()
    return report, final


def variants_table(section: dict[str, Any]) -> str:
    """One row per variant: status, speed-up, agreement, worst error, reason; then what is served."""
    rows = []
    for r in section.get("results", []):
        agreement = ", ".join(f"{k} {v:.3f}" for k, v in ((r.get("agreement") or {}).get("values") or {}).items())
        errors = ((r.get("gate") or {}).get("max_abs_error") or {}).values()
        rows.append(
            [
                r["kind"],
                r["status"],
                f"{r['speedup']:.2f}x" if r.get("speedup") else "-",
                agreement or "-",
                f"{max(errors):.2e}" if errors else "-",
                r.get("reason", "")[:100],
            ]
        )
    lines = [table(rows, ["variant", "status", "speed-up", "agreement", "max abs err", "reason"])]
    served = section.get("served")
    lines.append(f"served ONNX: {'variant ' + served if served else 'the base export'}")
    return "\n".join(lines)


__all__ = ["REFERENCE", "optimize", "variants_table"]

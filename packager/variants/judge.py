"""Make every requested variant and judge it: the parity gate with the kind's tolerances, the task's agreement, and
the speed-up over the base ONNX measured side by side; then decide what the targets serve.

A variant is `kept` when it passes its gate and its agreement bounds and is at least `min_speedup` times faster than
the base ONNX (the geometric mean over the build's batch sizes, each the better of two interleaved measurements);
`rejected` otherwise, with the figure; `skipped` when it cannot be made here; `failed` when its tool failed. Files of
variants that are not kept are removed. The fastest kept variant is served unless the user pinned one.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..build.measure import measure
from ..errors import EnvironmentProblem, ValidationFailed
from ..report.build_report import BuildReport
from ..report.cases import Case
from ..report.validate import OutputCheck, first_failure, validate_model_outputs
from . import BASE, FILE, FOLDER, MakeContext, Skipped, VariantSettings, get_variant
from .agreement import agreement

logger = logging.getLogger(__name__)
ROUNDS = 2  # interleaved measurements of base and variant; the better p50 of each counts
MAX_ROUNDS = 5  # for a speed-up near the bound
NEAR = 1.25


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {first[:300]}"


def calibration_feeds(report: BuildReport, cases: list[Case], settings: VariantSettings) -> tuple[list[dict[str, Any]], str]:
    """int8-static's calibration batches: the user's .npz (one batch, every input by name) or the cases' inputs."""
    names = report.input_names
    if settings.calibration:
        from .calibration import read_calibration

        return [read_calibration(Path(settings.calibration), report.inputs)], str(Path(settings.calibration).name)
    feeds = [dict(zip(names, c.inputs, strict=True)) for c in cases if not c.resized]
    return feeds, f"the build's validation inputs ({sum(c.batch for c in cases if not c.resized)} rows)"


def side_by_side(base: Any, variant: Any, cases: list[Case], iterations: int, bound: float = 0.0) -> dict[str, Any]:
    """p50 of base and variant at each batch size, measured in alternation (the better of the rounds for each: load
    only slows a run down); the speed-up's geometric mean. A figure within 25% of `bound` (the keep/reject line) gets
    more rounds, up to MAX_ROUNDS, before it is given: a clear win or loss is not measured longer than it needs."""
    best: dict[int, list[float]] = {c.batch: [math.inf, math.inf] for c in cases}
    rounds = 0
    while rounds < MAX_ROUNDS:
        for case in cases:
            pair = best[case.batch]
            pair[0] = min(pair[0], measure(base, case.inputs, case.batch, iterations=iterations)["p50_ms"])
            pair[1] = min(pair[1], measure(variant, case.inputs, case.batch, iterations=iterations)["p50_ms"])
        rounds += 1
        ratios = [b / v for b, v in best.values() if v > 0]
        mean = math.exp(sum(math.log(s) for s in ratios) / len(ratios)) if ratios else 0.0
        if rounds >= ROUNDS and (bound <= 0 or mean <= 0 or abs(math.log(mean / bound)) > math.log(NEAR)):
            break
    per_batch = {str(k): {"base": b, "variant": v, "speedup": round(b / v, 3) if v > 0 else 0.0} for k, (b, v) in best.items()}
    return {"speedup": round(mean, 3), "p50_ms": per_batch, "rounds": rounds}


def _recording(runner: Any, seen: list[list[np.ndarray]]) -> Any:
    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        out = runner(arrays)
        seen.append([np.asarray(a) for a in out])
        return list(out)

    return run


def _scale(gate: dict[str, Any]) -> float | None:
    scale = gate.get("scale")
    return float(scale) if isinstance(scale, (int, float)) and scale > 0 else None


def _max_errors(checks: list[OutputCheck]) -> dict[str, float]:
    worst: dict[str, float] = {}
    for c in checks:
        worst[c.output] = max(worst.get(c.output, 0.0), c.max_abs_error)
    return worst


def judge(
    kind: str,
    folder: Path,
    report: BuildReport,
    settings: VariantSettings,
    cases: list[Case],
    base_runner: Any,
    make: MakeContext,
    iterations: int,
) -> dict[str, Any]:
    """Make one variant and judge it; the report's record of it."""
    from ..export import runner_for
    from ..serve.tasks import task_for

    entry = get_variant(kind)
    rel = f"{FOLDER}/{kind}/{FILE}"
    record: dict[str, Any] = {"kind": kind, "file": None, "status": "failed", "reason": ""}
    started = time.perf_counter()
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    make.out = folder / rel
    try:
        record["info"] = entry.make(make)
        runner = runner_for("onnx", folder / rel, report.device)
    except Skipped as exc:
        return {**record, "status": "skipped", "reason": str(exc)}
    except Exception as exc:  # the tool's failure is the variant's, never the build's
        return {**record, "reason": f"could not be made: {_one_line(exc)}", "seconds": round(time.perf_counter() - started, 3)}
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["file"], record["bytes"] = rel, (folder / rel).stat().st_size
    tolerances = [settings.tolerances.get(kind) or entry.tolerance_for(o.atol, o.rtol, _scale(o.gate)) for o in report.outputs]
    record["tolerance"] = [
        {"output": o.name, "atol": t.atol, "rtol": t.rtol} for o, t in zip(report.outputs, tolerances, strict=True)
    ]
    seen: list[list[np.ndarray]] = []
    checks = validate_model_outputs(_recording(runner, seen), cases, report.output_names, tolerances, not report.inputs_batchable)
    bad = first_failure(checks)
    record["gate"] = {"passed": bad is None, "max_abs_error": _max_errors(checks)}
    ran = len(seen) == len(cases)
    if ran:
        pairs = [(c.outputs, s) for c, s in zip(cases, seen, strict=True)]
        record["agreement"] = agreement(task_for(report).agreement, pairs, settings.agreement)
        timed = {c.batch: c for c in reversed(cases) if not c.resized and c.batch in report.batch_sizes}  # the build's
        timed_cases = sorted(timed.values(), key=lambda c: c.batch)
        record.update(side_by_side(base_runner, runner, timed_cases, iterations, settings.min_speedup))
    if bad is not None:
        where = f"output {bad.output!r} " if bad.output != "*" else ""
        record.update(status="rejected", reason=f"gate: {where}at {bad.case}: {bad.reason}")
    elif not record["agreement"]["passed"]:
        record.update(status="rejected", reason=f"agreement: {record['agreement']['reason']}")
    elif record["speedup"] < settings.min_speedup:
        record.update(status="rejected", reason=f"{record['speedup']:.2f}x the base ONNX, below {settings.min_speedup:g}x")
    else:
        record.update(status="kept", reason=f"{record['speedup']:.2f}x the base ONNX")
    return record


def run_variants(
    folder: Path, report: BuildReport, settings: VariantSettings, cases: list[Case], reference: str, iterations: int
) -> dict[str, Any]:
    """Make and judge every requested kind in `folder`; return the report's `variants` section (what is served in
    `served`). Files of variants not kept (nor pinned) are removed."""
    from ..export import runner_for

    section: dict[str, Any] = {
        "reference": reference,
        "min_speedup": settings.min_speedup,
        "agreement_bounds": dict(settings.agreement),
        "served": None,
        "pinned": settings.serve is not None,
        "results": [],
    }
    base = report.artifacts.get("onnx")
    if base is None:
        why = report.formats["onnx"].reason if "onnx" in report.formats else "onnx was not among the formats"
        section["results"] = [
            {"kind": k, "file": None, "status": "skipped", "reason": f"no ONNX export ({why[:200]})"} for k in settings.kinds
        ]
    else:
        iterations = iterations or 10
        base_runner = runner_for("onnx", folder / base, report.device)
        feeds, source = calibration_feeds(report, cases, settings)
        make = MakeContext(folder / base, folder, report.device, feeds, source)
        for kind in settings.kinds:
            logger.debug(f"variant {kind}: making and judging it")
            record = judge(kind, folder, report, settings, cases, base_runner, make, iterations)
            logger.info(f"variant {kind}: {record['status']}" + (f" ({record['reason'][:200]})" if record["reason"] else ""))
            section["results"].append(record)
    section["served"] = _served(section["results"], settings)
    for record in section["results"]:
        if record["kind"] != section["served"] and record["status"] != "kept":  # a partial file of a failed tool too
            shutil.rmtree(folder / FOLDER / record["kind"], ignore_errors=True)
            record["file"] = None
    for leftover in sorted((folder / FOLDER).glob("*")) if (folder / FOLDER).is_dir() else []:
        if leftover.is_dir() and not any(leftover.iterdir()):
            leftover.rmdir()
    if (folder / FOLDER).is_dir() and not any((folder / FOLDER).iterdir()):
        (folder / FOLDER).rmdir()
    return section


def _served(results: list[dict[str, Any]], settings: VariantSettings) -> str | None:
    """The pinned kind (it must pass its gate and agreement), else the fastest kept one, else None (the base)."""
    if settings.serve == BASE:
        return None
    if settings.serve is not None:
        record = next((r for r in results if r["kind"] == settings.serve), None)
        if record is None or record["status"] in ("skipped", "failed"):
            why = record["reason"] if record else "it was not made"
            raise EnvironmentProblem(f"variant {settings.serve} cannot be served: {why}", "serve another variant or base")
        if not record["gate"]["passed"] or not record["agreement"]["passed"]:
            raise ValidationFailed(
                f"variant {settings.serve} cannot be served: {record['reason']}", "serve another variant or base"
            )
        if record["status"] != "kept":
            record["reason"] += " (served: pinned with --serve-variant)"
        return settings.serve
    kept = [r for r in results if r["status"] == "kept"]
    return max(kept, key=lambda r: r["speedup"])["kind"] if kept else None


__all__ = ["calibration_feeds", "judge", "run_variants", "side_by_side"]

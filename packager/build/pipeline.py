"""`pack build`: load -> eager reference -> export every format -> parity gate -> measure -> package -> record.

Each format (packager/export/) gets its own outcome: passed, failed (with the exporter, the cause and a fix) or
skipped. The build fails when a format the user asked for (--formats, or the spec's `formats:`) did not pass, or
when none passed; otherwise the failures are recorded in the report and printed as warnings.

The pipeline writes into an AtomicVersion folder and commits only when it succeeded, so a failed build leaves
nothing behind and never replaces a good version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..console import elapsed
from ..errors import EnvironmentProblem, ValidationFailed
from ..export import FILES, FORMATS, Outcome, export_mode, exporter, runner_for
from ..report.build_report import BuildReport
from ..report.store import AtomicVersion
from .cache import Unkeyable, key_components, make_key, restore, user_modules
from .cache import store as store_in_cache
from .measure import MEASURE_BUDGET_S, measure_all
from .plan import BuildPlan
from .prepare import prepare
from .record import REPORT, assemble, load_report, write_samples

logger = logging.getLogger(__name__)

Packager = Callable[[Path, BuildReport], dict[str, Any]]


def _labels(plan: BuildPlan, model: Any) -> list[str] | None:
    if plan.labels_file:
        return plan.labels
    names = getattr(model, "names", None) if plan.source_kind != "builtin" or plan.weights else None
    if isinstance(names, dict) and names:
        return [str(names[k]) for k in sorted(names)]
    if plan.entry is not None and plan.entry.labels is not None:
        return plan.entry.labels()
    return None


def _required(plan: BuildPlan) -> set[str]:
    """Formats the user asked for by name (each must pass)."""
    required = set(plan.formats) if plan.formats_given else set()
    if plan.torchscript != "auto":
        required.add("torchscript")
    if plan.slim or plan.opset is not None:
        required.add("onnx")
    return required


def _judge(outcomes: dict[str, Outcome], required: set[str]) -> list[str]:
    """Raise for a required format that did not pass, or when none passed; return warnings for the others."""
    for name in FORMATS.names():
        outcome = outcomes.get(name)
        if outcome is None or outcome.status == "passed" or name not in required:
            continue
        error = EnvironmentProblem if outcome.status == "skipped" else ValidationFailed
        raise error(f"{name}: {outcome.reason}", outcome.hint or f"leave {name} out of --formats")
    if not any(o.status == "passed" for o in outcomes.values()):  # every format's cause, each with its own fix
        fixes = [f"{name}: {o.hint}" for name, o in outcomes.items() if o.hint]
        raise ValidationFailed(
            "no format passed (" + "; ".join(f"{name}: {o.reason}" for name, o in outcomes.items()) + ")",
            "; ".join(fixes) or "rerun with --debug for the exporters' messages",
        )
    warnings = []
    for name, outcome in outcomes.items():
        if outcome.status != "passed":
            warnings.append(f"{name} {outcome.status}: {outcome.reason}" + (f"; {outcome.hint}" if outcome.hint else ""))
        elif outcome.warning:
            warnings.append(outcome.warning)
    return warnings


def _measure(
    prep: Any, passed: dict[str, Outcome], folder: Path, device: str, iterations: int, budget_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Latency of eager and of every passed format at each batch size, time-boxed (packager/build/measure.py): the gate's
    own runners (warm: they just ran these sizes), batch size by batch size so that formats compared with each other
    are measured moments apart."""
    logger.info(f"measuring (a {budget_s:g} s budget)")
    runners = {"eager": prep.run}
    for name, outcome in passed.items():
        runners[name] = outcome.runner or runner_for(name, folder / str(outcome.file), device)
    cells = [(name, c.batch, runner, c.inputs) for c in prep.ref.cases if not c.resized for name, runner in runners.items()]
    return measure_all(cells, budget_s, iterations, warm=set(runners))


def _cache_key(plan: BuildPlan, options: dict[str, Any]) -> tuple[str | None, Any]:
    """The build's cache key (None when its inputs cannot be keyed safely) and, for a factory, the model it loaded
    to key its state_dict (handed to the build, so the factory runs once)."""
    loaded, state_dict = None, None
    if plan.source_kind == "python":
        from .loader import load_module

        loaded = load_module(plan)
        state_dict = loaded[1]["state_dict_sha256"]
    try:
        modules = user_modules() if plan.source_kind == "python" else None
        return make_key(key_components(plan, options, state_dict, modules)), loaded
    except Unkeyable as exc:
        logger.info(f"not cached: {exc}")
        return None, loaded


def _restored(cache: Path, key: str, tmp: Path, started: float, sign: Callable[[Path], object] | None) -> BuildReport | None:
    """The cached build of `key` in `tmp`, its report saying so and signed as asked; None on a miss."""
    cached = restore(cache, key, tmp)
    if cached is None:
        return None
    logger.info(f"cache hit: {key[:16]} (the gated artifacts of an identical build, every digest checked)")
    cached.cache = {"status": "hit", "key": key}
    cached.build_seconds = round(time.perf_counter() - started, 2)
    cached.save(tmp, rewritten=[])
    if sign is not None:
        logger.info("signing the build")
        sign(tmp)
    return cached


def build(
    plan: BuildPlan,
    store: Path,
    force: bool,
    iterations: int = 10,
    packagers: Mapping[str, Packager] | None = None,
    measure_budget_s: float = MEASURE_BUDGET_S,
    sign: Callable[[Path], object] | None = None,
    cache: Path | None = None,
) -> tuple[BuildReport, Path]:
    """Run the whole pipeline; return (report, committed version folder).

    `packagers` write each serving target's artifacts into the folder before it is committed (the CLI passes every
    target's; the pipeline itself imports no target). `sign` signs the finished folder, report included, before it is
    committed: a build that cannot be signed is not kept. With a `cache` folder, a build whose key (build/cache.py)
    is stored there is restored from it after its digests are checked, and a passed build is stored."""
    started = time.perf_counter()
    atomic = AtomicVersion(store, plan.name, plan.version, force)
    atomic.check_free()  # fail before any work when the version exists
    options = {"iterations": iterations, "measure_budget_s": measure_budget_s, "targets": sorted(packagers or {})}
    key, loaded = _cache_key(plan, options) if cache is not None else (None, None)
    with atomic as tmp, elapsed():  # every log line says how far into the build it is
        if cache is not None and key is not None and (cached := _restored(cache, key, tmp, started, sign)) is not None:
            return cached, atomic.commit()
        with export_mode():  # the eager reference and every export without PyTorch's fused attention fast path
            prep = prepare(plan, loaded)
            ctx = prep.context(tmp)
            for name in [f for f in FORMATS.names() if f in plan.formats]:
                logger.info(f"exporting {name}")
                started_format = time.perf_counter()
                outcome = ctx.outcomes[name] = exporter(name).export(ctx)
                outcome.info["seconds"] = round(time.perf_counter() - started_format, 3)  # export, save and gate
                level = logging.INFO if outcome.status == "passed" else logging.WARNING
                logger.log(level, f"{name}: {outcome.status}" + (f" ({outcome.reason[:240]})" if outcome.reason else ""))
        ref, names, device = prep.ref, prep.names, prep.device
        if "pt2" in ctx.outcomes:
            ctx.outcomes["pt2"].info["capture_seconds"] = prep.capture_seconds
        warnings = _judge(ctx.outcomes, _required(plan))
        passed = {n: o for n, o in ctx.outcomes.items() if o.status == "passed"}
        for name in ctx.outcomes.keys() - passed.keys():  # nothing the gate refused stays beside what it passed
            (tmp / FILES[name]).unlink(missing_ok=True)

        performance: dict[str, Any] = {}
        if iterations > 0:
            performance, totals = _measure(prep, passed, tmp, device, iterations, measure_budget_s)
            logger.info(f"measured {totals['cells']} format and batch sizes in {totals['seconds']} s ({totals['stable']} stable)")

        samples = write_samples(tmp, plan.inputs, names, ref.cases[0])
        labels = _labels(plan, prep.model)
        if labels:
            (tmp / "labels.txt").write_text("\n".join(labels) + "\n")
        report = assemble(
            plan, ref, ctx.outcomes, prep.weights, device, performance, samples, bool(labels), prep.binding, warnings
        )
        if plan.variants:
            from ..variants.calibration import agreement_case
            from ..variants.judge import run_variants

            logger.info(f"making variants: {', '.join(plan.variants.kinds)}")
            cases = [*ref.cases, *agreement_case(report, plan.seed, prep.run)]
            report.variants = run_variants(tmp, report, plan.variants, cases, "eager", iterations)
        report.targets = {name: package(tmp, report) for name, package in (packagers or {}).items()}
        report.build_seconds = round(time.perf_counter() - started, 2)
        report.cache = {"status": "miss" if key else "off", "key": key}
        report.save(tmp)
        if cache is not None and key is not None:
            store_in_cache(cache, key, tmp)  # before signing: a hit is signed by its own build's key, or not at all
        if sign is not None:
            logger.info("signing the build")
            sign(tmp)
        final = atomic.commit()
    return report, final


__all__ = ["build", "load_report", "REPORT"]

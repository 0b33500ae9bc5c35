"""`pack build`: load -> eager reference -> export TorchScript and ONNX -> parity gate -> measure -> record.

The pipeline writes into an AtomicVersion folder and commits only when every step passed, so a failed build leaves
nothing behind and never replaces a good version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .errors import UsageError, ValidationFailed
from .loader import load_module, sha256_file
from .measure import measure
from .plan import BuildPlan
from .registry import OutputSpec
from .runners import onnx_runner, pick_device, torch_runner
from .store import AtomicVersion
from .targets import package_all
from .tensors import flatten_outputs, make_inputs, output_keys
from .validate import OutputCheck, compare, first_failure, summarise, validate_model_outputs
from .export import onnx as onnx_export, torchscript as ts_export

REPORT = "report.json"
TORCHSCRIPT_FILE = "model.pt"
ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.txt"

Log = Callable[[str], None]


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {
        "pack": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def _eager_reference(model: Any, plan: BuildPlan, device: str) -> tuple[dict[int, tuple[list[np.ndarray], list[np.ndarray]]], Any]:
    """Seeded inputs and eager outputs per batch size; checks that the model runs, is finite and deterministic."""
    run = torch_runner(model, device)
    cases: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    raw_first = None
    import torch

    for batch in plan.batch_sizes:
        inputs = make_inputs(plan.inputs, batch, plan.seed)
        try:
            if raw_first is None:
                with torch.inference_mode():
                    raw_first = model(*[torch.from_numpy(a).to(device) for a in inputs])
            outputs = run(inputs)
        except Exception as exc:
            shapes = ", ".join(f"{s.name} {[batch, *s.shape[1:]]} {s.dtype}" for s in plan.inputs)
            raise UsageError(
                f"the model failed on example inputs ({shapes}): {_first(exc)}",
                "check the input shapes and dtypes (spec `inputs:` or --input)",
            ) from exc
        cases[batch] = (inputs, outputs)
    first_batch = plan.batch_sizes[0]
    inputs, expected = cases[first_batch]
    again = run(inputs)
    for i, (a, b) in enumerate(zip(expected, again)):
        tol = plan.output_tolerance(i)
        check = compare(a, b, tol, first_batch, f"#{i}")
        nan_same = np.array_equal(~np.isfinite(a.astype(np.float64)), ~np.isfinite(b.astype(np.float64))) if a.dtype != np.bool_ else True
        if not check.passed or not nan_same:
            raise ValidationFailed(
                f"the eager model is not deterministic: two runs on the same input differ in output {i} (max abs {check.max_abs_error:.3g})",
                "remove randomness from forward() (dropout with training=True, torch.rand, ...)",
            )
    return cases, raw_first


def _name_outputs(plan: BuildPlan, raw: Any, count: int) -> list[OutputSpec]:
    if plan.outputs:
        if len(plan.outputs) != count:
            raise UsageError(
                f"the spec names {len(plan.outputs)} outputs but the model returns {count}",
                "list one `outputs:` entry per returned tensor",
            )
        return plan.outputs
    keys = output_keys(raw)
    if keys:
        return [OutputSpec(k) for k in keys]
    return [OutputSpec("output")] if count == 1 else [OutputSpec(f"output_{i}") for i in range(count)]


def _check_finite(cases, names: list[str]) -> None:
    for batch, (_, outputs) in cases.items():
        for name, arr in zip(names, outputs):
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = int((~np.isfinite(arr)).sum())
                raise ValidationFailed(
                    f"eager output {name!r} has {bad} NaN/Inf values at batch {batch}, so it cannot be validated",
                    "fix the model or give inputs a `range:` it accepts",
                )


def _raise_parity(fmt: str, checks: list[OutputCheck], extra: str = "") -> None:
    bad = first_failure(checks)
    if bad is None:
        return
    where = f"output {bad.output!r} " if bad.output != "*" else ""
    raise ValidationFailed(
        f"parity failure: {fmt} {where}at batch {bad.batch}: {bad.reason}{extra}",
        "nothing was written; loosen `tolerance` only if this difference is expected for the model",
    )


def _labels(plan: BuildPlan, model: Any) -> list[str] | None:
    if plan.labels_file:
        return [line.strip() for line in Path(plan.labels_file).read_text().splitlines() if line.strip()]
    names = getattr(model, "names", None) if plan.weights else None
    if isinstance(names, dict) and names:
        return [str(names[k]) for k in sorted(names)]
    if plan.entry is not None and plan.entry.labels is not None:
        return plan.entry.labels()
    return None


@dataclass
class TorchScriptResult:
    checks: list[OutputCheck]
    info: dict[str, Any]
    module: Any  # what the ONNX exporter starts from: the scripted module when tracing was unsafe, else the eager one
    warning: str | None = None


def _export_torchscript(model: Any, example: list[Any], plan: BuildPlan, path: Path, metadata: dict[str, Any],
                        check: Callable[[Path], list[OutputCheck]], log: Log) -> TorchScriptResult:
    """Trace (default) or script, save, and validate the saved file.

    In `auto` mode a trace that failed, failed the parity gate, or drew tracer warnings (Python values baked into the
    graph) is replaced by torch.jit.script when the scripted module passes the gate; otherwise the trace is judged on
    its own checks.
    """

    def attempt(method: str) -> tuple[Any, list[str], list[OutputCheck], float]:
        t0 = time.perf_counter()
        module, notes = ts_export.trace(model, example) if method == "trace" else (ts_export.script(model), [])
        ts_export.save(module, path, metadata)
        return module, notes, check(path), round(time.perf_counter() - t0, 3)

    if plan.torchscript == "script":
        log("exporting TorchScript (script)")
        try:
            scripted, _, checks, seconds = attempt("script")
        except OSError:
            raise
        except Exception as exc:
            raise ValidationFailed(f"TorchScript script failed: {_first(exc)}", "try --torchscript trace") from exc
        return TorchScriptResult(checks, {"method": "script", "seconds": seconds}, scripted)

    log("exporting TorchScript (trace)")
    traced = None
    try:
        traced, notes, checks, seconds = attempt("trace")
        bad = first_failure(checks)
        problem = bad.reason if bad else ("tracer warnings: " + "; ".join(n.split(". ")[0] for n in notes) if notes else "")
    except OSError:
        raise
    except Exception as exc:
        if plan.torchscript == "trace":
            raise ValidationFailed(f"TorchScript trace failed: {_first(exc)}", "try --torchscript script") from exc
        notes, checks, seconds, problem = [], [], 0.0, f"trace failed: {_first(exc)}"
    info = {"method": "trace", "tracer_warnings": notes, "seconds": seconds}
    # A tensor turned into a Python bool means an `if` on the input's values: the trace keeps one branch only, and a
    # gate that happened to take that branch on every sample would pass it. Never ship such a trace.
    branching = next((n.split(". ")[0] for n in notes if "Python boolean" in n), None)
    if plan.torchscript == "trace" and branching:
        raise ValidationFailed(
            f"TorchScript trace is unsafe: the model branches on tensor values ({branching}), so a trace keeps only the branch the example input took",
            "use --torchscript auto or script, which keep the control flow",
        )
    if plan.torchscript == "trace" or not problem:
        return TorchScriptResult(checks, info, model)

    log(f"tracing looks unsafe ({problem[:200]}); trying torch.jit.script")
    try:
        scripted, _, script_checks, seconds = attempt("script")
        if first_failure(script_checks) is None:
            return TorchScriptResult(
                script_checks,
                {"method": "script", "fallback_from_trace": problem, "seconds": seconds},
                scripted,
                f"TorchScript: tracing was unsafe ({problem[:200]}); scripted instead",
            )
    except OSError:
        raise
    except Exception as exc:
        log(f"torch.jit.script failed too: {_first(exc)}")
    if traced is None:
        raise ValidationFailed(f"TorchScript export failed ({problem}) and torch.jit.script failed as well", "rerun with --debug")
    if branching:
        raise ValidationFailed(
            f"the model branches on tensor values ({branching}) and torch.jit.script failed on it, so no export keeps the control flow",
            "make forward() scriptable (rerun with --torchscript script to see why it is not) or remove the data-dependent branch",
        )
    ts_export.save(traced, path, metadata)  # scripting did not help: ship the trace, judged by its own checks
    warning = None
    if first_failure(checks) is None:
        warning = f"TorchScript: {problem[:200]}; scripting failed, and the trace passed validation at batch sizes {plan.batch_sizes}"
    return TorchScriptResult(checks, info, model, warning)


def build(plan: BuildPlan, store: Path, force: bool, log: Log, iterations: int = 10) -> tuple[dict[str, Any], Path]:
    """Run the whole pipeline; return (report, committed version folder)."""
    started = time.perf_counter()
    outer_log = log

    def log(message: str) -> None:  # noqa: F811  (every line says how far into the build it is)
        outer_log(f"[{time.perf_counter() - started:5.1f}s] {message}")

    atomic = AtomicVersion(store, plan.name, plan.version, force)
    atomic.check_free()  # fail before any work when the version exists
    with atomic as tmp:
        log(f"loading {plan.source} ({'weights ' + plan.weights if plan.weights else 'random weights, seed %d' % plan.seed})")
        model, weights_record = load_module(plan)
        device = pick_device(plan.device)
        model = model.to(device)
        log(f"eager reference on {device} at batch sizes {plan.batch_sizes}")
        cases, raw = _eager_reference(model, plan, device)
        outputs = _name_outputs(plan, raw, len(cases[plan.batch_sizes[0]][1]))
        names = [o.name for o in outputs]
        _check_finite(cases, names)
        tolerances = [plan.output_tolerance(i) for i in range(len(outputs))]
        import torch

        example = [torch.from_numpy(a).to(device) for a in cases[plan.batch_sizes[0]][0]]
        labels = _labels(plan, model)
        metadata = {
            "name": plan.name,
            "version": plan.version,
            "task": plan.task,
            "inputs": [i.to_dict() for i in plan.inputs],
            "outputs": names,
            "preprocessing": plan.preprocessing,
            "postprocessing": plan.postprocessing,
        }
        warnings_out: list[str] = []
        validation: dict[str, Any] = {}
        export_info: dict[str, Any] = {}

        ts_path = tmp / TORCHSCRIPT_FILE

        def check_file(path: Path) -> list[OutputCheck]:
            return validate_model_outputs(torch_runner(ts_export.load(path, device), device), cases, names, tolerances)

        ts = _export_torchscript(model, example, plan, ts_path, metadata, check_file, log)
        checks = ts.checks
        ts_info = ts.info
        onnx_source = ts.module
        if ts.warning:
            warnings_out.append(ts.warning)
        validation["torchscript"] = summarise(checks)
        _raise_parity(f"torchscript ({ts_info.get('method', 'trace')})", checks)
        export_info["torchscript"] = ts_info

        # ONNX
        log(f"exporting ONNX (opset {plan.opset})")
        onnx_path = tmp / ONNX_FILE
        t0 = time.perf_counter()
        try:
            export_info["onnx"] = onnx_export.export(onnx_source, example, plan.inputs, outputs, onnx_path, plan.opset, metadata, plan.slim)
        except (ValidationFailed, OSError):
            raise
        except Exception as exc:
            raise ValidationFailed(f"ONNX export failed: {_first(exc)}", "try another --opset, or report the operator that failed") from exc
        export_info["onnx"]["seconds"] = round(time.perf_counter() - t0, 3)
        onnx_run = onnx_runner(onnx_path, device)
        checks = validate_model_outputs(onnx_run, cases, names, tolerances)
        validation["onnx"] = summarise(checks)
        _raise_parity("onnx", checks)
        export_info["onnx"]["providers"] = getattr(onnx_run, "providers", [])

        # Warm up and measure every format at every batch size.
        performance: dict[str, Any] = {}
        if iterations > 0:
            log("warming up and measuring")
            runners = {
                "eager": torch_runner(model, device),
                "torchscript": torch_runner(ts_export.load(ts_path, device), device),
                "onnx": onnx_run,
            }
            for fmt, runner in runners.items():
                performance[fmt] = {str(b): measure(runner, cases[b][0], b, iterations=iterations) for b in plan.batch_sizes}

        # Samples (first batch size), labels, report.
        samples_dir = tmp / "samples"
        samples_dir.mkdir()
        sample_batch = plan.batch_sizes[0]
        sample_inputs, sample_outputs = cases[sample_batch]
        sample_paths = {"batch": sample_batch, "inputs": [], "outputs": []}
        for spec, arr in zip(plan.inputs, sample_inputs):
            rel = f"samples/input.{spec.name}.npy"
            np.save(tmp / rel, arr)
            sample_paths["inputs"].append(rel)
        for name, arr in zip(names, sample_outputs):
            rel = f"samples/output.{name}.npy"
            np.save(tmp / rel, arr)
            sample_paths["outputs"].append(rel)
        if labels:
            (tmp / LABELS_FILE).write_text("\n".join(labels) + "\n")

        first_outputs = cases[plan.batch_sizes[0]][1]
        report = {
            "pack_report": 1,
            "name": plan.name,
            "version": plan.version,
            "task": plan.task,
            "source": {"kind": plan.source_kind, "ref": plan.source if plan.source_kind == "builtin" else Path(plan.source.split(":")[0]).name + (":" + plan.source.rsplit(":", 1)[1] if plan.source_kind == "python" else "")},
            "weights": weights_record,
            "versions": _versions(),
            "device": device,
            "inputs": [i.to_dict() for i in plan.inputs],
            "outputs": [
                {
                    "name": o.name,
                    "dtype": str(arr.dtype),
                    "shape": list(arr.shape),
                    "dynamic_axes": list(o.dynamic_axes),
                    "atol": tol.atol,
                    "rtol": tol.rtol,
                }
                for o, arr, tol in zip(outputs, first_outputs, tolerances)
            ],
            "batch_sizes": plan.batch_sizes,
            "seed": plan.seed,
            "tolerance": {"atol": plan.tolerance.atol, "rtol": plan.tolerance.rtol},
            "preprocessing": plan.preprocessing,
            "postprocessing": plan.postprocessing,
            "labels": LABELS_FILE if labels else None,
            "export": export_info,
            "artifacts": {"torchscript": TORCHSCRIPT_FILE, "onnx": ONNX_FILE},
            "validation": validation,
            "performance": performance,
            "samples": sample_paths,
            "warnings": warnings_out,
        }
        targets = package_all(tmp, report, log)
        if targets:
            report["targets"] = targets
        if weights_record.get("random"):
            report["warnings"].insert(0, f"random weights (seed {plan.seed}): outputs are meaningless; pass --weights for a real model")
        report["sha256"] = {
            str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        report["build_seconds"] = round(time.perf_counter() - started, 2)
        (tmp / REPORT).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
        final = atomic.commit()
    return report, final


def load_report(folder: Path) -> dict[str, Any]:
    path = folder / REPORT
    if not path.is_file():
        raise UsageError(f"no {REPORT} in {folder}", "run `pack build` first")
    return json.loads(path.read_text())


__all__ = ["build", "load_report", "REPORT"]

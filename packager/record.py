"""The build's record: `report.json` (assembled from the pipeline's results), the sample files, and the digests.

Paths in the report are relative to the version folder. `sha256` lists every file in the folder but the report.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import UsageError
from .export import ORDER
from .loader import sha256_file
from .validate import RMS_FRACTION

REPORT = "report.json"
LABELS_FILE = "labels.txt"


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    out = {"pack": __version__, "python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
           "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
    try:
        import onnxscript

        out["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    return out


def write_samples(folder: Path, inputs: list[Any], names: list[str], case: Any) -> dict[str, Any]:
    """The first case's inputs and eager outputs as .npy files (what verify --parity and smoke tests re-run)."""
    (folder / "samples").mkdir()
    record: dict[str, Any] = {"batch": case.batch, "inputs": [], "outputs": []}
    for spec, arr in zip(inputs, case.inputs):
        rel = f"samples/input.{spec.name}.npy"
        np.save(folder / rel, arr)
        record["inputs"].append(rel)
    for name, arr in zip(names, case.outputs):
        rel = f"samples/output.{name}.npy"
        np.save(folder / rel, arr)
        record["outputs"].append(rel)
    return record


def _gate_limits(ref: Any, index: int) -> dict[str, Any]:
    """Per output: its scale and the smallest error the gate catches (absolute, at the smallest |eager| value)."""
    tol = ref.tolerances[index]
    values = [np.abs(c.outputs[index].astype(np.float64)) for c in ref.cases if c.outputs[index].size]
    values = [v[np.isfinite(v)] for v in values]
    if not values or ref.cases[0].outputs[index].dtype.kind in "biu":
        return {"exact": True, "constant": ref.outputs[index].name in ref.constant}
    scale = max(float(v.max(initial=0.0)) for v in values)
    atol = min(tol.atol, tol.rtol * scale)
    return {
        "scale": scale,
        "atol_effective": atol,
        "detectable_abs_error": atol + tol.rtol * min(float(v.min(initial=0.0)) for v in values),
        "rms_limit": tol.rtol * RMS_FRACTION,
        "constant": ref.outputs[index].name in ref.constant,
    }


def _source(plan: Any) -> dict[str, str]:
    if plan.source_kind == "builtin":
        return {"kind": "builtin", "ref": plan.source}
    if plan.source_kind == "python":
        file_part, _, attr = plan.source.rpartition(":")
        return {"kind": "python", "ref": f"{Path(file_part).name}:{attr}"}
    return {"kind": plan.source_kind, "ref": Path(plan.source).name}


def assemble(plan: Any, ref: Any, outcomes: dict[str, Any], weights: dict[str, Any], device: str, performance: dict[str, Any],
             samples: dict[str, Any], has_labels: bool, binding: Any, warnings: list[str]) -> dict[str, Any]:
    from .validate import summarise

    first = ref.cases[0].outputs
    warnings = list(warnings)
    if ref.dropped:
        warnings.append(f"left out of the exports (not tensors): {', '.join(ref.dropped)}")
    if ref.constant:
        warnings.append(f"outputs {', '.join(ref.constant)} are the same for every validation input: the gate checks them exactly but cannot see through them")
    if weights.get("random"):
        warnings.insert(0, f"random weights (seed {plan.seed}): outputs are meaningless; pass --weights for a real model")
    ordered = [n for n in ORDER if n in outcomes]
    return {
        "pack_report": 2,
        "name": plan.name,
        "version": plan.version,
        "task": plan.task,
        "source": _source(plan),
        "weights": weights,
        "versions": versions(),
        "device": device,
        "inputs": [i.to_dict() for i in plan.inputs],
        "binding": binding.describe(),
        "outputs": [
            {"name": o.name, "dtype": str(arr.dtype), "shape": list(arr.shape), "dynamic_axes": list(o.dynamic_axes),
             "atol": tol.atol, "rtol": tol.rtol, "gate": _gate_limits(ref, i)}
            for i, (o, arr, tol) in enumerate(zip(ref.outputs, first, ref.tolerances))
        ],
        "batch_sizes": plan.batch_sizes,
        "cases": [{"label": c.label, "batch": c.batch, "shapes": [list(a.shape) for a in c.inputs]} for c in ref.cases],
        "seed": plan.seed,
        "tolerance": {"atol": plan.tolerance.atol, "rtol": plan.tolerance.rtol},
        "preprocessing": plan.preprocessing,
        "postprocessing": plan.postprocessing,
        "labels": LABELS_FILE if has_labels else None,
        "formats": {n: outcomes[n].to_dict() for n in ordered},
        "export": {n: outcomes[n].info for n in ordered if outcomes[n].info},
        "artifacts": {n: outcomes[n].file for n in ordered if outcomes[n].status == "passed"},
        "validation": {n: summarise(outcomes[n].checks) for n in ordered if outcomes[n].checks},
        "performance": performance,
        "samples": samples,
        "warnings": warnings,
    }


def write_report(folder: Path, report: dict[str, Any]) -> None:
    """Add every file's sha256 and write report.json into the (uncommitted) version folder."""
    report["sha256"] = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != REPORT}
    (folder / REPORT).write_text(json.dumps(plain(report), indent=2, sort_keys=False) + "\n")


def plain(value: Any) -> Any:
    """JSON-safe: NaN/Inf become null (valid JSON), numpy scalars Python numbers, anything else its string."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def load_report(folder: Path) -> dict[str, Any]:
    path = folder / REPORT
    if not path.is_file():
        raise UsageError(f"no {REPORT} in {folder}", "run `pack build` first")
    return json.loads(path.read_text())


__all__ = ["LABELS_FILE", "REPORT", "assemble", "load_report", "plain", "versions", "write_report", "write_samples"]

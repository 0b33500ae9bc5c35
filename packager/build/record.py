"""The build's record assembled from the pipeline's results (a BuildReport, packager/report/build_report.py), and the
sample files.

Paths in the report are relative to the version folder.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..export import FORMATS
from ..report.build_report import FILE as REPORT
from ..report.build_report import BuildReport, InputRecord, OutputRecord, SampleRecord, plain, sha256_file
from ..report.cases import fill_rule
from ..report.validate import RMS_FRACTION

LABELS_FILE = "labels.txt"


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    out = {
        "pack": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
    try:
        import onnxscript

        out["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    return out


def _fill(spec: Any) -> dict[str, str]:
    values, rule = fill_rule(spec)
    return {"values": values, "rule": rule}


def write_samples(folder: Path, inputs: list[Any], names: list[str], case: Any) -> SampleRecord:
    """The first case's inputs and eager outputs as .npy files (what verify --parity and smoke tests re-run)."""
    (folder / "samples").mkdir()
    record = SampleRecord(case.batch, [], [])
    for spec, arr in zip(inputs, case.inputs, strict=True):
        rel = f"samples/input.{spec.name}.npy"
        np.save(folder / rel, arr)
        record.inputs.append(rel)
    for name, arr in zip(names, case.outputs, strict=True):
        rel = f"samples/output.{name}.npy"
        np.save(folder / rel, arr)
        record.outputs.append(rel)
    return record


def _gate_limits(ref: Any, index: int) -> dict[str, Any]:
    """Per output: its scale and the smallest error the gate catches (absolute, at the smallest |eager| value)."""
    tol = ref.tolerances[index]
    values = [np.abs(c.outputs[index].astype(np.float64)) for c in ref.cases if c.outputs[index].size]
    values = [v[np.isfinite(v)] for v in values]
    if not any(c.outputs[index].size for c in ref.cases):
        return {"exact": True, "constant": ref.outputs[index].name in ref.constant, "empty": True}
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
    """What the model came from; a source file's sha256 too (the provenance statement's source dependency), and for a
    migrated build the archive or folder it was migrated from, with its digest."""
    origin = getattr(plan, "migrated_from", None)
    found = _origin(plan)
    if origin:
        found.update(
            {"migrated_from": origin["ref"], "migrated_from_kind": origin["kind"], "migrated_from_sha256": origin["sha256"]}
        )
    return found


def _origin(plan: Any) -> dict[str, str]:
    if plan.source_kind == "builtin":
        return {"kind": "builtin", "ref": plan.source}
    if plan.source_kind == "python":
        file_part, _, attr = plan.source.rpartition(":")
        return {"kind": "python", "ref": f"{Path(file_part).name}:{attr}", "sha256": sha256_file(file_part)}
    return {"kind": plan.source_kind, "ref": Path(plan.source).name, "sha256": sha256_file(plan.source)}


def assemble(
    plan: Any,
    ref: Any,
    outcomes: dict[str, Any],
    weights: dict[str, Any],
    device: str,
    performance: dict[str, Any],
    samples: SampleRecord,
    has_labels: bool,
    binding: Any,
    warnings: list[str],
) -> BuildReport:
    from ..report.validate import summarise

    first = ref.cases[0].outputs
    warnings = list(warnings)
    if ref.dropped:
        warnings.append(f"left out of the exports (not tensors): {', '.join(ref.dropped)}")
    if ref.constant:
        warnings.append(
            f"outputs {', '.join(ref.constant)} are the same for every validation input: "
            "the gate checks them exactly but cannot see through them"
        )
    empty = [o.name for i, o in enumerate(ref.outputs) if not any(c.outputs[i].size for c in ref.cases)]
    if empty:
        warnings.append(
            f"outputs {', '.join(empty)} are empty at every validation case (the model found nothing; random weights do "
            "this): the gate checked only that every format answers empty there too"
        )
    if weights.get("random"):
        warnings.insert(0, f"random weights (seed {plan.seed}): outputs are meaningless; pass --weights for a real model")
    ordered = [n for n in FORMATS.names() if n in outcomes]
    return BuildReport(
        name=plan.name,
        version=plan.version,
        task=plan.task,
        source=_source(plan),
        weights=weights,
        versions=versions(),
        device=device,
        inputs=[
            InputRecord(
                i.name,
                list(i.shape),
                i.dtype,
                list(i.dynamic_axes),
                list(i.range) if i.range else None,
                _fill(i),
                dim_names={str(a): n for a, n in i.dim_names},
            )
            for i in plan.inputs
        ],
        binding=binding.describe(),
        outputs=[
            OutputRecord(
                o.name,
                list(arr.shape),
                str(arr.dtype),
                list(o.dynamic_axes),
                None,
                tol.atol,
                tol.rtol,
                _gate_limits(ref, i),
                variable=list(o.variable),
            )
            for i, (o, arr, tol) in enumerate(zip(ref.outputs, first, ref.tolerances, strict=True))
        ],
        batch_sizes=list(plan.batch_sizes),
        cases=[{"label": c.label, "batch": c.batch, "shapes": [list(a.shape) for a in c.inputs]} for c in ref.cases],
        seed=plan.seed,
        tolerance={"atol": plan.tolerance.atol, "rtol": plan.tolerance.rtol},
        preprocessing=plan.preprocessing,
        postprocessing=plan.postprocessing,
        labels=LABELS_FILE if has_labels else None,
        formats={n: outcomes[n].record() for n in ordered},
        export={n: outcomes[n].info for n in ordered if outcomes[n].info},
        artifacts={n: outcomes[n].file for n in ordered if outcomes[n].status == "passed"},
        validation={n: summarise(outcomes[n].checks) for n in ordered if outcomes[n].checks},
        performance=performance,
        samples=samples,
        warnings=warnings,
        calling={"args": [i.name for i in plan.inputs], "returns": ref.returns},
    )


def load_report(folder: Path) -> BuildReport:
    return BuildReport.load(folder)


__all__ = ["LABELS_FILE", "REPORT", "assemble", "load_report", "plain", "versions", "write_samples"]

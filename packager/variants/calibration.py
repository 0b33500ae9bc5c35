"""The inputs a variant is judged and calibrated on: the build's cases, an extra agreement batch, a user's .npz.

At build time the reference outputs are eager's. `pack optimize` has no model to run, so it takes the recorded
sample (eager's outputs) and the build's cases regenerated from the report (the same seeded inputs) with the base
ONNX export's outputs as the reference: the file the build gate held to eager on those very inputs.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..cases import Case, batch_cases, make_inputs
from ..errors import UsageError
from ..registry import TensorSpec
from ..report import BuildReport

AGREEMENT_ROWS = 16  # an extra batch for the task-level agreement (classes flip on few rows)
MAX_NPZ_BYTES = 1 << 30


def specs(report: BuildReport) -> list[TensorSpec]:
    return [
        TensorSpec(i.name, tuple(i.shape), i.dtype, tuple(i.dynamic_axes), tuple(i.range) if i.range else None)  # type: ignore[arg-type]
        for i in report.inputs
    ]


def agreement_case(report: BuildReport, seed: int, run: Callable[[list[np.ndarray]], list[np.ndarray]]) -> list[Case]:
    """One batch of AGREEMENT_ROWS seeded inputs (another seed than the gate's) with `run`'s outputs; none when the
    inputs have no batch axis."""
    if not report.inputs_batchable:
        return []
    inputs = make_inputs(specs(report), AGREEMENT_ROWS, seed + 1)
    return [Case(f"batch {AGREEMENT_ROWS} (agreement inputs)", AGREEMENT_ROWS, inputs, list(run(inputs)))]


def optimize_cases(folder: Path, report: BuildReport, base: Callable[[list[np.ndarray]], list[np.ndarray]]) -> list[Case]:
    """The recorded sample (eager's outputs), the build's batch cases again (base ONNX outputs), an agreement batch."""
    from ..samples import load_sample

    cases = [load_sample(folder, report).case]
    batches = report.batch_sizes if report.inputs_batchable else [report.inputs[0].shape[0]]
    for case in batch_cases(specs(report), batches, report.seed):
        case.outputs = list(base(case.inputs))
        case.label += " (reference: the base ONNX export)"
        cases.append(case)
    return cases + agreement_case(report, report.seed, base)


def read_npz(path: Path, report: BuildReport) -> dict[str, Any]:
    """A user's calibration inputs: a .npz with one array per model input (by name), read without pickles."""
    if path.stat().st_size > MAX_NPZ_BYTES:
        raise UsageError(f"{path}: {path.stat().st_size:,d} bytes is too large for calibration inputs", "pass at most 1 GiB")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path} is not a readable .npz file ({str(exc)[:120]})", "save it with numpy.savez") from None
    feed = {}
    for spec in report.inputs:
        if spec.name not in arrays:
            raise UsageError(f"{path} has no array {spec.name!r}", f"save one array per input: {', '.join(report.input_names)}")
        array = arrays[spec.name]
        if array.ndim != len(spec.shape) or array.dtype != np.dtype(spec.dtype):
            raise UsageError(
                f"{path}: {spec.name!r} is {array.dtype} with {array.ndim} axes, the model takes {spec.dtype} with "
                f"{len(spec.shape)}",
                "save arrays shaped and typed like the model's inputs",
            )
        fixed = [a for a in range(1, array.ndim) if a not in spec.dynamic_axes and array.shape[a] != spec.shape[a]]
        if fixed:
            raise UsageError(
                f"{path}: {spec.name!r} has size {array.shape[fixed[0]]} on axis {fixed[0]}, which the model fixes at "
                f"{spec.shape[fixed[0]]}",
                "save arrays shaped like the model's inputs",
            )
        feed[spec.name] = np.ascontiguousarray(array)
    return feed


__all__ = ["AGREEMENT_ROWS", "agreement_case", "optimize_cases", "read_npz", "specs"]

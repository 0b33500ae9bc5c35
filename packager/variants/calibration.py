"""The inputs a variant is judged and calibrated on: the build's cases, an extra agreement batch, a user's .npz (or
.npy for a one-input model).

At build time the reference outputs are eager's. `pack optimize` has no model to run, so it takes the recorded
sample (eager's outputs) and the build's cases regenerated from the report (the same seeded inputs) with the base
ONNX export's outputs as the reference: the file the build gate held to eager on those very inputs.
"""

from __future__ import annotations

import lzma
import math
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..build.inputs import check_input
from ..errors import UsageError, ValidationFailed
from ..registry import TensorSpec
from ..report.build_report import BuildReport
from ..report.cases import Case, batch_cases, make_inputs

AGREEMENT_ROWS = 16  # an extra batch for the task-level agreement (classes flip on few rows)
MAX_BYTES = 1 << 30  # a calibration file, on disk and each array inflated
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_READ_ERRORS = (  # what numpy's header parser and zipfile raise on a crafted file (RuntimeError: an encrypted member)
    ValueError, TypeError, OverflowError, SyntaxError, tokenize.TokenError, OSError, EOFError, RuntimeError,
    zipfile.BadZipFile, zlib.error, lzma.LZMAError,
)  # fmt: skip


def specs(report: BuildReport) -> list[TensorSpec]:
    """The report's inputs as the gate declared them, held to the same rules as a user's (inputs.check_input): a
    report.json edited by hand cannot make the cases fail to generate."""
    try:
        return [
            check_input(
                TensorSpec(
                    i.name,
                    tuple(i.shape),
                    i.dtype,
                    tuple(i.dynamic_axes),
                    _pair(i.range),
                    (i.fill or {}).get("values"),
                    tuple((int(a), n) for a, n in sorted(i.dim_names.items(), key=lambda kv: int(kv[0]))),
                )
            )
            for i in report.inputs
        ]
    except UsageError as exc:
        raise ValidationFailed(f"report.json: {exc.message}", "rebuild with pack build") from None


def _pair(values: list[float] | None) -> tuple[float, float] | None:
    if values is None:
        return None
    if len(values) != 2:
        raise UsageError(f"an input range {values} is not [low, high]")
    return values[0], values[1]


def agreement_case(report: BuildReport, seed: int, run: Callable[[list[np.ndarray]], list[np.ndarray]]) -> list[Case]:
    """One batch of AGREEMENT_ROWS seeded inputs (another seed than the gate's) with `run`'s outputs; none when the
    inputs have no batch axis."""
    if not report.inputs_batchable:
        return []
    inputs = make_inputs(specs(report), AGREEMENT_ROWS, seed + 1)
    return [Case(f"batch {AGREEMENT_ROWS} (agreement inputs)", AGREEMENT_ROWS, inputs, list(run(inputs)))]


def optimize_cases(folder: Path, report: BuildReport, base: Callable[[list[np.ndarray]], list[np.ndarray]]) -> list[Case]:
    """The recorded sample (eager's outputs), the build's batch cases again (base ONNX outputs), an agreement batch."""
    from ..report.samples import load_sample

    cases = [load_sample(folder, report).case]
    batches = report.batch_sizes if report.inputs_batchable else [report.inputs[0].shape[0]]
    for case in batch_cases(specs(report), batches, report.seed):
        case.outputs = list(base(case.inputs))
        case.label += " (reference: the base ONNX export)"
        cases.append(case)
    return cases + agreement_case(report, report.seed, base)


class Declared(Protocol):
    """A declared input (a plan's TensorSpec or a report's TensorRecord): what a calibration array must match."""

    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> Sequence[int]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def dynamic_axes(self) -> Sequence[int]: ...


def check_calibration(path: Path, inputs: Sequence[Declared]) -> None:
    """Refuse a calibration file that does not fit `inputs` from its headers alone (no array data is read): run
    before a build exports anything."""
    _arrays(path, inputs, read=False)


def read_calibration(path: Path, inputs: Sequence[Declared]) -> dict[str, np.ndarray]:
    """A user's calibration inputs, one array per input by name: a .npz (numpy.savez, each array named like its
    input), or a .npy (numpy.save) for a model with one input. Read without pickles, each array's header checked
    against the input and against the bytes the file holds before anything is allocated; floats must be finite."""
    arrays = _arrays(path, inputs, read=True)
    return {name: array for name, array in arrays.items() if array is not None}


def _refuse(path: Path, problem: str, hint: str = "save it with numpy.savez(path, name=array, ...)") -> UsageError:
    return UsageError(f"calibration file {path}: {problem}", hint)


def _arrays(path: Path, inputs: Sequence[Declared], read: bool) -> dict[str, np.ndarray | None]:
    names = ", ".join(i.name for i in inputs)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            magic = fh.read(len(NPY_MAGIC))
        if size > MAX_BYTES:
            raise _refuse(path, f"{size:,d} bytes is too large for calibration inputs", f"pass at most {MAX_BYTES:,d} bytes")
        out: dict[str, np.ndarray | None] = {}
        if magic.startswith(NPY_MAGIC):
            if len(inputs) != 1:
                raise _refuse(path, f"a .npy holds one array and the model takes {len(inputs)} inputs ({names})")
            with open(path, "rb") as fh:
                out[inputs[0].name] = _array(path, fh, size, inputs[0], read)
        elif magic.startswith(ZIP_MAGIC):
            with zipfile.ZipFile(path) as zf:
                members = set(zf.namelist())
                for spec in inputs:
                    if f"{spec.name}.npy" not in members:
                        raise _refuse(path, f"has no array {spec.name!r}", f"save one array per input, named like it: {names}")
                    info = zf.getinfo(f"{spec.name}.npy")
                    with zf.open(info) as fh:
                        out[spec.name] = _array(path, fh, info.file_size, spec, read)
        else:
            raise _refuse(path, "is neither a .npz (numpy.savez) nor a .npy (numpy.save) file")
    except _READ_ERRORS as exc:
        raise _refuse(path, f"is not a readable .npz or .npy file ({str(exc).strip()[:120] or type(exc).__name__})") from None
    _same_rows(path, inputs, out)
    return out


def _array(path: Path, fh: Any, available: int, spec: Declared, read: bool) -> np.ndarray | None:
    """One array from an open .npy stream of `available` bytes: its header checked (dtype, axes, sizes, the bytes it
    claims) before the data is read into a buffer of exactly that size."""
    version = np.lib.format.read_magic(fh)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = header(fh)
    available -= fh.tell()  # the data's bytes: what follows the header
    what = repr(spec.name)
    if dtype.hasobject:
        raise _refuse(path, f"{what} holds Python objects (pickles), which pack does not load")
    if len(shape) != len(spec.shape) or dtype != np.dtype(spec.dtype):
        raise _refuse(
            path,
            f"{what} is {dtype} with {len(shape)} axes, the model takes {spec.dtype} with {len(spec.shape)}",
            "save arrays shaped and typed like the model's inputs",
        )
    fixed = [a for a in range(1, len(shape)) if a not in spec.dynamic_axes and shape[a] != spec.shape[a]]
    if fixed:
        raise _refuse(
            path,
            f"{what} has size {shape[fixed[0]]} on axis {fixed[0]}, which the model fixes at {spec.shape[fixed[0]]}",
            "save arrays shaped like the model's inputs",
        )
    if any(d < 1 for d in shape):
        raise _refuse(path, f"{what} has shape {list(shape)}: every size must be at least 1", "save at least one row")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > available:
        raise _refuse(path, f"{what} claims {nbytes:,d} bytes of data and the file holds {available:,d}")
    if not read:
        return None
    buffer = bytearray(nbytes)
    view, done = memoryview(buffer), 0
    while done < nbytes and (got := fh.readinto(view[done:])):
        done += got
    if done != nbytes:
        raise _refuse(path, f"{what} is truncated ({done:,d} of {nbytes:,d} bytes)")
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _refuse(path, f"{what} holds NaN or infinite values", "calibrate on the finite inputs the model will serve")
    return np.ascontiguousarray(array)


def _same_rows(path: Path, inputs: Sequence[Declared], arrays: dict[str, np.ndarray | None]) -> None:
    """Inputs batched on axis 0 are fed together: their arrays need the same number of rows."""
    rows = {i.name: arrays[i.name] for i in inputs if 0 in i.dynamic_axes and arrays.get(i.name) is not None}
    sizes = {name: a.shape[0] for name, a in rows.items() if a is not None}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{n} {s}" for n, s in sizes.items())
        raise _refuse(
            path, f"its arrays have different numbers of rows ({shown})", "save one batch: the same rows for every input"
        )


__all__ = ["AGREEMENT_ROWS", "agreement_case", "check_calibration", "optimize_cases", "read_calibration", "specs"]

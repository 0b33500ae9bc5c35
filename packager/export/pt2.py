"""pt2: the torch.export ExportedProgram (`model.pt2`, torch.export.save).

The program is captured once per build (`capture`) from a copy of the model, with every declared dynamic axis as
`Dim.AUTO`, and shared by the ONNX (dynamo) and AOTInductor exports. Before giving up, the capture tries what
torch.export offers, in order (ATTEMPTS), each only when the one before failed:
  * non-strict: the default;
  * size-oblivious: `torch.fx.experimental._config.backed_size_oblivious`, so sizes 0 and 1 are not specialised
    (a program captured at batch 4 that refuses batch 1); not after data-dependent control flow, which is about
    tensor values, not sizes.
Strict mode (TorchDynamo) is not tried: it fails where non-strict found data-dependent control flow or a size the
code fixes, and costs minutes on a detector (183 s for torchvision's Faster R-CNN here, against 4 s non-strict).
An attempt fails when torch.export raises, when it made a declared dynamic axis static (the model's code fixes that
size: the error names the input and the axis), or when the program does not run at batch 1. The report records every
attempt tried and why it failed (`export.pt2.attempts`).
"""

from __future__ import annotations

import copy
import io
import logging
import time
from pathlib import Path
from typing import Any

from ..build.runners import torch_runner
from ..console import captured, extension_ops
from ..report.formats import FILES
from . import ExportContext, Outcome
from .diagnose import explain, first_line

logger = logging.getLogger(__name__)

FILE = FILES["pt2"]


def dynamic_shapes(inputs: list[Any]) -> tuple[Any, ...]:
    """Per input, per dynamic axis: one `Dim` per dimension name that several axes share (they are one size), else
    `Dim.AUTO` (torch.export finds how the axis relates to the others)."""
    from collections import Counter

    from torch.export import Dim

    uses = Counter(spec.axis_name(a) for spec in inputs for a in spec.dynamic_axes)
    shared = {name: Dim(name) for name, count in uses.items() if count > 1}
    per_input = tuple({axis: shared.get(spec.axis_name(axis), Dim.AUTO) for axis in spec.dynamic_axes} or None for spec in inputs)
    return (per_input,)  # the ExportModule takes *args


def _static_axes(program: Any, inputs: list[Any]) -> list[str]:
    """Declared dynamic axes that came out static in the captured program."""
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    fixed = []
    for spec, node in zip(inputs, placeholders, strict=True):  # one user input per ExportModule argument
        shape = node.meta["val"].shape
        for axis in spec.dynamic_axes:
            if isinstance(shape[axis], int) or str(shape[axis]).isdigit():  # a SymInt may be a constant too
                fixed.append(f"{spec.name} axis {axis} (fixed at {shape[axis]})")
    return fixed


def shapes_of(program: Any, inputs: list[Any]) -> dict[str, Any]:
    """The dynamic shapes recorded in the report: per input, per axis, the symbol's range or the fixed size."""
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    ranges = {str(k): v for k, v in program.range_constraints.items()}
    out: dict[str, Any] = {}
    for spec, node in zip(inputs, placeholders, strict=True):  # one user input per ExportModule argument
        dims: list[int | dict[str, Any]] = []
        for size in node.meta["val"].shape:
            if isinstance(size, int):
                dims.append(size)
            else:
                rng = ranges.get(str(size))
                upper = None if rng is None or str(rng.upper) in ("int_oo", "oo") else int(rng.upper)
                dims.append({"symbol": str(size), "min": int(rng.lower) if rng is not None else None, "max": upper})
        out[spec.name] = dims
    return out


ATTEMPTS = ("non-strict", "size-oblivious")
DATA_DEPENDENT = "the model branches on tensor values"  # diagnose.py's cause: size-oblivious reasoning cannot help


def _export(module: Any, example: list[Any], inputs: list[Any], attempt: str) -> Any:
    import torch
    from torch.fx.experimental import _config

    config: Any = _config  # its patch() is installed at import (torch.utils._config_module)
    with captured(), config.patch(backed_size_oblivious=attempt == "size-oblivious"):
        return torch.export.export(module, tuple(example), dynamic_shapes=dynamic_shapes(inputs), strict=False)


def _at_batch_1(program: Any, example: list[Any], inputs: list[Any]) -> str | None:
    """Why the program does not run at batch 1 (None: it does, or the batch is not dynamic). The batch is each
    input's axis named `batch` (axis 0 unless a name puts it elsewhere: an LSTM state's axis 1)."""
    axes = [spec.batch_axis for spec in inputs]
    if all(a is None or t.shape[a] == 1 for t, a in zip(example, axes, strict=True)):
        return None
    import torch

    one = [t if a is None else t[(slice(None),) * a + (slice(0, 1),)] for t, a in zip(example, axes, strict=True)]
    try:
        with captured(), torch.no_grad():
            program.module()(*one)
    except Exception as exc:
        return f"the program does not run at batch 1 ({first_line(exc)[:200]})"
    return None


def _from_torchscript(module: Any, example: list[Any], inputs: list[Any], tried: list[dict[str, str]]) -> Any:
    """A TorchScript model (a `.pt` source, a migrated archive's) has no Python code for torch.export to trace: it is
    converted to a program by torch.export's own TorchScript converter first (at batch 2 where the example has 1: a
    size-1 axis would be made static), and that program's module is captured like any model, with the plan's
    dynamic axes. Anything else is returned as it is."""
    import torch

    inner = getattr(module, "model", None)
    if not isinstance(inner, torch.jit.ScriptModule):
        return module
    from torch._export.converter import TS2EPConverter

    wide = []
    for tensor, spec in zip(example, inputs, strict=True):
        axis = spec.batch_axis
        wide.append(torch.cat([tensor, tensor], axis) if axis is not None and tensor.shape[axis] == 1 else tensor)
    try:
        with captured():
            program = TS2EPConverter(inner, tuple(wide)).convert()
    except Exception as exc:
        cause, _ = explain(exc, "export")
        tried.append({"attempt": "from TorchScript", "failed": cause})
        return module
    converted = copy.copy(module)
    converted.model = program.module()
    return converted


def capture(
    module: Any, example: list[Any], inputs: list[Any], attempts: list[dict[str, str]] | None = None
) -> tuple[Any, str | None]:
    """torch.export the ExportModule: (program, None), or (None, the cause and a fix). Each attempt tried (ATTEMPTS)
    is appended to `attempts` with why it failed."""
    started = time.perf_counter()
    tried = attempts if attempts is not None else []
    try:
        module = copy.deepcopy(module)  # an export may leave traced values in Python attributes of the model
    except Exception:  # a model that cannot be copied is exported as it is
        pass
    module = _from_torchscript(module, example, inputs, tried)
    fixes: list[str] = []
    for attempt in ATTEMPTS:
        try:
            program = _export(module, example, inputs, attempt)
        except Exception as exc:
            cause, fix = explain(exc, "export")
            tried.append({"attempt": attempt, "failed": cause})
            fixes.append(fix)
            logger.info(f"torch.export ({attempt}) failed: {cause}")
            if cause.startswith(DATA_DEPENDENT):  # on tensor values, not sizes: no other attempt changes that
                break
            continue
        fixed = _static_axes(program, inputs)
        why = f"made declared dynamic axes static: {', '.join(fixed)}" if fixed else _at_batch_1(program, example, inputs)
        if why is None:
            tried.append({"attempt": attempt, "passed": f"captured in {time.perf_counter() - started:.1f} s"})
            logger.info(f"torch.export ({attempt}) captured the program in {time.perf_counter() - started:.1f} s")
            return program, None
        tried.append({"attempt": attempt, "failed": why})
        fixes.append(
            "declare those axes static in the spec (`dynamic_axes`) for pt2 and aoti, or serve torchscript or onnx, "
            "which may keep them dynamic"
            if fixed
            else "declare the batch static (dyn= without 0), or serve torchscript or onnx"
        )
        logger.info(f"torch.export ({attempt}) {why}")
    causes: dict[str, list[str]] = {}
    for t in tried:  # attempts that failed alike are named together
        causes.setdefault(t["failed"], []).append(t["attempt"])
    summary = "; ".join(f"{', '.join(names)}: {cause}" for cause, names in causes.items())
    return None, f"torch.export failed ({summary}); {fixes[-1] if len(set(fixes)) == 1 else fixes[0]}"


def failed_capture(ctx: ExportContext) -> Outcome:
    """The outcome of a format built from the program when torch.export failed: its cause, its fix and the attempts."""
    reason, _, fix = (ctx.program_error or "torch.export failed").rpartition("; ")
    return Outcome("failed", reason=reason or fix, hint=fix if reason else "", info={"attempts": ctx.capture_attempts})


def program_runner(program: Any, device: str) -> Any:
    """Run the captured program in memory (before it is saved): used to pick sizes its guards accept."""
    with captured():
        module = program.module()
    return torch_runner(module, device)


def export(ctx: ExportContext) -> Outcome:
    import torch

    if ctx.program is None:
        return failed_capture(ctx)
    buffer = io.BytesIO()  # serialised in memory, written with Python I/O: a full disk is an OSError
    with captured():
        torch.export.save(ctx.program, buffer)
    (ctx.folder / FILE).write_bytes(buffer.getbuffer())
    info = {
        "exporter": "torch.export.export",
        "attempts": ctx.capture_attempts,
        "dynamic_shapes": shapes_of(ctx.program, ctx.inputs),
    }
    runner = load(ctx.folder / FILE, ctx.device)
    outcome = Outcome.from_checks(FILE, ctx.check(runner), info, "the ExportedProgram")
    outcome.runner = runner
    return outcome


def load(path: Path, device: str) -> Any:
    import torch

    extension_ops()
    with captured():
        module = torch.export.load(str(path)).module()
    return torch_runner(module, device)

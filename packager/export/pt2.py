"""pt2: the torch.export ExportedProgram (`model.pt2`, torch.export.save).

The program is captured once per build (`capture`) from a copy of the model, with every declared dynamic axis as
`Dim.AUTO`, and shared by the ONNX (dynamo) and AOTInductor exports. A declared axis that the capture made static
(the model's code fixes that size) is an error that names the input and the axis.
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
from .diagnose import explain

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
            if isinstance(shape[axis], int):
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


def capture(module: Any, example: list[Any], inputs: list[Any]) -> tuple[Any, str | None]:
    """torch.export the ExportModule: (program, None), or (None, the cause and a fix)."""
    import torch

    started = time.perf_counter()
    try:
        module = copy.deepcopy(module)  # an export may leave traced values in Python attributes of the model
    except Exception:  # a model that cannot be copied is exported as it is
        pass
    try:
        with captured():
            program = torch.export.export(module, tuple(example), dynamic_shapes=dynamic_shapes(inputs), strict=False)
    except Exception as exc:
        cause, fix = explain(exc, "export")
        logger.info(f"torch.export failed: {cause}")
        return None, f"torch.export failed: {cause}; {fix}"
    fixed = _static_axes(program, inputs)
    if fixed:
        error = (
            f"torch.export made declared dynamic axes static: {', '.join(fixed)}; declare them static in the spec "
            "(`dynamic_axes`), or change the code that reads those sizes"
        )
        logger.info(error)
        return None, error
    logger.info(f"torch.export captured the program in {time.perf_counter() - started:.1f} s")
    return program, None


def program_runner(program: Any, device: str) -> Any:
    """Run the captured program in memory (before it is saved): used to pick sizes its guards accept."""
    with captured():
        module = program.module()
    return torch_runner(module, device)


def export(ctx: ExportContext) -> Outcome:
    import torch

    if ctx.program is None:
        return Outcome("failed", reason=ctx.program_error or "torch.export failed", hint="")
    buffer = io.BytesIO()  # serialised in memory, written with Python I/O: a full disk is an OSError
    with captured():
        torch.export.save(ctx.program, buffer)
    (ctx.folder / FILE).write_bytes(buffer.getbuffer())
    info = {"exporter": "torch.export.export(strict=False)", "dynamic_shapes": shapes_of(ctx.program, ctx.inputs)}
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

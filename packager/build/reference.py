"""The eager reference: run the model on every validation case, name its outputs, and refuse what cannot be validated.

Built in two steps: the batch cases first (the exporters trace with one of them), then the second-size case, picked
among candidates that the eager model, and the ExportedProgram when one was captured, both accept.

Refused (exit 2 or 3, one line each): a model that fails on its inputs (naming the case, so a declared dynamic axis
the model cannot take is named), outputs that are NaN/Inf, a model whose two runs on the same input differ, and a
model whose every output is constant (a zero-initialised head): no export could be told apart from a broken one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError, ValidationFailed
from ..export.diagnose import first_line
from ..registry import OutputSpec, Tolerance
from ..report.cases import Case, batch_cases, flipped, resized_cases
from ..report.validate import compare, constant_outputs
from .modelio import output_names

logger = logging.getLogger(__name__)

Run = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass
class Reference:
    cases: list[Case]
    outputs: list[OutputSpec]  # names and dynamic axes (as the eager outputs show them)
    tolerances: list[Tolerance]
    dropped: list[str]  # parts of the model's return value that hold no tensors (left out, with a warning)
    constant: list[str]  # outputs that are constant in every case
    returns: str = "tuple"  # what the exported files return: `tensor` (the model returns one) or a flat `tuple`


def _shapes(inputs: list[Any], case: Case) -> str:
    return ", ".join(f"{s.name} {list(a.shape)} {s.dtype}" for s, a in zip(inputs, case.inputs, strict=True))


def run_batches(run: Run, plan: Any, inputs: list[Any]) -> list[Case]:
    cases = batch_cases(inputs, plan.batch_sizes, plan.seed)
    logger.debug(f"eager reference at {', '.join(c.label for c in cases)}")
    for case in cases:
        try:
            case.outputs = run(case.inputs)
        except Exception as exc:
            raise UsageError(
                f"the model failed on example inputs at {case.label} ({_shapes(inputs, case)}): {first_line(exc)}",
                "check the input shapes and dtypes (spec `inputs:` or --input)",
            ) from exc
    return cases


def add_resized(run: Run, cases: list[Case], plan: Any, inputs: list[Any], program: Run | None) -> None:
    """Append the second-size case: the first candidate both eager and the program accept, else the first eager
    accepts (the program then fails the gate there, with its guard named)."""
    candidates = resized_cases(inputs, plan.batch_sizes[0], plan.seed)
    if not candidates:
        return
    fallback: Case | None = None
    chosen: Case | None = None
    errors = []
    for case in candidates:
        try:
            case.outputs = run(case.inputs)
        except Exception as exc:
            errors.append(f"{case.label}: {first_line(exc)}")
            continue
        if program is None or _runs(program, case):
            chosen = case
            break
        fallback = fallback or case
        logger.debug(f"the ExportedProgram does not take {case.label}; trying another second size")
    chosen = chosen or fallback
    if chosen is None:
        raise UsageError(
            f"the model fails at a second size of its declared dynamic axes ({'; '.join(errors)[:400]})",
            "declare only the axes the model can vary as dynamic (`dynamic_axes`, or dyn= in --input), and give axes "
            "that must stay equal one name (dyn=batch@1: the batch on axis 1)",
        )
    cases.append(chosen)
    logger.debug(f"eager reference at {chosen.label}")


def flipped_case(run: Run, inputs: list[Any], base: Case) -> Case | None:
    """The base case with flipped values and its eager outputs; None when the model cannot take such values."""
    case = flipped(inputs, base)
    try:
        case.outputs = run(case.inputs)
    except Exception:
        return None
    if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in case.outputs):
        return None
    return case


def _runs(program: Run, case: Case) -> bool:
    try:
        program(case.inputs)
        return True
    except Exception:
        return False


def _output_axes(cases: list[Case], index: int, batched: bool) -> tuple[int, ...]:
    """Axes whose size changes from case to case (the batch axis when inputs are batched)."""
    shapes = [c.outputs[index].shape for c in cases]
    if len({len(s) for s in shapes}) != 1:
        return ()
    axes = [a for a in range(len(shapes[0])) if len({s[a] for s in shapes}) > 1]
    if batched and shapes[0] and 0 not in axes and all(s[0] == c.batch for s, c in zip(shapes, cases, strict=True)):
        axes.insert(0, 0)
    return tuple(axes)


def _variable_axes(cases: list[Case], index: int, batched: bool, detector: bool) -> tuple[int, ...]:
    """Axes whose size depends on the data, not on the input shapes: empty in some case, or of another size in two
    cases whose inputs differ only in the batch (and not the batch size itself); axis 0 of every output of a detector
    (its count of detections)."""
    shapes = [c.outputs[index].shape for c in cases]
    if len({len(s) for s in shapes}) != 1:
        return ()
    rank = len(shapes[0])
    declared = [(s, c.batch) for s, c in zip(shapes, cases, strict=True) if not c.resized]
    found = {a for a in range(rank) if any(s[a] == 0 for s in shapes)}
    for a in range(rank):
        follows_batch = batched and all(s[a] == b for s, b in declared)  # the batch axis, wherever it is
        if not follows_batch and len({s[a] for s, _ in declared}) > 1:
            found.add(a)
    if detector and rank:
        found.add(0)
    return tuple(sorted(found))


def is_detector(model: Any) -> bool:
    """A torchvision detection or instance segmentation model: it answers a variable number of detections per image."""
    return any(t.__module__.startswith("torchvision.models.detection") for t in type(model).__mro__)


def _name(plan: Any, names: list[str], cases: list[Case], batched: bool, detector: bool) -> list[OutputSpec]:
    if plan.outputs and len(plan.outputs) != len(names):
        raise UsageError(
            f"the spec names {len(plan.outputs)} outputs but the model returns {len(names)} ({', '.join(names)})",
            "list one `outputs:` entry per returned tensor, or leave `outputs:` out to use these names",
        )
    declared = plan.outputs or [OutputSpec(n) for n in names]
    return [
        OutputSpec(o.name, _output_axes(cases, i, batched), o.atol, o.rtol, _variable_axes(cases, i, batched, detector))
        for i, o in enumerate(declared)
    ]


def finish(run: Run, cases: list[Case], plan: Any, model: Any, binding: Any, inputs: list[Any], device: str) -> Reference:
    """Name the outputs and check that the reference can be validated against."""
    import torch

    names, dropped, returns = output_names(model, binding, [torch.from_numpy(a).to(device) for a in cases[0].inputs])
    if not names:
        raise UsageError("the model returns no tensors", "return a tensor, or a tuple/dict of tensors, from forward()")
    for case in cases[1:]:
        if len(case.outputs) != len(names):
            raise UsageError(
                f"the model returns {len(names)} tensor(s) at {cases[0].label} but {len(case.outputs)} at {case.label} "
                "(a list or dict per example?), so its outputs have no fixed names",
                "return one tensor (or a fixed tuple/dict of tensors) per call, or pass --batch-sizes 1",
            )
    outputs = _name(plan, names, cases, all(i.batch_axis is not None for i in inputs), is_detector(model))
    tolerances = [plan.output_tolerance(i) for i in range(len(outputs))]
    for case in cases:
        for spec, arr in zip(outputs, case.outputs, strict=False):  # a case that returns another count fails the gate
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValidationFailed(
                    f"eager output {spec.name!r} has {int((~np.isfinite(arr)).sum())} NaN/Inf values at {case.label}, "
                    "so it cannot be validated",
                    "fix the model or give its inputs a `range:` it accepts",
                )
    first = cases[0]
    for i, (spec, a, b) in enumerate(
        zip(outputs, first.outputs, run(first.inputs), strict=False)
    ):  # compared as far as they pair up
        if not compare(a, b, tolerances[i], first, spec.name).passed:
            raise ValidationFailed(
                f"the eager model is not deterministic: two runs on the same input differ in output {spec.name!r}",
                "remove randomness from forward() (dropout with training=True, torch.rand, ...)",
            )
    constant = constant_outputs(cases, [o.name for o in outputs])
    if len(constant) == len(outputs):
        raise ValidationFailed(
            f"every output ({', '.join(constant)}) is the same for every validation input, so the gate cannot tell a "
            "correct export from a broken one (a zero-initialised head with random weights does this)",
            "load trained weights (--weights, or in your factory), or initialise the model's last layer",
        )
    return Reference(cases, outputs, tolerances, dropped, constant, returns)


__all__ = ["Reference", "add_resized", "finish", "flipped_case", "run_batches"]

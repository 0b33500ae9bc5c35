"""Everything a build does before the exports: load and prepare the model, bind its inputs, run the eager
reference, and capture the ExportedProgram. `Prepared` then hands each exporter its context and the parity gate.

Also the entry point for checks that need the gate outside a build (the fault-injection tests call `prepare` and
`Prepared.gate` with deliberately broken runners).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..export import FORMATS, ExportContext
from ..export.pt2 import capture, program_runner
from ..report.cases import export_case
from ..report.validate import OutputCheck, validate_model_outputs
from .loader import load_module
from .modelio import Binding, bind, export_module
from .plan import BuildPlan
from .reference import Reference, add_resized, finish, flipped_case, is_detector, run_batches
from .runners import pick_device, torch_runner

logger = logging.getLogger(__name__)


def _apply_family(plan: BuildPlan, family: Any, model: Any) -> None:
    """Fill what the user left open from the model's family (ultralytics: inputs, task, tolerances, processing)."""
    if family is not None:
        plan.inputs = plan.inputs or family.inputs(model)
        plan.task = plan.task or family.task(model)
        if not plan.tolerance_given and family.tolerance is not None:
            plan.tolerance = family.tolerance
        plan.preprocessing = {**family.preprocessing, **plan.preprocessing}
        plan.postprocessing = {**family.postprocessing(model), **plan.postprocessing}
    plan.task = plan.task or "generic"
    if not plan.inputs:
        raise UsageError(
            f"{plan.source} has no input description",
            "add `inputs:` to a pack.yaml spec (--spec) or pass --input NAME:1x3x224x224:float32",
        )


def _list_inputs(plan: BuildPlan, binding: Any) -> None:
    """An input that forward() takes as a list of tensors is split along its first axis: the list length is fixed."""
    for i, (spec, listed) in enumerate(zip(list(plan.inputs), binding.as_list, strict=True)):
        if listed and 0 in spec.dynamic_axes:
            plan.inputs[i] = replace(
                spec,
                dynamic_axes=tuple(a for a in spec.dynamic_axes if a != 0),
                dim_names=tuple((a, n) for a, n in spec.dim_names if a != 0),
            )
            logger.info(
                f"{spec.name} goes to forward() as a list of {spec.shape[0]} tensor(s): its first axis (the list length) is fixed"
            )
    if any(binding.as_list):
        plan.batch_sizes = [plan.inputs[0].shape[0]]


@dataclass
class Prepared:
    plan: BuildPlan
    model: Any
    weights: dict[str, Any]
    binding: Binding
    module: Any  # the ExportModule
    device: str
    run: Callable[[list[Any]], list[Any]]  # eager, through the ExportModule
    ref: Reference
    example: list[Any]
    program: Any = None
    program_error: str | None = None
    capture_seconds: float = 0.0  # torch.export, shared by pt2, the dynamo ONNX export and aoti
    capture_attempts: list[dict[str, str]] = field(default_factory=list)  # what torch.export tried (export/pt2.py)
    _flipped: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.ref.outputs]

    @property
    def unordered(self) -> bool:
        """No batch axis: rows of variable-length outputs may tie and swap (see packager/report/validate.py)."""
        return not all(i.batch_axis is not None for i in self.plan.inputs)

    def gate(self, runner: Any) -> list[OutputCheck]:
        return validate_model_outputs(runner, self.ref.cases, self.names, self.ref.tolerances, self.unordered)

    def check_flipped(self, runner: Any) -> list[OutputCheck] | None:
        if "case" not in self._flipped:
            self._flipped["case"] = flipped_case(self.run, self.plan.inputs, export_case(self.ref.cases))
        case = self._flipped["case"]
        return None if case is None else validate_model_outputs(runner, [case], self.names, self.ref.tolerances, self.unordered)

    def captured(self) -> tuple[Any, str | None]:
        """The ExportedProgram and why it failed, captured now when prepare() did not (no format needed it then)."""
        if self.program is None and self.program_error is None:
            started = time.perf_counter()
            logger.info("capturing the program with torch.export")
            self.program, self.program_error = capture(self.module, self.example, self.plan.inputs, self.capture_attempts)
            self.capture_seconds = round(time.perf_counter() - started, 3)
        return self.program, self.program_error

    def context(self, folder: Path) -> ExportContext:
        plan = self.plan
        metadata = {
            "name": plan.name,
            "version": plan.version,
            "task": plan.task,
            "inputs": [i.to_dict() for i in plan.inputs],
            "outputs": self.names,
            "preprocessing": plan.preprocessing,
            "postprocessing": plan.postprocessing,
        }
        return ExportContext(
            module=self.module,
            model=self.model,
            binding=self.binding,
            example=self.example,
            inputs=plan.inputs,
            output_names=self.names,
            output_axes=[tuple(sorted({*o.dynamic_axes, *o.variable})) for o in self.ref.outputs],
            folder=folder,
            device=self.device,
            opset=plan.opset,
            torchscript=plan.torchscript,
            slim=plan.slim,
            metadata=metadata,
            check=self.gate,
            check_flipped=self.check_flipped,
            capture=self.captured,
            capture_attempts=self.capture_attempts,
        )


def prepare(plan: BuildPlan, loaded: tuple[Any, dict[str, Any], Any] | None = None) -> Prepared:
    """Load the model (or take the one `loaded` already: the build cache keys a factory by its state_dict), bind its
    inputs, run the eager reference and capture the program."""
    logger.info(f"loading {plan.source} ({'weights ' + plan.weights if plan.weights else f'seed {plan.seed:d}'})")
    import torch

    model, weights, family = loaded or load_module(plan)
    _apply_family(plan, family, model)
    device = pick_device(plan.device)
    model = model.to(device)
    binding = bind(model, [i.name for i in plan.inputs])
    if is_detector(model) and binding.as_list and not binding.as_list[0]:  # torchvision's RetinaNet leaves it unannotated
        binding = replace(binding, as_list=(True, *binding.as_list[1:]))
    _list_inputs(plan, binding)
    module = export_module(model, binding)
    run = torch_runner(module, device)
    cases = run_batches(run, plan, plan.inputs)
    example = [torch.from_numpy(a).to(device) for a in export_case(cases).inputs]
    program, program_error, started = None, None, time.perf_counter()
    attempts: list[dict[str, str]] = []
    if any(FORMATS.get(f).needs_program for f in plan.formats):  # else captured only if the dynamo ONNX export runs
        logger.info("capturing the program with torch.export")
        program, program_error = capture(module, example, plan.inputs, attempts)
    capture_seconds = round(time.perf_counter() - started, 3)
    add_resized(run, cases, plan, plan.inputs, program_runner(program, device) if program is not None else None)
    ref = finish(run, cases, plan, model, binding, plan.inputs, device)
    return Prepared(
        plan, model, weights, binding, module, device, run, ref, example, program, program_error, capture_seconds, attempts
    )


__all__ = ["Prepared", "prepare"]

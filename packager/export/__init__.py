"""Export formats, one registered entry each in `FORMATS` (packager/registry.py's Registry): how the file is written,
how it is run back.

    torchscript   model.pt        torch.jit.trace, or torch.jit.script when the gate shows the trace is wrong
    onnx          model.onnx      torch.onnx.export: the dynamo exporter from the ExportedProgram, else the legacy one
    pt2           model.pt2       torch.export.save of the ExportedProgram
    aoti          model.aoti.pt2  torch._inductor.aoti_compile_and_package of the ExportedProgram (CPU or CUDA)

An entry says everything the rest of pack reads about a format (its file, whether `pack build` tries it by default,
its place in the order a target picks what to serve): the report order, --formats, the spec schema's enum, the CLI's
--format choices and the defaults are derived from it. No torch and no numpy here: listing formats is cheap.

The format's module (packager/export/<name>.py) defines `export(ctx) -> Outcome` and `load(path, device) -> Runner`,
imported when the format is first built or loaded. `export` writes its file into `ctx.folder`, runs it back through
`ctx.check` (the parity gate) and says what happened; it never decides whether the build fails: the pipeline does,
from the outcomes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..registry import Registry
from ..report.build_report import BuildReport

if TYPE_CHECKING:
    from ..report.validate import OutputCheck

Runner = Callable[[list[Any]], list[Any]]


@dataclass
class Outcome:
    """What one format's export came to: passed (file written and gated), failed (reason, fix) or skipped."""

    status: str  # passed | failed | skipped
    file: str | None = None
    checks: list[OutputCheck] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    hint: str = ""
    warning: str | None = None
    module: Any = None  # the TorchScript module that passed, for the legacy ONNX exporter (not in the report)
    runner: Any = None  # the loaded file the gate ran (warm): the build measures it without loading it again

    @classmethod
    def from_checks(cls, file: str, checks: list[OutputCheck], info: dict[str, Any], what: str) -> Outcome:
        from ..report.validate import first_failure  # numpy: imported when a format is gated, not when files are named

        bad = first_failure(checks)
        if bad is None:
            return cls("passed", file, checks, info)
        if bad.output == "*" and bad.reason.startswith("failed to run"):
            hint = "declare only the axes the model can vary as dynamic (`dynamic_axes`, dyn= in --input)"
            if "Guard failed" in bad.reason:
                hint = (
                    "torch.export derived this bound on the size from the model's code; use an example size inside "
                    "the range you serve, or declare the axis static"
                )
            return cls("failed", None, checks, info, f"{what} cannot run at {bad.case}: {bad.reason[15:]}", hint)
        where = f"output {bad.output!r} " if bad.output != "*" else ""
        return cls(
            "failed",
            None,
            checks,
            info,
            f"{what} does not match eager: {where}at {bad.case}: {bad.reason}",
            "loosen `tolerance` only if this difference is expected for the model",
        )

    def record(self) -> Any:
        from ..report.build_report import FormatRecord

        return FormatRecord(self.status, self.file, self.reason, self.hint)


@dataclass
class ExportContext:
    """Everything an exporter needs; built once per build by the pipeline."""

    module: Any  # the ExportModule (positional inputs in spec order -> flat tuple of tensors)
    model: Any  # the user's model, for torch.jit.script
    binding: Any  # modelio.Binding
    example: list[Any]  # torch tensors of the export case
    inputs: list[Any]  # TensorSpecs (with the dynamic axes the exports keep)
    output_names: list[str]
    output_axes: list[tuple[int, ...]]  # dynamic axes per output, as the eager outputs show them
    folder: Path
    device: str
    opset: int | None
    torchscript: str  # auto | trace | script
    slim: bool
    metadata: dict[str, Any]
    check: Callable[[Runner], list[OutputCheck]]  # the parity gate over every case
    check_flipped: Callable[[Runner], list[OutputCheck] | None]  # the gate on inputs with flipped values (None: n/a)
    capture: Callable[[], tuple[Any, str | None]] = lambda: (None, "torch.export was not run")  # (program, error), once
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # formats done so far
    _captured: tuple[Any, str | None] | None = None

    def _program(self) -> tuple[Any, str | None]:
        if self._captured is None:
            self._captured = self.capture()
        return self._captured

    @property
    def program(self) -> Any:
        """The ExportedProgram (None when torch.export failed), captured the first time an exporter asks: a build
        of TorchScript and ONNX whose legacy ONNX export passes never pays for the capture."""
        return self._program()[0]

    @property
    def program_error(self) -> str | None:
        return self._program()[1]


class Exporter(Protocol):
    """What a format's module (packager/export/<name>.py) defines."""

    def export(self, ctx: ExportContext) -> Outcome: ...

    def load(self, path: Path, device: str) -> Runner: ...


@dataclass(frozen=True)
class Format:
    """One export format. `serve_rank`: its place in the order a target picks what to serve when the user does not
    say (lower first); `built_by_default`: `pack build` tries it when --formats is not given; `needs_program`: its
    exporter works from the ExportedProgram."""

    name: str
    file: str
    description: str
    serve_rank: int
    built_by_default: bool = True
    needs_program: bool = False

    def _module(self) -> Exporter:
        return cast(Exporter, importlib.import_module(f"{__name__}.{self.name}"))

    def export(self, ctx: ExportContext) -> Outcome:
        return self._module().export(ctx)

    def load(self, path: Path, device: str) -> Runner:
        return self._module().load(path, device)


FORMATS: Registry[Format] = Registry("format")  # registration order is the report order
FORMATS.register(Format("torchscript", "model.pt", "TorchScript (torch.jit.trace / script)", serve_rank=1))
FORMATS.register(Format("onnx", "model.onnx", "ONNX (dynamo or legacy exporter)", serve_rank=0))
FORMATS.register(Format("pt2", "model.pt2", "torch.export ExportedProgram", serve_rank=3, needs_program=True))
FORMATS.register(
    Format("aoti", "model.aoti.pt2", "AOTInductor package", serve_rank=2, built_by_default=False, needs_program=True)
)

DEFAULT_FORMATS = tuple(f.name for f in FORMATS.entries() if f.built_by_default)
SERVE_PREFERENCE = tuple(f.name for f in sorted(FORMATS.entries(), key=lambda f: f.serve_rank))
FILES = {f.name: f.file for f in FORMATS.entries()}
get_format = FORMATS.get


def served_format(report: BuildReport, requested: str | None = None, supported: tuple[str, ...] = SERVE_PREFERENCE) -> str:
    """The export a target serves: the one asked for, else the first in SERVE_PREFERENCE that passed and it runs."""
    from ..errors import UsageError

    artifacts = report.artifacts
    if requested:
        if requested not in supported:
            raise UsageError(
                f"format {requested!r} cannot be served here", f"use one of {', '.join(f for f in supported if f in artifacts)}"
            )
        if requested not in artifacts:
            why = report.formats[requested].reason if requested in report.formats else "it was not built"
            raise UsageError(
                f"the build has no {requested} export ({why[:200]})",
                f"serve one of {', '.join(artifacts) or 'nothing'}, or rebuild",
            )
        return requested
    for name in SERVE_PREFERENCE:
        if name in supported and name in artifacts:
            return name
    raise UsageError(
        f"the build has none of the exports this target serves ({', '.join(supported)})",
        "rebuild with --formats including one of them",
    )


def runner_for(name: str, path: Path, device: str = "cpu") -> Runner:
    """Load a saved file of format `name` and return a callable: numpy inputs -> numpy outputs."""
    return get_format(name).load(path, device)


__all__ = [
    "DEFAULT_FORMATS",
    "FILES",
    "FORMATS",
    "SERVE_PREFERENCE",
    "ExportContext",
    "Exporter",
    "Format",
    "Outcome",
    "get_format",
    "runner_for",
    "served_format",
]

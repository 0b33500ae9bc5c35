"""Export formats: how each file is written and how it is run back. The table of formats (`FORMATS`, one registered
entry each: file, default, serve order) is torch-free data in packager/report/formats.py, which the serving targets
read too; here each format's module does the work.

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

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..report.formats import DEFAULT_FORMATS, FILES, FORMATS, SERVE_PREFERENCE, Format

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
                    "torch.export specialised a size the model's code reads (the report's export.pt2.attempts says "
                    "what was tried); declare that axis static for pt2 and aoti, or serve torchscript or onnx"
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
    capture_attempts: list[dict[str, str]] = field(default_factory=list)  # what torch.export tried, and why each failed
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


def exporter(name: str) -> Exporter:
    """The module of format `name` (packager/export/<name>.py), imported when the format is first built or loaded."""
    FORMATS.get(name)  # one line for a name the table does not hold
    return cast(Exporter, importlib.import_module(f"{__name__}.{name}"))


@contextlib.contextmanager
def export_mode() -> Iterator[None]:
    """PyTorch's fused attention fast path off (restored after): in eval mode `nn.TransformerEncoder` and
    `nn.MultiheadAttention` otherwise run `aten::_transformer_encoder_layer_fwd` and nested tensors, which the legacy
    ONNX exporter cannot convert, the trace records as one opaque operator, and the dynamo exporter turns into NaN.
    The same math without it; the build's eager reference and every export run inside, so the gate compares like
    with like."""
    import torch

    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def runner_for(name: str, path: Path, device: str = "cpu") -> Runner:
    """Load a saved file of format `name` and return a callable: numpy inputs -> numpy outputs."""
    return exporter(name).load(path, device)


__all__ = [
    "DEFAULT_FORMATS",
    "FILES",
    "FORMATS",
    "SERVE_PREFERENCE",
    "ExportContext",
    "Exporter",
    "Format",
    "Outcome",
    "export_mode",
    "exporter",
    "runner_for",
]

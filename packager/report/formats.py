"""The export formats as a build records them, one registered entry each in `FORMATS` (packager/registry.py's
Registry): the file each is written to, whether `pack build` tries it by default, its place in the order a target
picks what to serve; and which of a build's exports a target serves (`served`).

Torch-free data: the exporters (packager/export/, one module per format) write these files, the report order,
--formats, the spec schema's enum, the CLI's --format choices and the defaults are derived from here, and the serving
targets read it with `BuildReport`, never the exporters.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..registry import Registry
from .build_report import BuildReport


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


FORMATS: Registry[Format] = Registry("format")  # registration order is the report order
FORMATS.register(Format("torchscript", "model.pt", "TorchScript (torch.jit.trace / script)", serve_rank=1))
FORMATS.register(Format("onnx", "model.onnx", "ONNX (dynamo or legacy exporter)", serve_rank=0))
FORMATS.register(Format("pt2", "model.pt2", "torch.export ExportedProgram", serve_rank=3, needs_program=True))
FORMATS.register(
    Format("aoti", "model.aoti.pt2", "AOTInductor package", serve_rank=2, built_by_default=False, needs_program=True)
)

DEFAULT_FORMATS = tuple(f.name for f in FORMATS.entries() if f.built_by_default)
SERVE_PREFERENCE = tuple(f.name for f in sorted(FORMATS.entries(), key=lambda f: f.serve_rank))  # when not asked
FILES = {f.name: f.file for f in FORMATS.entries()}


@dataclass(frozen=True)
class Served:
    """What a target serves of a build: the export format and its file, relative to the build folder (the kept ONNX
    variant's file when the build serves one)."""

    format: str
    file: str


def served_format(report: BuildReport, requested: str | None = None, supported: tuple[str, ...] = SERVE_PREFERENCE) -> str:
    """The export a target serves: the one asked for, else the first in SERVE_PREFERENCE that passed and it runs."""
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


def served(report: BuildReport, requested: str | None = None, supported: tuple[str, ...] = SERVE_PREFERENCE) -> Served:
    """What a target serves of `report`: the `requested` format (else the first of SERVE_PREFERENCE that passed) and
    the file the report names for it (`BuildReport.served_file`: a kept ONNX variant's, else the export);
    `supported`: the formats this use of the target can load. Every target's archive, repository, model folder,
    KServe storage and deploy result, and bench's in-process rows, take their file from here; nothing else picks
    one."""
    fmt = served_format(report, requested, supported)  # one of report.artifacts, or one line
    return Served(fmt, report.served_file(fmt) or report.artifacts[fmt])


__all__ = ["DEFAULT_FORMATS", "FILES", "FORMATS", "SERVE_PREFERENCE", "Format", "Served", "served", "served_format"]

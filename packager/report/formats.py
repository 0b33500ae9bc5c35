"""The export formats as a build records them: the file each is written to, and which of a build's exports a target
serves (`served`). Torch-free: the exporters (packager/export/) write these files, and the serving targets read them
from here and from `BuildReport`, never from the exporters.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .build_report import BuildReport

FILES = {"torchscript": "model.pt", "onnx": "model.onnx", "pt2": "model.pt2", "aoti": "model.aoti.pt2"}
SERVE_PREFERENCE = ("onnx", "torchscript", "aoti", "pt2")  # what a target serves when the user does not say


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


__all__ = ["FILES", "SERVE_PREFERENCE", "Served", "served", "served_format"]

"""Serving targets, one room each (triton, torchserve, fastapi, kserve), behind one interface and its capabilities.

The build pipeline never imports a target: the CLI hands it the packaging steps (`packagers()`). Everything else
(the CLI, bench, tune, verify, inspect, the KServe target) reaches a target through the registry: `get_target(name)`
for a target the user named, `all_targets()`, and `capable(CAPABILITY)` for the targets that do what only some do
(capabilities.py); then the methods of `Target` and of the capability's protocol. A target never imports another
target's modules nor the build pipeline (tests/unit/test_architecture.py checks the import graph).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..report.build_report import BuildReport
from .base import (
    Target,
    all_targets,
    capable,
    get_target,
    make_options,
    names,
    require,
    sole,
)
from .capabilities import (
    ARCHIVER,
    BENCHABLE,
    MANIFEST_CHECKER,
    MIGRATABLE,
    REPOSITORY_CHECKER,
    REPOSITORY_WRITER,
    STORAGE_LAYOUT,
    TUNABLE,
    BenchProfile,
    Endpoint,
    Request,
)
from .options import DeployOptions, ServerOptions

Packager = Callable[[Path, BuildReport], dict[str, Any]]


def packagers() -> dict[str, Packager]:
    """The build-time packaging step of every target that writes into each build folder, in order."""
    return {t.name: t.package for t in all_targets() if t.packaged_by_build}


__all__ = [
    "ARCHIVER",
    "BENCHABLE",
    "MANIFEST_CHECKER",
    "MIGRATABLE",
    "REPOSITORY_CHECKER",
    "REPOSITORY_WRITER",
    "STORAGE_LAYOUT",
    "TUNABLE",
    "BenchProfile",
    "DeployOptions",
    "Endpoint",
    "Request",
    "ServerOptions",
    "Target",
    "all_targets",
    "capable",
    "get_target",
    "make_options",
    "names",
    "packagers",
    "require",
    "sole",
]

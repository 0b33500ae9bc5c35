"""Serving targets, one room each (triton, torchserve, fastapi, kserve), behind one interface: `base.Target`.

The build pipeline never imports a target: the CLI hands it the packaging steps (`packagers()`). Everything else
(the CLI, bench, verify, inspect, the KServe target) reaches a target through `get_target(name)` and the methods of
`Target`; a target never imports another target's modules (tests/ check the import graph).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..report.build_report import BuildReport
from .base import (
    DeployOptions,
    Endpoint,
    Request,
    Served,
    ServerOptions,
    Target,
    all_targets,
    get_target,
    make_options,
    names,
)

Packager = Callable[[Path, BuildReport], dict[str, Any]]


def packagers() -> dict[str, Packager]:
    """The build-time packaging step of every target that writes into each build folder, in order."""
    return {t.name: t.package for t in all_targets() if t.packaged_by_build}


__all__ = [
    "DeployOptions",
    "Endpoint",
    "Request",
    "Served",
    "ServerOptions",
    "Target",
    "all_targets",
    "get_target",
    "make_options",
    "names",
    "packagers",
]

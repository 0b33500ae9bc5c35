"""Serving targets, one module each (torchserve, triton, kserve), behind one narrow interface.

The build pipeline and the CLI only call the functions below; they never read or write a target's file formats.
Each target module may implement:

    package(build_dir: Path, report: dict, log) -> dict
        Called by `pack build` inside the temporary build folder, after validation passed and before the folder is
        committed. Writes the target's artifacts under build_dir/<target>/ and returns the report section for it
        (paths relative to build_dir). pack build adds every file's sha256 to report["sha256"] afterwards.
    deploy(build_dir: Path, report: dict, opts: DeployOptions, log) -> dict     (the --json document)
    status(opts: DeployOptions, log) -> dict
    undeploy(name: str, version: str | None, opts: DeployOptions, log) -> dict
    stop(opts: DeployOptions, log) -> dict

Errors are raised as packager.errors.PackError subclasses (one line, documented exit code).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ..errors import UsageError

TARGETS = ("torchserve", "triton", "kserve")
# Targets whose artifacts `pack build` writes into every build folder, in this order.
PACKAGED_BY_BUILD: tuple[str, ...] = ("torchserve", "triton")

Log = Callable[[str], None]


@dataclass
class DeployOptions:
    store: Path
    url: str | None = None  # an existing server instead of launching one
    token_file: str | None = None  # TorchServe key file for --url
    server_binary: str | None = None  # e.g. --tritonserver PATH
    host: str = "127.0.0.1"
    timeout: float = 180.0
    workers: int | None = None
    batch_size: int | None = None
    max_batch_delay_ms: int | None = None
    format: str | None = None  # onnx | torchscript
    backend: str | None = None  # triton: onnxruntime | pytorch | python
    extra: dict[str, Any] = field(default_factory=dict)  # target-specific options (kserve runtime, storage uri, ...)


def load(target: str) -> ModuleType:
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}", f"use one of {', '.join(TARGETS)}")
    try:
        return importlib.import_module(f"{__name__}.{target}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{target}":
            raise UsageError(f"the {target} target is not available in this version of pack") from None
        raise


def call(target: str, function: str, *args: Any) -> Any:
    module = load(target)
    fn = getattr(module, function, None)
    if fn is None:
        raise UsageError(f"the {target} target does not support `{function}`")
    return fn(*args)


def package_all(build_dir: Path, report: dict[str, Any], log: Log) -> dict[str, Any]:
    """Run every build-time packager; returns {target: section} for the report."""
    return {name: load(name).package(build_dir, report, log) for name in PACKAGED_BY_BUILD}

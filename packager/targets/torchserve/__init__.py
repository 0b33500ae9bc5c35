"""The TorchServe target: a reproducible .mar with pack's handlers, config.properties, deploy through the management API.

package(build_dir, report)            pack build: torchserve/<name>.mar and torchserve/config.properties
archive(build_dir, report, opts)      pack archive: rewrite both for an existing build (atomically)
deploy / status / undeploy / stop          pack deploy|status|undeploy|stop --target torchserve
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...report import BuildReport
from ...store import StoreLock
from .. import DeployOptions
from .config import ServingSettings, config_properties, models_entry, settings_from
from .deploy import deploy, status, stop, undeploy
from .mar import write_mar
from .marcheck import read_manifest

log = logging.getLogger(__name__).info

FOLDER = "torchserve"
CONFIG = "config.properties"

__all__ = ["package", "archive", "deploy", "status", "undeploy", "stop"]


def _write_files(build_dir: Path, report: BuildReport, settings: ServingSettings, folder: Path) -> dict[str, Any]:
    """Write <name>.mar and config.properties into `folder`; return the report section (paths relative to build_dir)."""
    name = report.name
    mar_name = f"{name}.mar"
    info = write_mar(build_dir, report, settings, folder / mar_name)
    text = config_properties(
        ".",
        load_models=[mar_name],
        models=models_entry(name, report.version, mar_name, settings),
        comment=(
            f"TorchServe configuration for {name} v{report.version}, written by pack.\n"
            "Start it from this folder (the model store is `.`):  torchserve --start --ts-config config.properties\n"
            "or from anywhere:  torchserve --start --ts-config <this file> --model-store <this folder>"
        ),
    )
    (folder / CONFIG).write_text(text)
    return {
        "mar": f"{FOLDER}/{mar_name}",
        "config": f"{FOLDER}/{CONFIG}",
        "format": settings.format,
        "handler": info["handler"],
        "settings": settings.to_dict(),
        "mar_bytes": info["bytes"],
    }


def package(build_dir: Path, report: BuildReport) -> dict[str, Any]:
    """Called by `pack build` inside its temporary folder: the archive serves ONNX through onnxruntime by default."""
    settings = settings_from(report)
    folder = build_dir / FOLDER
    folder.mkdir(exist_ok=True)
    log(f"writing the TorchServe archive ({settings.format}, batch size {settings.batch_size})")
    return _write_files(build_dir, report, settings, folder)


def archive(build_dir: Path, report: BuildReport, opts: DeployOptions) -> dict[str, Any]:
    """`pack archive`: (re)write the .mar and config.properties of a committed build, and its report.json entries."""
    from ...report import sha256_file

    force = bool((opts.extra or {}).get("force"))
    settings = settings_from(report, opts.format, opts.batch_size, opts.max_batch_delay_ms, opts.workers)
    folder = build_dir / FOLDER
    mar_path = folder / f"{report.name}.mar"
    with StoreLock(build_dir.parent):  # the model's lock, the one `pack build` holds
        report = BuildReport.load(build_dir)  # re-read under the lock
        rel = f"{FOLDER}/{mar_path.name}"
        good = mar_path.is_file() and read_manifest(mar_path) is not None and report.sha256.get(rel) == sha256_file(mar_path)
        if good and not force:
            raise UsageError(f"{mar_path} already exists", "pass --force to rewrite it")
        staging = folder / f".tmp-{os.getpid()}"
        staging.mkdir(parents=True, exist_ok=True)
        try:
            section = _write_files(build_dir, report, settings, staging)
            for file_name in (mar_path.name, CONFIG):
                os.replace(staging / file_name, folder / file_name)
        finally:
            for leftover in staging.glob("*"):
                leftover.unlink()
            staging.rmdir()
        report.targets["torchserve"] = section
        report.save(build_dir, rewritten=[rel, f"{FOLDER}/{CONFIG}"])  # the others keep the digests checked before
    log(f"wrote {mar_path} ({section['mar_bytes'] / 1e6:.1f} MB, {settings.format}, {section['handler']})")
    return {
        "target": "torchserve",
        "model": report.name,
        "version": report.version,
        **section,
        "sha256": {k: v for k, v in report.sha256.items() if k.startswith(FOLDER + "/")},
        "summary": f"wrote {mar_path} and {folder / CONFIG} "
        f"({settings.format}, handler {section['handler']}, sha256 {report.sha256[rel][:12]})",
    }

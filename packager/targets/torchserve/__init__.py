"""The TorchServe target: a reproducible .mar with pack's handlers, config.properties, deploy through the management API.

package(build_dir, report)            pack build: torchserve/<name>.mar and torchserve/config.properties
archive(build_dir, report, opts)      pack archive: rewrite both for an existing build (atomically)
deploy / status / undeploy / stop     pack deploy|status|undeploy|stop --target torchserve (the deploy module)
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ...report.build_report import BuildReport
from ...report.store import StoreLock
from ..options import DeployOptions

if TYPE_CHECKING:
    from .config import ServingSettings

logger = logging.getLogger(__name__)

FOLDER = "torchserve"
CONFIG = "config.properties"

__all__ = ["package", "archive"]


def _write_files(build_dir: Path, report: BuildReport, settings: ServingSettings, folder: Path) -> tuple[dict[str, Any], str]:
    """Write <name>.mar and config.properties into `folder`; return the report section (paths relative to build_dir)
    and the archive's sha256."""
    from .config import config_properties, models_entry
    from .mar import write_mar

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
    }, info["sha256"]


def package(build_dir: Path, report: BuildReport) -> dict[str, Any]:
    """Called by `pack build` inside its temporary folder: the archive serves ONNX through onnxruntime by default."""
    from .config import settings_from

    settings = settings_from(report)
    folder = build_dir / FOLDER
    folder.mkdir(exist_ok=True)
    logger.info(f"writing the TorchServe archive ({settings.format}, batch size {settings.batch_size})")
    return _write_files(build_dir, report, settings, folder)[0]


def _unread(report: BuildReport, fmt: str) -> set[str]:
    """The build's recorded files an archive of export `fmt` is not made of: the other exports, and the files in
    other folders than samples/ (the other targets' copies, this target's own old files). The file it packs (the
    served variant's or the export), the labels and the samples are checked."""
    from ...report.formats import served

    packed = served(report, fmt).file
    return {
        rel
        for rel in report.sha256
        if rel != packed and (rel in report.artifacts.values() or ("/" in rel and not rel.startswith("samples/")))
    }


def _swap_in(staging: Path, folder: Path, names: tuple[str, ...]) -> list[Path]:
    """Move each staged file into `folder`; the files they replace go into `staging` (returned) for the caller to
    delete. Each rename is atomic: a reader sees the old file or the new one."""
    old = []
    for file_name in names:
        if (folder / file_name).is_file():
            os.link(folder / file_name, staging / f"old-{file_name}")
            old.append(staging / f"old-{file_name}")
        os.replace(staging / file_name, folder / file_name)
    return old


def archive(build_dir: Path, report: BuildReport, opts: DeployOptions) -> dict[str, Any]:
    """`pack archive`: (re)write the .mar and config.properties of a committed build, and its report.json entries."""
    from ...report.build_report import sha256_file
    from ...report.integrity import require_intact
    from ...report.trust import current
    from .config import settings_from
    from .marcheck import read_manifest

    force = bool((opts.extra or {}).get("force"))
    settings = settings_from(report, opts.format, opts.batch_size, opts.max_batch_delay_ms, opts.workers, opts.threads)
    folder = build_dir / FOLDER
    mar_path = folder / f"{report.name}.mar"
    with StoreLock(build_dir.parent):  # the model's lock, the one `pack build` holds
        report = BuildReport.load(build_dir)  # re-read under the lock
        rel = f"{FOLDER}/{mar_path.name}"
        good = not force and mar_path.is_file() and read_manifest(mar_path) is not None  # hashed only without --force
        if good and report.sha256.get(rel) == sha256_file(mar_path):
            raise UsageError(f"{mar_path} already exists", "pass --force to rewrite it")
        staging = folder / f".tmp-{os.getpid()}"
        staging.mkdir(parents=True, exist_ok=True)
        rule = current("pack archive")
        try:
            # The digests of what is packed are checked while it is packed (a second core); nothing is swapped in
            # before the check ends, and a failed check wins over any other error: nothing unverified is packed.
            with ThreadPoolExecutor(1) as pool:
                checked = pool.submit(require_intact, build_dir, report, _unread(report, settings.format))
                try:
                    section, digest = _write_files(build_dir, report, settings, staging)
                finally:
                    checked.result()
            rule.drop(build_dir)  # the signature goes before the first file is replaced (packager/report/trust.py)
            old = _swap_in(staging, folder, (mar_path.name, CONFIG))
            tuned = (opts.extra or {}).get("tuned")  # `pack tune`: what was measured with these settings
            report.targets["torchserve"] = {**section, "tuned": tuned} if tuned else section
            report.sha256[rel] = digest  # taken as the archive was written
            rule.save(build_dir, report, rewritten=[f"{FOLDER}/{CONFIG}"])  # the others keep the digests checked before
            for path in old:
                path.unlink()
        finally:
            for leftover in staging.glob("*"):
                leftover.unlink()
            staging.rmdir()
        rule.seal(build_dir)  # under the lock, once the staging folder is gone (packager/report/trust.py)
    logger.info(f"wrote {mar_path} ({section['mar_bytes'] / 1e6:.1f} MB, {settings.format}, {section['handler']})")
    return {
        "target": "torchserve",
        "model": report.name,
        "version": report.version,
        **section,
        "sha256": {k: v for k, v in report.sha256.items() if k.startswith(FOLDER + "/")},
        "summary": f"wrote {mar_path} and {folder / CONFIG} "
        f"({settings.format}, handler {section['handler']}, sha256 {report.sha256[rel][:12]})",
    }

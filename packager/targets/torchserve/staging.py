"""Getting a build's archive to TorchServe: the build's own `.mar` (checked against report.json) or a fresh one, put
into the server's model store, or served once over loopback HTTP while a server on this host downloads it."""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...report.build_report import BuildReport
from ...serve.http import serving
from .config import ServingSettings
from .mar import SERIALIZED, write_mar
from .marcheck import read_manifest

logger = logging.getLogger(__name__)


def mar_file(build_dir: Path, report: BuildReport) -> Path:
    return build_dir / "torchserve" / f"{report.name}.mar"


def usable_build_mar(build_dir: Path, report: BuildReport, settings: ServingSettings) -> Path | None:
    """The build's own .mar when it serves the requested format; refuse one that does not match report.json."""
    path = mar_file(build_dir, report)
    if not path.is_file():
        return None
    from ...report.build_report import sha256_file

    rel = str(path.relative_to(build_dir))
    recorded = report.sha256.get(rel)
    if recorded and sha256_file(path) != recorded:
        raise UsageError(
            f"{path} does not match the sha256 recorded in report.json",
            f"rewrite it with `pack archive {report.name} --version {report.version} --force`",
        )
    found = read_manifest(path)
    if not found:
        raise UsageError(f"{path} is not a readable TorchServe archive", "rewrite it with `pack archive --force`")
    return path if found["model"].get("serializedFile") == SERIALIZED[settings.format] else None


def stage_mar(
    build_dir: Path,
    report: BuildReport,
    settings: ServingSettings,
    folder: Path,
    file_name: str,
    signature: Sequence[str] | None = None,
) -> Path:
    """Put the archive at folder/file_name: a hard link to (or copy of) the build's .mar, or a fresh one (always, with
    `signature`: the build's model.sig and the public key the handler checks the model with)."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / file_name
    tmp = folder / f".{file_name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    source = None if signature else usable_build_mar(build_dir, report, settings)
    try:
        if source is not None:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
        else:
            logger.debug(f"writing a {settings.format} archive for {report.name} v{report.version}")
            write_mar(build_dir, report, settings, tmp, signature=signature)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


@contextlib.contextmanager
def serve_file(path: Path, host: str) -> Iterator[str]:
    """Serve one file over HTTP on a loopback port while a remote TorchServe on this host downloads it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != "/" + path.name:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with open(path, "rb") as fh:
                shutil.copyfileobj(fh, self.wfile, 1 << 20)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer((host, 0), Handler)) as url:
        yield f"{url}/{path.name}"


@contextlib.contextmanager
def tempdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="pack-mar-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)

"""A byte-reproducible TorchServe model archive (.mar) writer.

The archive holds what torch-model-archiver 0.12 would put there (MAR-INF/MANIFEST.json with the same fields, the
serialized model, the handler and the modules of pack's serving runtime it imports (the `handlers` package, see
packager/serve/tasks.py), model-config.yaml, labels) plus pack.json, the model metadata the handlers read. It is written
with `zipfile` directly:

- entries in sorted order, every timestamp 1980-01-01 00:00:00 (or SOURCE_DATE_EPOCH when set), mode 0644, Unix;
- the model weights stored (no deflate: they do not compress and deflate is what makes torch-model-archiver slow),
  starting on a 4 KiB boundary, copied by the kernel (copy_file_range) while a second thread computes their CRC;
  text files deflated at level 6;
- pack.json records the sha256 of every other member (`members_sha256`), which `pack verify` checks;
- MANIFEST.json's `createdOn` is that same fixed date, so the same build always gives the same sha256.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...report.build_report import BuildReport, sha256_file
from ...report.formats import FILES, served
from ...serve.tasks import read_runtime, runtime_files, shipped_files, task_for
from ...serve.worker import SIGNED, handler_settings, metadata, signature_settings
from .config import ServingSettings, model_config, model_config_yaml

ARCHIVER_VERSION = "0.12.0"  # the torch-model-archiver release whose MANIFEST.json format this writes
Date = tuple[int, int, int, int, int, int]  # year, month, day, hour, minute, second (zip's date_time)
FIXED_DATE: Date = (1980, 1, 1, 0, 0, 0)
CHUNK = 8 << 20
METADATA_FILE = "pack.json"
MEMBER_DIGESTS = "members_sha256"  # pack.json: member name -> sha256, every member but pack.json
CONFIG_FILE = "model-config.yaml"
SERIALIZED = FILES  # format -> file name inside the archive (the build's own names)


def handlers_dir() -> Path:
    """The folder of pack's serving runtime (the `handlers` package, found with importlib.resources), whose files
    the archives ship."""
    return Path(str(runtime_files()))


def choose_handler(report: BuildReport) -> str:
    """The TorchServe entry handler file for a build's task (packager/serve/tasks.py): image classification, YOLO-format
    detection, or generic tensors."""
    return task_for(report).handler


def helper_files(handler: str) -> list[str]:
    """The handler and every runtime module it imports (sorted file names): what the archive ships."""
    return shipped_files(handler)


def archive_date() -> Date:
    """1980-01-01 00:00:00, or SOURCE_DATE_EPOCH (UTC) when set: the reproducible-builds convention."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return FIXED_DATE
    try:
        t = time.gmtime(max(int(epoch), 315532800))
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not an integer") from None
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec - t.tm_sec % 2)


def manifest(name: str, version: str, serialized: str, handler: str, date: Date) -> dict[str, Any]:
    """MANIFEST.json with torch-model-archiver 0.12's fields and key order; createdOn is the archive's fixed date."""
    created = f"{date[2]:02d}/{date[1]:02d}/{date[0]:04d} {date[3]:02d}:{date[4]:02d}:{date[5]:02d}"
    return {
        "createdOn": created,
        "runtime": "python",
        "model": {
            "modelName": name,
            "serializedFile": serialized,
            "handler": handler,
            "modelVersion": str(version),
            "configFile": CONFIG_FILE,
        },
        "archiverVersion": ARCHIVER_VERSION,
    }


@dataclass
class Entry:
    name: str
    data: bytes | None = None
    path: Path | None = None
    store: bool = False
    sha256: str | None = None  # the file's digest as the build recorded it (checked beside the packing: not re-read)
    crc32: int | None = None  # its CRC-32 as the build recorded it for that digest (the zip's CRC pass skipped)

    def file(self) -> Path:
        """The file an entry without in-memory data copies."""
        if self.path is None:
            raise ValueError(f"archive entry {self.name} has neither data nor a file")
        return self.path

    def size(self) -> int:
        return len(self.data) if self.data is not None else self.file().stat().st_size

    def content(self) -> bytes:
        return self.data if self.data is not None else self.file().read_bytes()


def member_digests(entries: list[Entry]) -> dict[str, str]:
    """The sha256 of every member (all but pack.json, which records them): `pack verify` of an archive without its
    build checks each member against them, so a model file swapped inside the archive is caught."""
    return {
        e.name: e.sha256 or (hashlib.sha256(e.data).hexdigest() if e.data is not None else sha256_file(e.file())) for e in entries
    }


def plan_entries(
    build_dir: Path,
    report: BuildReport,
    settings: ServingSettings,
    handler: str | None = None,
    signature: Sequence[str] | None = None,
) -> tuple[list[Entry], dict[str, Any]]:
    """Every entry of the archive (sorted) and a description of it for the report; with `signature` (the build's
    model.sig and a public key: pack deploy --require-signature), both beside the model, which the handler checks
    against them before it loads it."""
    fmt = settings.format
    serialized = SERIALIZED[fmt]
    packed = served(report, fmt).file  # a kept ONNX variant's, else the export
    model_path = build_dir / packed
    if not model_path.is_file():
        raise UsageError(f"the build has no {fmt} export ({model_path})", "rebuild it with `pack build`")
    handler = handler or choose_handler(report)
    labels = report.labels
    if labels and not (build_dir / labels).is_file():
        labels = None
    date = archive_date()
    hsettings = handler_settings(report, handler, labels)
    config = model_config(settings, hsettings)
    entries = [
        Entry(
            "MAR-INF/MANIFEST.json",
            data=(json.dumps(manifest(report.name, report.version, serialized, handler, date), indent=2) + "\n").encode(),
        ),
        Entry(
            serialized,
            path=model_path,
            store=True,
            sha256=report.sha256.get(packed),
            crc32=report.crc32.get(report.sha256.get(packed, "")),
        ),
        Entry(CONFIG_FILE, data=model_config_yaml(config).encode()),
    ]
    entries += [Entry(f, data=read_runtime(f)) for f in helper_files(handler)]
    if labels:
        entries.append(Entry(Path(labels).name, path=build_dir / labels, sha256=report.sha256.get(labels)))
    if signature:
        entries += [Entry(name, path=Path(source)) for source, name in zip(signature, SIGNED, strict=True)]
    meta = {**metadata(report, fmt, serialized, labels), MEMBER_DIGESTS: member_digests(entries)}
    if signature:
        meta["signature"] = signature_settings(packed)
    entries.append(Entry(METADATA_FILE, data=(json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()))
    entries.sort(key=lambda e: e.name)
    info = {"handler": handler, "format": fmt, "serialized_file": serialized, "model_config": config, "date": list(date)}
    return entries, info


def write_mar(
    build_dir: Path,
    report: BuildReport,
    settings: ServingSettings,
    out: Path,
    handler: str | None = None,
    signature: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write the archive to `out` (the caller renames it into place); returns its description (entries, size)."""
    entries, info = plan_entries(build_dir, report, settings, handler, signature)
    year, month, day, hour, minute, second = info.pop("date")
    date = (year, month, day, hour, minute, second)
    sizes = [e.size() for e in entries]
    if sum(sizes) < ZIP32_LIMIT and len(entries) < 0xFFFF:
        with open(out, "wb", buffering=0) as fh:
            digest = _write_zip32(fh, entries, date)
    else:  # ZIP64 needed (a model over 4 GB): zipfile writes the same entries, in the same order
        _write_with_zipfile(out, entries, date)
        digest = sha256_file(out)
    info.update({"bytes": out.stat().st_size, "entries": [e.name for e in entries], "sha256": digest})
    return info


ZIP32_LIMIT = 0xFFFFFFFF - (1 << 20)  # leave room for headers and the central directory
ALIGN = 4096  # stored weights start on a page boundary (extra field 0xD935, Android's zipalign record)


def _dos_time(date: Date) -> tuple[int, int]:
    year, month, day, hour, minute, second = date
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


class _Hashed:
    """The archive file, with the sha256 of every byte written to it (the digest report.json records), so the
    written archive is never read back to hash it."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.digest.update(data)

    def append_file(self, path: Path, size: int) -> int:
        """Append `size` bytes of `path`: the kernel copies them while a thread hashes the same bytes from a
        read-only mapping (hashlib releases the GIL); the file's CRC was taken before its header was written."""
        if size == 0:
            return 0
        with open(path, "rb") as src, mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as view:
            if len(view) != size:
                raise OSError(f"{path} changed size while it was archived")
            with ThreadPoolExecutor(1) as pool:
                hashed = pool.submit(self.digest.update, view)
                _copy_file(path, self.fh, size)
                hashed.result()
        return size


def _write_zip32(fh: Any, entries: list[Entry], date: Date) -> str:
    """A plain (non-ZIP64) zip: stored entries copied file-to-file by the kernel after one CRC pass over a mapping;
    returns the archive's sha256, taken as it is written."""
    out = _Hashed(fh)
    dos_time, dos_date = _dos_time(date)
    central = []
    offset = 0
    for entry in entries:
        name = entry.name.encode("utf-8")
        flags = 0x800 if not entry.name.isascii() else 0
        if entry.data is None and entry.store:
            size = entry.file().stat().st_size
            crc = entry.crc32 if entry.crc32 is not None else _file_crc(entry.file())
            method, csize, payload = 0, size, None
        else:
            raw = entry.content()
            size, crc = len(raw), zlib.crc32(raw)
            if entry.store:
                method, payload = 0, raw
            else:
                packer = zlib.compressobj(6, zlib.DEFLATED, -15)
                method, payload = 8, packer.compress(raw) + packer.flush()
            csize = len(payload)
        extra = b""
        if payload is None:  # page-align the weights in the archive, as zipalign does: kernel copies go page by page
            pad = -(offset + 30 + len(name) + 6) % ALIGN
            extra = struct.pack("<HHH", 0xD935, 2 + pad, ALIGN) + bytes(pad)
        header = struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, flags, method, dos_time, dos_date, crc, csize, size, len(name), len(extra)
        )
        out.write(header + name + extra)
        if payload is None:
            out.append_file(entry.file(), size)
        else:
            out.write(payload)
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                (3 << 8) | 20,
                20,
                flags,
                method,
                dos_time,
                dos_date,
                crc,
                csize,
                size,
                len(name),
                0,
                0,
                0,
                0,
                0o100644 << 16,
                offset,
            )
            + name
        )
        offset += len(header) + len(name) + len(extra) + csize
    directory = b"".join(central)
    out.write(directory)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(directory), offset, 0))
    return out.digest.hexdigest()


def _file_crc(path: Path) -> int:
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return 0
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return zlib.crc32(view)


def _copy_file(path: Path, fh: Any, size: int) -> None:
    """Append `size` bytes of `path` to the open archive: copy_file_range/sendfile in the kernel, else read/write."""
    with open(path, "rb") as src:
        left = size
        for kernel_copy in _kernel_copies():
            if left == 0:
                continue
            try:
                while left:
                    done = kernel_copy(src.fileno(), fh.fileno(), min(left, 1 << 30))
                    if done == 0:
                        break
                    left -= done
            except OSError:
                pass  # not supported between these files: the next way carries on from the same positions
            if left == 0:
                return
        while left:
            block = src.read(min(left, CHUNK))
            if not block:
                raise OSError(f"{path} shrank while it was archived")
            fh.write(block)
            left -= len(block)


def _kernel_copies() -> list[Callable[[int, int, int], int]]:
    """The kernel's ways to append `count` bytes from file descriptor `src` to `dst` (at their current positions),
    best first: copy_file_range, then sendfile (where this platform has them)."""
    ways: list[Callable[[int, int, int], int]] = []
    if hasattr(os, "copy_file_range"):
        ways.append(lambda src, dst, count: os.copy_file_range(src, dst, count))
    if hasattr(os, "sendfile"):
        ways.append(lambda src, dst, count: os.sendfile(dst, src, None, count))
    return ways


def _write_with_zipfile(out: Path, entries: list[Entry], date: Date) -> None:
    with open(out, "wb") as raw, zipfile.ZipFile(raw, "w", allowZip64=True) as zf:
        for entry in entries:
            zinfo = zipfile.ZipInfo(entry.name, date_time=date)
            zinfo.create_system = 3
            zinfo.external_attr = 0o100644 << 16
            if entry.store and entry.data is None:
                zinfo.compress_type = zipfile.ZIP_STORED
                zinfo.file_size = entry.file().stat().st_size
                with open(entry.file(), "rb") as src, zf.open(zinfo, "w", force_zip64=zinfo.file_size >= ZIP32_LIMIT) as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            else:
                data = entry.content()
                method = zipfile.ZIP_STORED if entry.store else zipfile.ZIP_DEFLATED
                zinfo.compress_type = method
                zf.writestr(zinfo, data, compress_type=method, compresslevel=6)


def read_member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


__all__ = ["write_mar", "read_member", "choose_handler", "handlers_dir", "plan_entries"]

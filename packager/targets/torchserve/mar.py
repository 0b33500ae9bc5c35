"""A byte-reproducible TorchServe model archive (.mar) writer.

The archive holds what torch-model-archiver 0.12 would put there (MAR-INF/MANIFEST.json with the same fields, the
serialized model, the handler and its helper modules, model-config.yaml, labels) plus pack.json, the model metadata
the handlers read. It is written with `zipfile` directly:

- entries in sorted order, every timestamp 1980-01-01 00:00:00 (or SOURCE_DATE_EPOCH when set), mode 0644, Unix;
- the model weights stored (no deflate: they do not compress and deflate is what makes torch-model-archiver slow),
  text files deflated at level 6;
- MANIFEST.json's `createdOn` is that same fixed date, so the same build always gives the same sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UsageError
from .config import ServingSettings, handler_settings, model_config, model_config_yaml

ARCHIVER_VERSION = "0.12.0"  # the torch-model-archiver release whose MANIFEST.json format this writes
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
CHUNK = 8 << 20
METADATA_FILE = "pack.json"
CONFIG_FILE = "model-config.yaml"
SERIALIZED = {"onnx": "model.onnx", "torchscript": "model.pt"}


def handlers_dir() -> Path:
    """The folder holding the handler sources shipped inside archives (`handlers/` beside the packager package)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "handlers", Path(os.environ.get("PACK_HANDLERS_DIR", "/nonexistent"))):
        if (candidate / "pack_runtime.py").is_file():
            return candidate
    raise UsageError("pack's TorchServe handlers are missing (handlers/pack_runtime.py)", "reinstall pack from its source tree")


def choose_handler(report: dict[str, Any]) -> str:
    """The handler file for a build's task: image classification, YOLO detection, or generic tensors."""
    task = report.get("task")
    post = report.get("postprocessing") or {}
    inputs = report.get("inputs") or []
    image_input = len(inputs) == 1 and len(inputs[0].get("shape", [])) == 4 and inputs[0]["shape"][1] == 3
    if task == "image-classification" and image_input:
        return "pack_classifier.py"
    if task == "object-detection" and post.get("format") == "yolov8" and image_input:
        return "pack_detector.py"
    return "pack_tensors.py"


def helper_files(handler: str) -> list[str]:
    files = ["pack_runtime.py", handler]
    if handler in ("pack_classifier.py", "pack_detector.py"):
        files.append("pack_images.py")
    return sorted(set(files))


def archive_date() -> tuple[int, int, int, int, int, int]:
    """1980-01-01 00:00:00, or SOURCE_DATE_EPOCH (UTC) when set: the reproducible-builds convention."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return FIXED_DATE
    try:
        t = time.gmtime(max(int(epoch), 315532800))
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not an integer") from None
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec - t.tm_sec % 2)


def manifest(name: str, version: str, serialized: str, handler: str, date: tuple[int, ...]) -> dict[str, Any]:
    """MANIFEST.json with torch-model-archiver 0.12's fields and key order; createdOn is the archive's fixed date."""
    created = "%02d/%02d/%04d %02d:%02d:%02d" % (date[2], date[1], date[0], date[3], date[4], date[5])
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


def metadata(report: dict[str, Any], fmt: str, serialized: str, labels: str | None) -> dict[str, Any]:
    """pack.json: what the handlers need to know about the model (inputs, outputs, pre/post-processing)."""
    return {
        "pack_metadata": 1,
        "name": report["name"],
        "version": str(report["version"]),
        "task": report.get("task"),
        "format": fmt,
        "serialized_file": serialized,
        "inputs": report["inputs"],
        "outputs": [o["name"] for o in report["outputs"]],
        "preprocessing": report.get("preprocessing") or {},
        "postprocessing": report.get("postprocessing") or {},
        "labels_file": labels,
    }


@dataclass
class Entry:
    name: str
    data: bytes | None = None
    path: Path | None = None
    store: bool = False


def plan_entries(build_dir: Path, report: dict[str, Any], settings: ServingSettings, handler: str | None = None) -> tuple[list[Entry], dict[str, Any]]:
    """Every entry of the archive (sorted) and a description of it for the report."""
    fmt = settings.format
    serialized = SERIALIZED[fmt]
    model_path = build_dir / (report.get("artifacts") or {}).get(fmt, serialized)
    if not model_path.is_file():
        raise UsageError(f"the build has no {fmt} export ({model_path})", "rebuild it with `pack build`")
    handler = handler or choose_handler(report)
    labels = report.get("labels")
    if labels and not (build_dir / labels).is_file():
        labels = None
    date = archive_date()
    hsettings = handler_settings(report, handler, labels)
    config = model_config(settings, hsettings)
    source = handlers_dir()
    entries = [
        Entry("MAR-INF/MANIFEST.json", data=(json.dumps(manifest(report["name"], report["version"], serialized, handler, date), indent=2) + "\n").encode()),
        Entry(serialized, path=model_path, store=True),
        Entry(CONFIG_FILE, data=model_config_yaml(config).encode()),
        Entry(METADATA_FILE, data=(json.dumps(metadata(report, fmt, serialized, labels), indent=2, sort_keys=True) + "\n").encode()),
    ]
    entries += [Entry(f, path=source / f) for f in helper_files(handler)]
    if labels:
        entries.append(Entry(Path(labels).name, path=build_dir / labels))
    entries.sort(key=lambda e: e.name)
    info = {"handler": handler, "format": fmt, "serialized_file": serialized, "model_config": config, "date": list(date)}
    return entries, info


def write_mar(build_dir: Path, report: dict[str, Any], settings: ServingSettings, out: Path, handler: str | None = None) -> dict[str, Any]:
    """Write the archive to `out` (the caller renames it into place); returns its description with sha256 and size."""
    entries, info = plan_entries(build_dir, report, settings, handler)
    date = tuple(info["date"])
    with open(out, "wb") as raw, zipfile.ZipFile(raw, "w", allowZip64=True) as zf:
        for entry in entries:
            zinfo = zipfile.ZipInfo(entry.name, date_time=date)  # type: ignore[arg-type]
            zinfo.create_system = 3
            zinfo.external_attr = 0o100644 << 16
            if entry.store:
                zinfo.compress_type = zipfile.ZIP_STORED
                zinfo.file_size = entry.path.stat().st_size  # type: ignore[union-attr]
                with open(entry.path, "rb") as src, zf.open(zinfo, "w", force_zip64=zinfo.file_size >= 0x7FFFFFFF) as dst:  # type: ignore[arg-type]
                    shutil.copyfileobj(src, dst, CHUNK)
            else:
                data = entry.data if entry.data is not None else entry.path.read_bytes()  # type: ignore[union-attr]
                zinfo.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(zinfo, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    digest = hashlib.sha256()
    with open(out, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    info.update({"sha256": digest.hexdigest(), "bytes": out.stat().st_size, "entries": [e.name for e in entries]})
    info.pop("date")
    return info


def read_manifest(path: Path) -> dict[str, Any] | None:
    """MANIFEST.json of an archive, or None when the file is not a readable .mar."""
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("MAR-INF/MANIFEST.json"))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        return None


def read_member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


__all__ = ["write_mar", "read_manifest", "read_member", "choose_handler", "handlers_dir", "plan_entries"]

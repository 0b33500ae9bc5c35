"""A model-car: the runtime's storage layout under /models in an OCI image (KServe's modelcar convention, served from
`storageUri: oci://...`), written by pack itself as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`),
with no container daemon.

The image is byte-reproducible: the layer tar has its entries sorted, mtime 0 (or SOURCE_DATE_EPOCH), uid/gid 0, no
user names, fixed modes (0755 folders, 0644 files), GNU headers (no pax timestamps); gzip writes mtime 0 and no file
name; config and manifest are canonical JSON (sorted keys, no spaces). Same storage folder, same image digest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...errors import UsageError

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ROOT = "models"  # KServe's modelcar convention: the model files at /models in the image
ARCHITECTURE = "amd64"  # the layer holds no binaries; the platform only names where the image may be pulled
GZIP_LEVEL = 6


@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    media_type: str
    path: Path

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    """An image written to an OCI layout: its manifest, config and one layer; `digest` is the manifest's."""

    layout: Path
    manifest: Blob
    config: Blob
    layer: Blob
    diff_id: str  # sha256 of the uncompressed layer tar

    @property
    def digest(self) -> str:
        return self.manifest.digest


class _Hashing:
    """A write-only stream that digests and counts what passes through to `out`."""

    def __init__(self, out: IO[bytes] | gzip.GzipFile):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def source_date_epoch() -> int:
    """The timestamp of every entry: SOURCE_DATE_EPOCH when set (reproducible-builds.org), else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "0").strip() or "0"
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds", "unset it or give an integer >= 0")
    return int(value)


def layer_entries(storage: Path) -> list[tuple[str, Path]]:
    """(name in the image, file) for the folder and everything under it, sorted by name; only folders and regular files
    (a symlink or a device in the storage folder is refused: the image must hold what the folder holds)."""
    entries = [(ROOT, storage)]
    for path in storage.rglob("*"):
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise UsageError(f"{path} is not a regular file or folder", "a model-car holds only plain files")
        entries.append((f"{ROOT}/{path.relative_to(storage).as_posix()}", path))
    return sorted(entries)


def _tar_info(name: str, path: Path, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o644, path.stat().st_size
    return info


def _write_layer(storage: Path, dest: Path) -> tuple[str, int, str]:
    """Write the gzipped layer tar to `dest`; (digest, size, diff_id)."""
    mtime = source_date_epoch()
    with open(dest, "wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=GZIP_LEVEL) as gz:
            plain = _Hashing(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]  # stream mode "w|" writes to any object with write()
                for name, path in layer_entries(storage):
                    info = _tar_info(name, path, mtime)
                    if info.isdir():
                        tar.addfile(info)
                    else:
                        with open(path, "rb") as fh:
                            tar.addfile(info, fh)
    return compressed.digest, compressed.size, plain.digest


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _put_blob(blobs: Path, data: bytes, media_type: str) -> Blob:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = blobs / digest.split(":", 1)[1]
    path.write_bytes(data)
    return Blob(digest, len(data), media_type, path)


def _config(diff_id: str, mtime: int) -> dict[str, Any]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    return {
        "architecture": ARCHITECTURE,
        "os": "linux",
        "created": created,
        "config": {"WorkingDir": f"/{ROOT}"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "pack: model files under /models"}],
    }


def build_image(storage: Path, layout: Path, tag: str, annotations: dict[str, str] | None = None) -> Image:
    """Write an OCI image layout at `layout` (a new folder) whose one layer holds `storage` under models/."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    staging = blobs / ".layer.tmp"
    digest, size, diff_id = _write_layer(storage, staging)
    layer_path = blobs / digest.split(":", 1)[1]
    os.replace(staging, layer_path)
    layer = Blob(digest, size, MEDIA_LAYER, layer_path)
    config = _put_blob(blobs, canonical(_config(diff_id, source_date_epoch())), MEDIA_CONFIG)
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    }
    if annotations:
        manifest_doc["annotations"] = dict(sorted(annotations.items()))
    manifest = _put_blob(blobs, canonical(manifest_doc), MEDIA_MANIFEST)
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{**manifest.descriptor(), "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }
    (layout / "index.json").write_bytes(canonical(index))
    (layout / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    return Image(layout, manifest, config, layer, diff_id)


__all__ = ["Blob", "Image", "MEDIA_MANIFEST", "ROOT", "build_image", "canonical", "layer_entries", "source_date_epoch"]

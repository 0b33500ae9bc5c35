"""A model-car: the runtime's storage layout under /models in an OCI image (KServe's modelcar convention, served from
`storageUri: oci://...`), written by pack itself as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`),
with no container daemon.

KServe starts the model-car as a sidecar running `sh -c "ln -s /proc/$$/root/models /mnt/ && sleep infinity"`, so the
image needs a shell: its first layer holds a statically linked BusyBox (the machine's own, Debian's busybox-static)
as /bin/busybox, with /bin/sh, /bin/ln and /bin/sleep linked to it; the second layer holds the models.

The image is byte-reproducible: the layer tar has its entries sorted, mtime 0 (or SOURCE_DATE_EPOCH), uid/gid 0, no
user names, fixed modes (0755 folders, 0644 files), GNU headers (no pax timestamps); gzip writes mtime 0 and no file
name; config and manifest are canonical JSON (sorted keys, no spaces). Same storage folder, same image digest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import shutil
import struct
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
ARCHITECTURES = {"x86_64": ("amd64", 0x3E), "amd64": ("amd64", 0x3E), "aarch64": ("arm64", 0xB7), "arm64": ("arm64", 0xB7)}
SHELL_LINKS = ("sh", "ln", "sleep")  # what KServe's model-car command runs
BUSYBOX_ENV = "PACK_BUSYBOX"  # a statically linked busybox to use instead of the one on PATH
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
    layers: tuple[Blob, ...]  # the shell, then the models
    diff_ids: tuple[str, ...]  # sha256 of each uncompressed layer tar

    @property
    def layer(self) -> Blob:
        """The layer holding the models."""
        return self.layers[-1]

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


def layer_entries(storage: Path) -> list[Entry]:
    """(name in the image, file) for the folder and everything under it, sorted by name; only folders and regular files
    (a symlink or a device in the storage folder is refused: the image must hold what the folder holds)."""
    entries: list[Entry] = [(ROOT, storage)]
    for path in storage.rglob("*"):
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise UsageError(f"{path} is not a regular file or folder", "a model-car holds only plain files")
        entries.append((f"{ROOT}/{path.relative_to(storage).as_posix()}", path))
    return sorted(entries)


def architecture() -> tuple[str, int]:
    """(the OCI name, the ELF e_machine) of this machine: the shell layer's binary runs here, so the image is for here."""
    machine = platform.machine().lower()
    if machine not in ARCHITECTURES:
        raise UsageError(f"no model-car for a {machine} machine", "build the model-car on x86_64 or aarch64")
    return ARCHITECTURES[machine]


def _static_elf(path: Path, machine: int) -> str | None:
    """Why `path` is not a statically linked 64-bit little-endian executable for `machine` (None when it is)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return "not a 64-bit little-endian ELF executable"
        if struct.unpack_from("<H", head, 18)[0] != machine:
            return "built for another architecture"
        phoff, phentsize, phnum = struct.unpack_from("<Q", head, 32)[0], *struct.unpack_from("<HH", head, 54)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    types = [struct.unpack_from("<I", table, i * phentsize)[0] for i in range(len(table) // max(phentsize, 1))]
    return "dynamically linked (it needs a loader the image does not have)" if 3 in types else None  # 3: PT_INTERP


def find_busybox() -> Path:
    """The statically linked busybox whose copy gives the image its shell: $PACK_BUSYBOX, else `busybox` on PATH."""
    given = os.environ.get(BUSYBOX_ENV)
    found = given or shutil.which("busybox")
    hint = f"install Debian's busybox-static (apt-get install busybox-static) or set {BUSYBOX_ENV}"
    if not found or not Path(found).is_file():
        raise UsageError("the model-car needs a statically linked busybox for its shell, and none was found", hint)
    why = _static_elf(Path(found), architecture()[1])
    if why:
        raise UsageError(f"{found} cannot be the model-car's shell: {why}", hint)
    return Path(found)


Entry = tuple[str, Path | str]  # (name in the image, a file or folder, or the target of a symbolic link)


def shell_entries(busybox: Path) -> list[Entry]:
    return [("bin", busybox.parent), ("bin/busybox", busybox)] + [(f"bin/{n}", "busybox") for n in SHELL_LINKS]


def _tar_info(name: str, source: Path | str, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if isinstance(source, str):
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, source
    elif source.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        executable = os.access(source, os.X_OK) and name.startswith("bin/")
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o755 if executable else 0o644, source.stat().st_size
    return info


def _write_layer(entries: list[Entry], dest: Path) -> tuple[str, int, str]:
    """Write the gzipped layer tar of `entries` to `dest`; (digest, size, diff_id)."""
    mtime = source_date_epoch()
    with open(dest, "wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=GZIP_LEVEL) as gz:
            plain = _Hashing(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]  # stream mode "w|" writes to any object with write()
                for name, source in entries:
                    info = _tar_info(name, source, mtime)
                    if not info.isreg():
                        tar.addfile(info)
                    else:
                        with open(source, "rb") as fh:
                            tar.addfile(info, fh)
    return compressed.digest, compressed.size, plain.digest


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _put_blob(blobs: Path, data: bytes, media_type: str) -> Blob:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = blobs / digest.split(":", 1)[1]
    path.write_bytes(data)
    return Blob(digest, len(data), media_type, path)


def _config(diff_ids: list[str], mtime: int) -> dict[str, Any]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    return {
        "architecture": architecture()[0],
        "os": "linux",
        "created": created,
        "config": {"Env": ["PATH=/bin"], "WorkingDir": f"/{ROOT}", "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": created, "created_by": "pack: a static busybox as /bin/sh, ln and sleep (KServe's model-car command)"},
            {"created": created, "created_by": "pack: model files under /models"},
        ],
    }


def _layer(blobs: Path, entries: list[Entry]) -> tuple[Blob, str]:
    staging = blobs / ".layer.tmp"
    digest, size, diff_id = _write_layer(entries, staging)
    path = blobs / digest.split(":", 1)[1]
    os.replace(staging, path)
    return Blob(digest, size, MEDIA_LAYER, path), diff_id


def build_image(storage: Path, layout: Path, tag: str, annotations: dict[str, str] | None = None) -> Image:
    """Write an OCI image layout at `layout` (a new folder): a shell layer, then `storage` under models/."""
    models = layer_entries(storage)  # refuses what a model-car must not hold before anything is written
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    shell, shell_id = _layer(blobs, shell_entries(find_busybox()))
    layer, diff_id = _layer(blobs, models)
    config = _put_blob(blobs, canonical(_config([shell_id, diff_id], source_date_epoch())), MEDIA_CONFIG)
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(),
        "layers": [shell.descriptor(), layer.descriptor()],
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
    return Image(layout, manifest, config, (shell, layer), (shell_id, diff_id))


__all__ = [
    "Blob",
    "Image",
    "MEDIA_MANIFEST",
    "ROOT",
    "build_image",
    "canonical",
    "find_busybox",
    "layer_entries",
    "shell_entries",
    "source_date_epoch",
]

"""Reading an OCI image layout without trusting it: the first, offline step of checking a model-car pulled from a
registry. Every blob a manifest names is read in bounded chunks and must have the digest and size its descriptor
gives; a name that is not `sha256:<64 hex>` is refused before any path is built from it (no traversal out of blobs/)."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import ValidationFailed

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_JSON = 4 << 20  # an index or a manifest is kilobytes
CHUNK = 1 << 20
ROOT = "models"  # where a model-car holds its files (modelcar.ROOT)
MAX_UNPACKED = 64 << 30  # a model layer unpacks to at most this many bytes


def blob_path(layout: Path, descriptor: Any) -> tuple[Path, int]:
    """(the file, the size) a descriptor names; ValidationFailed for a malformed digest or size."""
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    size = descriptor.get("size") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ValidationFailed(f"the image names a blob {digest!r} that is not a sha256 digest", "pull the image again")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValidationFailed(f"blob {digest} has no valid size ({size!r})", "pull the image again")
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1], size


def check_blob(layout: Path, descriptor: Any) -> Path:
    """The blob's file after its size and digest are checked against the descriptor (read at most size + 1 bytes)."""
    path, size = blob_path(layout, descriptor)
    digest = descriptor["digest"]
    if path.is_symlink() or not path.is_file():
        raise ValidationFailed(f"blob {digest} is missing from the image", "pull the image again")
    sha, seen = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while seen <= size:
            chunk = fh.read(min(CHUNK, size + 1 - seen))
            if not chunk:
                break
            sha.update(chunk)
            seen += len(chunk)
    if seen != size:
        raise ValidationFailed(
            f"blob {digest} is {'larger' if seen > size else 'smaller'} than its {size} bytes",
            "the image was altered: do not serve it",
        )
    if "sha256:" + sha.hexdigest() != digest:
        raise ValidationFailed(f"blob {digest} does not match its digest", "the image was altered: do not serve it")
    return path


def _json(path: Path, what: str) -> Any:
    with open(path, "rb") as fh:
        data = fh.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        raise ValidationFailed(f"{what} is over {MAX_JSON} bytes", "pull the image again")
    try:
        return json.loads(data)
    except ValueError:
        raise ValidationFailed(f"{what} is not JSON", "pull the image again") from None


def check_image(layout: Path, reference: str | None = None) -> dict[str, Any]:
    """The manifest of the image in `layout` (the one tagged `reference`, else the only one), after its own blob, its
    config and every layer are checked; ValidationFailed naming the first blob that fails."""
    index_file = layout / "index.json"
    if not index_file.is_file():
        raise ValidationFailed(f"{layout} is not an OCI image layout (no index.json)", "pull the image again")
    index = _json(index_file, "index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValidationFailed("index.json lists no image", "pull the image again")
    if reference is not None:
        entries = [
            e
            for e in entries
            if isinstance(e, dict) and (e.get("annotations") or {}).get("org.opencontainers.image.ref.name") == reference
        ]
    if len(entries) != 1:
        raise ValidationFailed(f"index.json has {len(entries)} images for {reference or 'the layout'}", "name one tag")
    manifest = _json(check_blob(layout, entries[0]), f"manifest {entries[0].get('digest')}")
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list) or "config" not in manifest:
        raise ValidationFailed("the image manifest has no config or layers", "pull the image again")
    for descriptor in [manifest["config"], *layers]:
        check_blob(layout, descriptor)
    return dict(manifest)


def _member_problem(member: tarfile.TarInfo) -> str | None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or "\\" in member.name:
        return "a path out of the image"
    if not (member.isreg() or member.isdir()):
        return "a link or a special file"
    if path.parts[:1] != (ROOT,):
        return f"a file outside /{ROOT}"
    return None


def unpack_models(layer: Path, dest: Path, limit: int = MAX_UNPACKED) -> list[Path]:
    """Unpack a checked model layer (gzipped tar) into `dest` (a new folder): every entry is judged before it is written
    (under models/ only, plain files and folders, no `..`, no absolute path, no duplicate, at most `limit` bytes in all);
    the files written, sorted. ValidationFailed naming the first entry refused."""
    dest.mkdir()
    written: list[Path] = []
    seen: set[str] = set()
    total = 0
    try:
        with tarfile.open(layer, mode="r|gz") as tar:
            for member in tar:
                problem = _member_problem(member)
                name = PurePosixPath(member.name).as_posix()
                if problem is None and name in seen:
                    problem = "a duplicate entry"
                total += member.size if member.isreg() else 0
                if problem is None and total > limit:
                    problem = f"over {limit} bytes unpacked in all"
                if problem:
                    raise ValidationFailed(f"the model layer holds {member.name!r}: {problem}", "do not serve this image")
                seen.add(name)
                target = dest.joinpath(*PurePosixPath(name).parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise ValidationFailed(f"the model layer's {member.name!r} has no data", "pull the image again")
                with open(target, "xb") as out:
                    while chunk := source.read(CHUNK):
                        out.write(chunk)
                written.append(target)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValidationFailed(f"the model layer is not a readable tar.gz ({exc})", "pull the image again") from None
    return sorted(written)


__all__ = ["blob_path", "check_blob", "check_image", "unpack_models"]

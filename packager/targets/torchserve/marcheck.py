"""Reading a TorchServe archive pack may not have written (`pack verify`, `pack inspect`, deploy's reuse of a build's
.mar): safe entry names, members read with a cap on their inflated size, MAR-INF/MANIFEST.json, model-config.yaml
(no YAML anchors or aliases) and pack.json checked for the structure pack writes, and every member against the sha256
digests pack.json records (archives pack wrote since it records them). Every malformed structure or replaced member is
a finding or ValidationFailed (exit 3) naming the member and the field, never an internal error."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

from ...archive import UnsafeArchive, open_archive
from ...errors import UsageError, ValidationFailed
from ...safeio import CORRUPT_MEMBER, load_json, load_yaml, read_member

MANIFEST = "MAR-INF/MANIFEST.json"
META = "pack.json"
DIGESTS = "members_sha256"  # what mar.py records in pack.json
MODEL_KEYS = ("modelName", "modelVersion", "serializedFile", "handler", "configFile")


def manifest_problems(manifest: Any) -> list[tuple[str, str]]:
    """(field, problem) for a MANIFEST.json that is not the structure TorchServe and pack read."""
    if not isinstance(manifest, dict):
        return [("(top level)", f"is a JSON {type(manifest).__name__}, not an object")]
    model = manifest.get("model")
    if not isinstance(model, dict):
        return [("model", f"is {type(model).__name__}, not an object")]
    problems = [
        (f"model.{key}", f"is {type(model[key]).__name__}, not a string")
        for key in MODEL_KEYS
        if not isinstance(model.get(key, ""), str)
    ]
    if not model.get("modelName"):
        problems.append(("model.modelName", "missing"))
    return problems


def read_valid_manifest(zf: zipfile.ZipFile, label: str) -> dict[str, Any]:
    """MANIFEST.json of an open archive, checked; ValidationFailed naming the member and field otherwise."""
    where = f"{label}!{MANIFEST}"
    manifest = load_json(read_member(zf, MANIFEST, where), where)
    problems = manifest_problems(manifest)
    if problems:
        field, problem = problems[0]
        raise ValidationFailed(f"{where}: {field} {problem}", "rewrite the archive with `pack archive --force`")
    return dict(manifest)


def read_config(zf: zipfile.ZipFile, manifest: dict[str, Any], label: str) -> dict[str, Any] | None:
    """model-config.yaml (the manifest's configFile) as a mapping, or None when the archive has none."""
    name = manifest["model"].get("configFile")
    if not name or name not in zf.namelist():
        return None
    where = f"{label}!{name}"
    config = load_yaml(read_member(zf, name, where), where)
    if config is not None and not isinstance(config, dict):
        raise ValidationFailed(f"{where}: is a YAML {type(config).__name__}, not a mapping", "rewrite the archive")
    return config


def read_meta(zf: zipfile.ZipFile, label: str) -> dict[str, Any] | None:
    """pack.json (the metadata pack's handlers read) as an object, or None when the archive has none."""
    if META not in zf.namelist():
        return None
    where = f"{label}!{META}"
    meta = load_json(read_member(zf, META, where), where)
    if not isinstance(meta, dict):
        raise ValidationFailed(f"{where}: is a JSON {type(meta).__name__}, not an object", "rewrite the archive")
    return meta


def check_mar(path: Path, label: str | None = None) -> list[tuple[str, str]]:
    """Structure of a TorchServe archive: safe entry names, CRCs, a manifest, model-config.yaml and pack.json of the
    structure pack writes, the files the manifest names present."""
    label = label or str(path)
    try:
        zf = open_archive(path)
    except UnsafeArchive as exc:
        return [(label, exc.message.split(": ", 1)[-1])]
    except UsageError as exc:
        return [(label, exc.message)]
    findings: list[tuple[str, str]] = []
    with zf:
        bad = _testzip(zf)
        if bad is not None:
            findings.append((f"{label}!{bad}", "damaged: its data does not inflate or its CRC differs (the archive is corrupt)"))
        names = set(zf.namelist())
        if MANIFEST not in names:
            return findings + [(label, f"no {MANIFEST} (not a TorchServe model archive)")]
        try:
            manifest = read_valid_manifest(zf, label)
            read_config(zf, manifest, label)
            meta = read_meta(zf, label)
        except ValidationFailed as exc:
            where, _, problem = exc.message.partition(": ")
            return findings + [(where, problem)]
        model = manifest["model"]
        for key in ("serializedFile", "handler", "configFile"):
            ref = model.get(key)
            if key == "handler" and ref:
                ref = ref.split(":")[0] if ref.split(":")[0].endswith(".py") else None  # else one TorchServe ships
            if ref and ref not in names:
                findings.append((label, f"manifest names {key} {ref!r}, which the archive lacks"))
        findings += _member_findings(zf, meta, label)
    return findings


def _recorded(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The member digests pack.json records (archives pack wrote before it recorded them have none)."""
    return meta.get(DIGESTS) if meta and DIGESTS in meta else None


def _member_findings(zf: zipfile.ZipFile, meta: dict[str, Any] | None, label: str) -> list[tuple[str, str]]:
    """Every member against the sha256 pack.json records: a replaced, added or removed member is a finding."""
    recorded = _recorded(meta)
    if recorded is None:
        return []
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        return [(f"{label}!{META}", f"{DIGESTS} is not an object of member names and sha256 digests")]
    names = {n for n in zf.namelist() if not n.endswith("/")}
    found = [
        (f"{label}!{name}", f"not among the members {META} records (added after pack wrote the archive)")
        for name in sorted(names - set(recorded) - {META})
    ]
    for name, digest in sorted(recorded.items()):
        if name not in names:
            found.append((f"{label}!{name}", f"recorded in {META} but missing"))
        elif _sha256(zf, name) != digest:
            why = f"sha256 differs from the one {META} records (replaced after pack wrote the archive)"
            found.append((f"{label}!{name}", why))
    return found


def _sha256(zf: zipfile.ZipFile, name: str) -> str:
    digest = hashlib.sha256()
    try:
        with zf.open(name) as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except CORRUPT_MEMBER as exc:
        return f"unreadable: {exc}"
    return digest.hexdigest()


def checked(path: Path) -> str:
    """What `check_mar` verifies of this archive, in the words `pack verify` prints."""
    try:
        with open_archive(path) as zf:
            recorded = _recorded(read_meta(zf, str(path)))
    except (UsageError, ValidationFailed, OSError, KeyError):
        recorded = None
    if isinstance(recorded, dict):
        return f"structure, and every member against the sha256 digests its {META} records (no build report to check against)"
    return "structure only: no report to check digests against"


def _testzip(zf: zipfile.ZipFile) -> str | None:
    """The first member whose data does not inflate or whose CRC is wrong (streaming: memory stays bounded)."""
    for info in zf.infolist():
        try:
            with zf.open(info) as fh:
                while fh.read(1 << 20):
                    pass
        except CORRUPT_MEMBER:
            return info.filename
    return None


def inspect_mar(path: Path) -> dict[str, Any]:
    import json

    with open_archive(path) as zf:
        names = zf.namelist()
        manifest = read_valid_manifest(zf, str(path)) if MANIFEST in names else None
        config = read_config(zf, manifest, str(path)) if manifest else None
        meta = read_meta(zf, str(path))
        entries = [
            {"name": i.filename, "bytes": i.file_size, "compressed": i.compress_size, "stored": i.compress_type == 0}
            for i in zf.infolist()
        ]
    doc = {"kind": "mar", "path": str(path), "manifest": manifest, "model_config": config, "metadata": meta, "entries": entries}
    model = (manifest or {}).get("model", {})
    lines = [
        f"archive {path} ({path.stat().st_size:,d} bytes)",
        f"  model {model.get('modelName')} version {model.get('modelVersion')}, handler {model.get('handler')}, "
        f"serialized {model.get('serializedFile')}",
        f"  model-config: {json.dumps(config, sort_keys=True, default=str) if config else 'none'}",
        "  entries:",
        *[f"    {e['bytes']:>12,d}  {'stored ' if e['stored'] else 'deflate'}  {e['name']}" for e in entries],
    ]
    doc["summary"] = "\n".join(lines)
    return doc


def read_manifest(path: Path) -> dict[str, Any] | None:
    """MANIFEST.json of an archive, or None when the file is not a readable .mar of the structure pack writes."""
    try:
        with open_archive(path) as zf:
            return read_valid_manifest(zf, str(path))
    except (UsageError, ValidationFailed, KeyError, OSError):
        return None


__all__ = ["MANIFEST", "check_mar", "checked", "inspect_mar", "manifest_problems", "read_manifest"]

"""`pack check-manifest FILE.yaml`: every document of a YAML file checked strictly against the KServe CRD schema of its
kind (schemas.py). The file is read without trusting it: a size cap, no YAML aliases (an alias bomb would expand),
safe loading only, at most safeio.MAX_DEPTH levels of nesting (composing and validating recurse)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ...errors import UsageError, ValidationFailed
from ...safeio import safe_loader
from .schemas import check

MAX_BYTES = 16 << 20  # a manifest is kilobytes; refuse to parse more than this


def _read(path: Path) -> str:
    if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
        raise UsageError(f"{path} is not a regular file", "pass a manifest file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", "pass a readable manifest file") from None
    if len(raw) > MAX_BYTES:
        raise ValidationFailed(f"{path} is over {MAX_BYTES >> 20} MiB", "a KServe manifest is a few kilobytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed(f"{path} is not UTF-8 text", "pass a YAML manifest") from None


def load_documents(path: Path) -> list[Any]:
    """The YAML documents of `path` (empty documents dropped); a one-line error when it is not YAML."""
    text = _read(path)
    try:
        aliases = [e for e in yaml.parse(text, Loader=yaml.SafeLoader) if isinstance(e, yaml.AliasEvent)]
        if aliases:  # refused before composing: an alias bomb would expand exponentially
            line = aliases[0].start_mark.line + 1 if aliases[0].start_mark else "?"
            raise ValidationFailed(f"{path} uses a YAML alias at line {line}", "write the manifest without anchors and aliases")
        docs = [d for d in yaml.load_all(text, Loader=safe_loader()) if d is not None]  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValidationFailed(f"{path} is not valid YAML{where}: {problem}", "fix the file's syntax") from None
    if not docs:
        raise ValidationFailed(f"{path} holds no YAML document", "pass an InferenceService or ServingRuntime manifest")
    return docs


def _name(doc: Any) -> str | None:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else None


def check_manifest(path: Path) -> dict[str, Any]:
    """The check of every document: `valid`, and per document its kind, name and problems (path, message)."""
    docs = load_documents(path)
    results: list[dict[str, Any]] = []
    for index, doc in enumerate(docs):
        problems = [{"path": p, "message": m} for p, m in check(doc)]
        kind = doc.get("kind") if isinstance(doc, dict) else None
        results.append({"index": index, "kind": kind, "name": _name(doc), "valid": not problems, "problems": problems})
    lines: list[str] = []
    for r in results:
        prefix = f"document {r['index'] + 1}: " if len(results) > 1 else ""
        lines.extend(f"{prefix}{p['path']}: {p['message']}" for p in r["problems"])
        if r["valid"]:
            lines.append(f"{prefix}{r['kind']} {r['name']}: valid (KServe CRD schema, strict)")
    return {
        "file": str(path),
        "valid": all(r["valid"] for r in results),
        "documents": results,
        "summary": "\n".join(lines),
    }


__all__ = ["MAX_BYTES", "check_manifest", "load_documents"]

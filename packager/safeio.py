"""Bounded readers for files pack did not necessarily write (an archive, a repository, a spec, a report, a manifest):
JSON and YAML with a size cap and a nesting cap (MAX_DEPTH: parsers, schema validators and printers recurse, and a
2 KB document nested a thousand deep would exhaust Python's stack), YAML without aliases or anchors (a 700-byte alias
bomb expands to hundreds of MB), zip members read with a cap on their inflated size, and plain files that are not
symbolic links. Every failure is the caller's PackError naming the file (ValidationFailed, exit 3, unless told
otherwise), never an internal error.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import PackError, ValidationFailed

# What reading a zip member raises when its bytes are damaged (a bad CRC, deflate data that does not inflate, a
# truncated member): one tuple for every reader of archives, so a damaged member is a finding, never a crash.
CORRUPT_MEMBER = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError)

MAX_TEXT = 16 * 1024 * 1024  # a manifest, a config, a spec, pack.json: pack writes a few KB
MAX_DEPTH = 64  # nested lists and mappings: pack's own documents use under 10, a KServe manifest under 20
CHUNK = 1 << 16
_PARSE_ERRORS = (ValueError, TypeError, RecursionError, OverflowError, UnicodeDecodeError)


def _refuse(error: type[PackError], where: str, problem: str) -> PackError:
    return error(f"{where}: {problem}", "regenerate it with pack, or fix it by hand")


def read_member(
    zf: zipfile.ZipFile, name: str, where: str, limit: int = MAX_TEXT, error: type[PackError] = ValidationFailed
) -> bytes:
    """The bytes of zip member `name`, refused (not read) once its inflated size passes `limit`, whatever its header
    claims: memory stays bounded by `limit` for a decompression bomb."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise _refuse(error, where, f"inflates to {info.file_size:,d} bytes (more than the {limit:,d} pack reads)")
    out = bytearray()
    try:
        with zf.open(info) as src:
            while block := src.read(CHUNK):
                out += block
                if len(out) > limit:
                    raise _refuse(error, where, f"inflates to more than the {limit:,d} bytes pack reads")
    except CORRUPT_MEMBER as exc:
        raise _refuse(error, where, f"unreadable in the archive ({str(exc)[:120]})") from None
    return bytes(out)


def read_file(path: Path, where: str | None = None, limit: int = MAX_TEXT, error: type[PackError] = ValidationFailed) -> bytes:
    """The bytes of a plain file (not a link) of at most `limit` bytes."""
    where = where or str(path)
    if path.is_symlink():
        raise _refuse(error, where, "is a symbolic link (pack does not follow links)")
    try:
        size = path.stat().st_size
        if size > limit:
            raise _refuse(error, where, f"is {size:,d} bytes (more than the {limit:,d} pack reads)")
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise _refuse(error, where, f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise _refuse(error, where, f"is more than the {limit:,d} bytes pack reads")
    return data


def utf8(data: bytes, where: str, error: type[PackError] = ValidationFailed) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(error, where, f"is not a text file (not UTF-8 at byte {exc.start})") from None


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests lists, tuples or mappings more than `limit` deep (a scalar is 0 deep); without recursion."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else None
        if children is None:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _nesting(limit: int = MAX_DEPTH) -> str:
    return f"is nested more than {limit} levels deep (pack reads no deeper document)"


def load_json(data: bytes | str, where: str, error: type[PackError] = ValidationFailed) -> Any:
    try:
        value = json.loads(data)
    except _PARSE_ERRORS as exc:
        raise _refuse(error, where, f"is not valid JSON ({str(exc)[:120]})") from None
    if too_deep(value):
        raise _refuse(error, where, _nesting())
    return value


@lru_cache(maxsize=1)
def safe_loader() -> type:
    """yaml's SafeLoader that refuses anchors and aliases (what pack reads never needs them, and an alias bomb expands
    a few hundred bytes into gigabytes) and any list or mapping nested more than MAX_DEPTH deep, before it recurses
    into it (yaml composes nodes recursively)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise yaml.composer.ComposerError(None, None, "YAML anchors and aliases are not accepted (&/*)", event.start_mark)
            nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
            if nested and self.depth >= MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"a document {_nesting()}", event.start_mark)
            self.depth += nested
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= nested

    return NoAliasLoader


def load_yaml(text: str | bytes, where: str, error: type[PackError] = ValidationFailed) -> Any:
    """One YAML document through a SafeLoader without anchors or aliases; the error names the line."""
    import yaml

    if isinstance(text, bytes):
        text = utf8(text, where, error)
    if len(text) > MAX_TEXT:
        raise _refuse(error, where, f"is more than the {MAX_TEXT:,d} bytes pack reads")
    try:
        return yaml.load(text, Loader=safe_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise _refuse(error, where, f"invalid YAML{at}: {str(problem)[:160]}") from None
    except _PARSE_ERRORS as exc:
        raise _refuse(error, where, f"invalid YAML ({type(exc).__name__}: {str(exc)[:120]})") from None


__all__ = ["MAX_DEPTH", "MAX_TEXT", "load_json", "load_yaml", "read_file", "read_member", "safe_loader", "too_deep", "utf8"]

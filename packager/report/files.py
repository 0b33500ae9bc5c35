"""What every writer of a build's records uses: values made JSON-safe, and a file's sha256 (and CRC-32) read in blocks."""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def plain(value: Any) -> Any:
    """JSON-safe: NaN/Inf become null (valid JSON), numpy scalars Python numbers, anything else its string."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # a numpy scalar (numpy is not imported here)
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _blocks(path: str | Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from iter(lambda: fh.read(1 << 20), b"")


def digests_file(path: str | Path) -> tuple[str, int]:
    """A file's sha256 and its CRC-32 (what a zip entry records), from one read."""
    digest, crc = hashlib.sha256(), 0
    for block in _blocks(path):
        digest.update(block)
        crc = zlib.crc32(block, crc)
    return digest.hexdigest(), crc


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    for block in _blocks(path):
        digest.update(block)
    return digest.hexdigest()


__all__ = ["digests_file", "plain", "sha256_file"]

"""Reading zip archives (.mar, TorchScript) without trusting their entry names.

Every entry is checked before anything is read: no absolute paths, no `..` components (either slash), no drive
letters, no symbolic links, no duplicate names. Nothing is ever extracted outside the destination folder.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from .errors import UsageError
from .safeio import CORRUPT_MEMBER


class UnsafeArchive(UsageError):
    """An archive entry would escape its folder (zip slip) or is a link."""


def name_problem(name: str) -> str | None:
    """Why an archive member's name is no path inside the archive's folder (absolute, a drive, `..`), or None."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    if ".." in parts:
        return f"path {name!r} leaves the archive's folder"
    return None


def entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    problem = name_problem(name)
    if problem:
        return problem
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        return f"symbolic link {name!r}"
    return None


def safe_infos(zf: zipfile.ZipFile, origin: str | Path) -> list[zipfile.ZipInfo]:
    """All entries, after checking each; raises UnsafeArchive naming the first bad one."""
    seen: set[str] = set()
    infos = zf.infolist()
    for info in infos:
        problem = entry_problem(info)
        if problem is None and info.filename in seen:
            problem = f"duplicate entry {info.filename!r}"
        if problem:
            raise UnsafeArchive(
                f"{origin}: unsafe archive entry: {problem}", "refusing to read it; rebuild the archive from a trusted build"
            )
        seen.add(info.filename)
    return infos


def open_archive(path: str | Path) -> zipfile.ZipFile:
    """Open a zip and check every entry name; raises UsageError for a file that is not a zip."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UsageError(f"{path} is not a zip archive (truncated or corrupt?)") from None
    except FileNotFoundError:
        raise UsageError(f"{path} not found") from None
    try:
        safe_infos(zf, path)
    except UnsafeArchive:
        zf.close()
        raise
    return zf


def extract_safe(path: str | Path, dest: str | Path) -> list[Path]:
    """Extract every entry under dest (checked first; resolved paths must stay inside dest)."""
    dest = Path(dest).resolve()
    out: list[Path] = []
    with open_archive(path) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if dest != target and dest not in target.parents:
                raise UnsafeArchive(f"{path}: entry {info.filename!r} resolves outside {dest}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            except CORRUPT_MEMBER as exc:
                raise UnsafeArchive(f"{path}: entry {info.filename!r} is damaged ({str(exc)[:120]})") from None
            out.append(target)
    return out

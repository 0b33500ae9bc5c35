"""Atomic installation of generated Triton repository entries (repository.py) into a model repository, and its undo.

Each entry is assembled beside its final place, from the staged version and the other versions already there, and
swapped in with two renames, so an entry is never half-written; with keep_backup the previous entry is kept aside
until the deploy commits (drop_backups) or rolls back (restore).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ...errors import UsageError
from ...report.store import StoreLock, link_or_copy
from . import config as cfg


class RepositoryLock(StoreLock):
    """An exclusive lock on a repository folder (`<repo>/.lock`) for installs into it: the store's one lock."""


def _same_tree(a: Path, b: Path) -> bool:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if fa != fb:
        return False
    for rel in fa:
        x, y = a / rel, b / rel
        if x.stat().st_size != y.stat().st_size:
            return False
        if not os.path.samefile(x, y) and x.read_bytes() != y.read_bytes():
            return False
    return True


def conflicts(staged: Path, repo: Path, names: list[str], version: str) -> list[str]:
    """Entries whose version folder already exists in `repo` with different content."""
    out = []
    for name in names:
        existing = repo / name / version
        if existing.exists():
            same = (
                _same_tree(staged / name / version, existing)
                and (repo / name / cfg.CONFIG_FILE).is_file()
                and ((repo / name / cfg.CONFIG_FILE).read_bytes() == (staged / name / cfg.CONFIG_FILE).read_bytes())
            )
            if not same:
                out.append(f"{name}/{version}")
    return out


def install(
    staged: Path, repo: Path, names: list[str], version: str, force: bool, keep_backup: bool = False
) -> dict[str, Path | None]:
    """Move staged entries into `repo`, keeping the other versions already there.

    Each entry is assembled beside its final place and swapped in with two renames, so an entry is never
    half-written. Returns {name: backup folder or None}; backups exist only with keep_backup (for rollback).
    """
    clash = conflicts(staged, repo, names, version)
    if clash and not force:
        raise UsageError(
            f"{repo} already has {', '.join(clash)} with different content",
            "pass --force to replace it, or build a new --version",
        )
    pid = os.getpid()
    prepared: dict[str, Path] = {}
    try:
        for name in names:
            prepared[name] = _assemble(staged, repo, name, version, repo / f".tmp-{name}-{pid}")
    except BaseException:
        for new in prepared.values():
            shutil.rmtree(new, ignore_errors=True)
        raise
    return {name: _swap(repo, name, new, repo / f".old-{name}-{pid}", keep_backup) for name, new in prepared.items()}


def _assemble(staged: Path, repo: Path, name: str, version: str, new: Path) -> Path:
    """The entry as it will be, in `new`: the other versions already in the repository, then the staged entry."""
    final = repo / name
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    if final.is_dir():
        for kept in cfg.version_folders(final):
            if kept != version:
                shutil.copytree(final / kept, new / kept, copy_function=link_or_copy)
    for child in (staged / name).iterdir():
        if child.is_dir():
            shutil.copytree(child, new / child.name, copy_function=link_or_copy)
        else:
            link_or_copy(child, new / child.name)
    return new


def _swap(repo: Path, name: str, new: Path, backup: Path, keep_backup: bool) -> Path | None:
    """Two renames put `new` in place of the entry; returns where the previous entry was kept (keep_backup) or None."""
    final = repo / name
    old = None
    if final.exists():
        old = backup
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(new, final)
    if old is not None and not keep_backup:
        shutil.rmtree(old, ignore_errors=True)
        old = None
    return old


def restore(repo: Path, backups: dict[str, Path | None]) -> None:
    """Undo install(): put the backed-up entries back, remove entries that did not exist before."""
    for name, old in backups.items():
        final = repo / name
        shutil.rmtree(final, ignore_errors=True)
        if old is not None and old.exists():
            os.rename(old, final)


def drop_backups(backups: dict[str, Path | None]) -> None:
    for old in backups.values():
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

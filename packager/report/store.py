"""The model store on disk: `<store>/<name>/<version>/`, written atomically under a per-model lock (StoreLock).

A build writes into a temporary folder beside its target and renames it into place only when everything passed; a
failed or interrupted build removes its temporary folder and never touches an existing version.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from pathlib import Path

from ..errors import EnvironmentProblem, PackError, UsageError
from .names import check_name, check_version, is_version

DEFAULT_STORE = "model_store"


def store_path(store: str | None) -> Path:
    return Path(store or os.environ.get("PACK_STORE") or DEFAULT_STORE)


def version_dir(store: str | Path, name: str, version: str) -> Path:
    return Path(store) / name / str(version)


def remove_leftovers(folder: Path, *prefixes: str) -> list[Path]:
    """Remove the temporary folders `<folder>/<prefix>...-<pid>` (a build's `.tmp-V-PID`, a deploy's `.staging-PID`,
    a tune's `tune-PID`) whose process is gone: what a killed pack left. Those of live processes are left alone."""
    removed = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        pid = entry.name.rsplit("-", 1)[-1]
        if entry.name.startswith(prefixes) and pid.isdigit() and not _pid_exists(int(pid)) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _pid_exists(pid: int) -> bool:
    """The process runs (a zombie, killed and not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: os.kill's answer stands
    return stat[stat.rfind(")") + 2 :][:1] != "Z"


def scratch_store(store: str | Path, kind: str) -> Path:
    """A fresh private folder `<store>/.scratch/<kind>-<pid>` for a command's own servers and files (pack tune's),
    where the next such command, `pack status` and `pack stop` find it when this pack was killed."""
    root = Path(store) / ".scratch"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{kind}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    return folder


def leftover_scratch(store: str | Path) -> list[Path]:
    """The scratch folders of a store whose pack is gone (killed): their servers are to be stopped, then removed."""
    root = Path(store) / ".scratch"
    entries = sorted(root.iterdir()) if root.is_dir() else []
    return [e for e in entries if e.name.rsplit("-", 1)[-1].isdigit() and not _pid_exists(int(e.name.rsplit("-", 1)[-1]))]


def drop_scratch(folder: Path) -> bool:
    """Remove a scratch folder once no server of it is recorded any more (a stopped server's state file is gone; a
    killed bench may have left servers of several targets, each stopped by its own `pack stop --target`), and the
    store's `.scratch/` when it is left empty. True when the folder went."""
    if any(folder.rglob("state.json")):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass  # another command's scratch folder is there
    return True


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Place a build's file elsewhere (a server's model folder, a repository, a storage layout): a hard link where
    both are on one filesystem, else a copy. Its parent folder is made when missing."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def os_error(exc: OSError, what: str) -> PackError:
    """Map a filesystem error to the one-line error the user sees."""
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return EnvironmentProblem(
            f"disk full while {what} ({exc.strerror})", "free space or use --store on another disk; nothing was kept"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOENT):
        return UsageError(
            f"cannot write {exc.filename or what}: {exc.strerror}", "choose a writable folder with --store or PACK_STORE"
        )
    return EnvironmentProblem(f"file error while {what}: {exc.strerror or exc} ({exc.filename or ''})")


def _flock(fd: int, wait: float) -> bool:
    """Take an exclusive flock on `fd`, trying for up to `wait` seconds; False when another process holds it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


class StoreLock:
    """The store's one lock: `with StoreLock(folder):` holds `<folder>/.lock` (flock) while pack writes into that folder
    (a build's model folder, `pack archive`, a Triton repository). A second writer is refused at once (exit 2), never
    queued, unless `wait` gives the seconds to wait for it (deploys into one store queue behind each other); the lock
    goes with the process, so a killed writer leaves nothing to clean up."""

    FILE = ".lock"

    def __init__(self, folder: str | Path, wait: float = 0.0):
        self.folder = Path(folder)
        self.path = self.folder / self.FILE
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> StoreLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise os_error(exc, f"creating {self.folder}") from exc
        if not _flock(fd, self.wait):
            os.close(fd)
            waited = f" for {self.wait:.0f} s" if self.wait else ""
            raise UsageError(
                f"another pack process is writing {self.folder} (lock {self.path}){waited}", "wait for it to finish and run again"
            )
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class AtomicVersion:
    """`with AtomicVersion(store, name, version, force) as tmp:` ... write into tmp ... `.commit()`."""

    def __init__(self, store: str | Path, name: str, version: str, force: bool = False):
        self.model_dir = Path(store) / name
        self.final = self.model_dir / str(version)
        self.force = force
        self.tmp = self.model_dir / f".tmp-{version}-{os.getpid()}"
        self._lock = StoreLock(self.model_dir)
        self.committed = False

    def check_free(self) -> None:
        if self.final.exists() and not self.force:
            raise UsageError(
                f"{self.final} already exists",
                "pass --force to replace it, or --version N for a new version",
            )

    def __enter__(self) -> Path:
        self._lock.__enter__()
        try:
            self.check_free()
            remove_leftovers(self.model_dir, ".tmp-", ".old-")  # of builds whose pack was killed
            shutil.rmtree(self.tmp, ignore_errors=True)
            try:
                self.tmp.mkdir()
            except OSError as exc:
                raise os_error(exc, f"creating {self.tmp}") from exc
        except BaseException:
            self._lock.release()
            raise
        return self.tmp

    def commit(self) -> Path:
        self.check_free()
        old = None
        if self.final.exists():
            old = self.model_dir / f".old-{self.final.name}-{os.getpid()}"
            os.rename(self.final, old)
        os.rename(self.tmp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(self.model_dir)
        self.committed = True
        return self.final

    def __exit__(self, *exc_info: object) -> None:
        if not self.committed:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self._lock.release()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def versions(store: str | Path, name: str) -> list[str]:
    folder = Path(store) / name
    if not folder.is_dir():
        return []
    return sorted(
        (p.name for p in folder.iterdir() if p.is_dir() and is_version(p.name) and (p / "report.json").is_file()), key=int
    )


def find_build(store: str | Path, name: str, version: str | None = None) -> Path:
    """The folder of build `name` at `version` (default: the highest version in the store)."""
    found = versions(store, check_name(name))
    if not found:
        raise UsageError(f"no build of {name!r} in {store}", f"run `pack build {name} --store {store}` first")
    if version is None:
        return Path(store) / name / found[-1]
    version = check_version(version)
    if version not in found:
        raise UsageError(f"{name!r} has no version {version} in {store} (versions: {', '.join(found)})")
    return Path(store) / name / str(version)

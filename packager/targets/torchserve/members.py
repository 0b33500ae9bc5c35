"""The files of a model archive in each form torch-model-archiver writes: a `.mar` (zip, the default or zip-store), a
`.tar.gz` (`--archive-format tgz`: the files under one folder named after the model) and a folder (`no-archive`).

Every form is read the same careful way: names are never trusted as paths (a member is read by name, never extracted
where its name points), only regular files are read (no links, devices or folders), and every read is bounded by
the bytes actually read, not by the sizes the archive's headers claim.
"""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from ...archive import name_problem, open_archive
from ...errors import ValidationFailed
from ...safeio import MAX_TEXT

MANIFEST = "MAR-INF/MANIFEST.json"
MAX_MODEL_BYTES = 16 * 1024**3  # a serialized model file: refused past this, whatever the headers say


def _safe(name: str) -> bool:
    """A member name that is a path inside the archive (archive.py's rule), with no Windows separator in it."""
    return bool(PurePosixPath(name).parts) and name_problem(name) is None and "\\" not in name


class Members:
    """An archive's regular files by name: `names`, `read` (a bounded document), `copy` (a bounded stream)."""

    def __init__(self, path: Path, names: list[str]):
        self.path = path
        self.names = names

    def _stream(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        raise NotImplementedError

    def _chunks(self, name: str, limit: int) -> Iterator[bytes]:
        total = 0
        with self._stream(name) as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                total += len(chunk)
                if total > limit:
                    raise ValidationFailed(f"{self.path}:{name} is larger than {limit} bytes", "check the archive")
                yield chunk

    def read(self, name: str, limit: int = MAX_TEXT) -> bytes:
        return b"".join(self._chunks(name, limit))

    def copy(self, name: str, dest: Path) -> None:
        with dest.open("wb") as out:
            for chunk in self._chunks(name, MAX_MODEL_BYTES):
                out.write(chunk)


class _Zip(Members):
    def __init__(self, path: Path, zf: zipfile.ZipFile):
        super().__init__(path, [i.filename for i in zf.infolist() if not i.is_dir() and _safe(i.filename)])
        self._zf = zf

    def _stream(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        return self._zf.open(name)


class _Tar(Members):
    def __init__(self, path: Path, tf: tarfile.TarFile):
        files = [m for m in tf.getmembers() if m.isreg() and _safe(m.name)]
        tops = {PurePosixPath(m.name).parts[0] for m in files}
        prefix = f"{tops.pop()}/" if len(tops) == 1 and all("/" in m.name for m in files) else ""  # the model's folder
        self._members = {m.name.removeprefix(prefix): m for m in files}
        super().__init__(path, list(self._members))
        self._tf = tf

    def _stream(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        stream = self._tf.extractfile(self._members[name])
        if stream is None:
            raise ValidationFailed(f"{self.path}:{name} is not a regular file", "check the archive")
        return stream


class _Folder(Members):
    def __init__(self, path: Path):
        self._files: dict[str, Path] = {}
        for item in sorted(path.rglob("*")):  # rglob does not follow links into folders; a linked file is left out
            if item.is_file() and not item.is_symlink():
                self._files[item.relative_to(path).as_posix()] = item
        super().__init__(path, list(self._files))

    def _stream(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        return self._files[name].open("rb")


def form(path: Path) -> str | None:
    """Which of torch-model-archiver's forms `path` is ("mar", "tgz", "folder"), or None."""
    if path.is_dir():
        return "folder" if (path / MANIFEST).is_file() else None
    if not path.is_file():
        return None
    if zipfile.is_zipfile(path):
        return "mar"
    if tarfile.is_tarfile(path):
        return "tgz"
    if path.suffix == ".mar":
        raise ValidationFailed(f"{path} is not a zip archive (truncated or corrupt?)", "make the .mar again")
    return None


@contextlib.contextmanager
def open_members(path: Path) -> Iterator[Members]:
    kind = form(path)
    if kind == "mar":
        with open_archive(path) as zf:
            yield _Zip(path, zf)
    elif kind == "tgz":
        try:
            with tarfile.open(path, "r:*") as tf:
                yield _Tar(path, tf)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ValidationFailed(f"{path} is a damaged tar archive ({exc})", "make the archive again") from None
    else:
        yield _Folder(path)


def digest(path: Path, members: Members) -> str:
    """The source's sha256: the file's bytes, or for a folder every file's name and bytes in name order."""
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    for name in sorted(members.names):
        h.update(name.encode() + b"\0")
        for chunk in members._chunks(name, MAX_MODEL_BYTES):
            h.update(chunk)
    return h.hexdigest()

"""Rolling out a rebuilt version on TorchServe: a registered version whose files changed since is replaced, never
reported deployed as it was.

TorchServe keeps one registration per model name and version. After `pack build --force` of a served version the
build's files differ from what the server loaded: the registered archive's pack.json records the sha256 of every member
(`members_sha256`), and the build's report.json the sha256 of its export. When they differ, `pack deploy`:

1. registers the new archive under a temporary name (`<name>-pack-next`, from `<name>.v<version>.next.mar`) beside the
   old version, which keeps serving, and smoke-tests it there;
2. switches: the old version is drained and unregistered (drain.py; a copy of its archive is kept), the new archive is
   registered under the real name and version and made the default;
3. unregisters the temporary name and removes the kept copy.

A failure before the switch leaves the old version serving untouched; a failure during the switch registers the kept
archive again (the old files serve again); both exit 4 and say so. TorchServe cannot unregister a default version
while other versions are registered, so that one case is refused before anything changes, naming what to do.
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import DeployFailed, ValidationFailed
from ...report.build_report import BuildReport, sha256_file
from ...serve.http import ApiError
from ...serve.worker import SIGNED
from .client import ManagementClient
from .config import ServingSettings
from .drain import drain_then
from .mar import MEMBER_DIGESTS, SERIALIZED
from .marcheck import read_meta

logger = logging.getLogger(__name__)

NEXT_SUFFIX = "-pack-next"


def registered_digest(archive: Path, member: str) -> str | None:
    """The sha256 the registered archive's pack.json records for `member`; None when it cannot be told (no archive in
    the model store, an archive pack did not write, or one from before pack recorded digests)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            meta = read_meta(zf, str(archive))
    except (OSError, zipfile.BadZipFile, ValidationFailed):  # unreadable: the smoke test still compares its answers
        return None
    digests = meta.get(MEMBER_DIGESTS) if meta else None
    found = digests.get(member) if isinstance(digests, dict) else None
    return found if isinstance(found, str) else None


def build_digest(build_dir: Path, report: BuildReport, served_file: str) -> str:
    """The sha256 of the build's served file: the one report.json records, else the file's own."""
    return report.sha256.get(served_file) or sha256_file(build_dir / served_file)


def changed(
    archive: Path, build_dir: Path, report: BuildReport, fmt: str, served_file: str, signature: Sequence[str] | None = None
) -> bool:
    """Whether the archive registered for this version packs another model file than the build, or (with
    `signature`: --require-signature) not the signature and key its handler must check it with (False when the
    archive cannot tell: the smoke test then compares the answers)."""
    registered = registered_digest(archive, SERIALIZED[fmt])
    if registered is None:
        return False
    if registered != build_digest(build_dir, report, served_file):
        return True
    pairs = zip(signature or (), SIGNED, strict=False)
    return any(registered_digest(archive, name) != sha256_file(Path(source)) for source, name in pairs)


def refuse_default_with_others(name: str, version: str, default: str | None, versions: list[str]) -> None:
    """TorchServe cannot unregister the default version while others are registered: refuse before anything changes."""
    others = [v for v in versions if v != version]
    if default != version or not others:
        return
    raise DeployFailed(
        f"{name} v{version} changed since it was registered, and TorchServe cannot replace it while it is the default "
        f"beside other versions ({', '.join(others)}); the registered v{version} keeps serving",
        f"make another version the default first (`pack deploy {name} --version {others[-1]} --target torchserve`), "
        f"then deploy v{version} again",
    )


def replacing_command(name: str, version: str) -> str:
    """The one command that replaces a registered version with its build's files where pack cannot tell they changed."""
    which = f"{name} --version {version} --target torchserve"
    return f"`pack undeploy {which} && pack deploy {which}`"


@dataclass
class Rollout:
    """One replacement of `name` v`version` in the server's model store `store`."""

    mgmt: ManagementClient
    store: Path
    name: str
    version: str
    settings: ServingSettings
    timeout: float
    drain_dir: Path | None
    was_default: bool
    old_gone: bool = False  # the old version was unregistered: an undo registers its kept archive again
    new_sent: bool = False  # the new archive's registration under the real name was sent

    @property
    def temp_name(self) -> str:
        return f"{self.name}{NEXT_SUFFIX}"

    @property
    def file_name(self) -> str:
        return f"{self.name}.v{self.version}.mar"

    @property
    def next_file(self) -> str:
        return f"{self.name}.v{self.version}.next.mar"

    @property
    def kept(self) -> Path:
        return self.store / f".{self.file_name}.previous"

    def clear_leftover(self) -> None:
        """A temporary registration that a killed rollout left is removed first."""
        if self.mgmt.versions(self.temp_name):
            logger.info(f"removing {self.temp_name}, left by an earlier rollout")
            self.mgmt.unregister(self.temp_name, self.version, timeout=self.timeout)

    def register(self, url: str, name: str) -> None:
        s = self.settings
        self.mgmt.register(url, name, s.batch_size, s.max_batch_delay_ms, s.min_workers, s.response_timeout_s, self.timeout)
        self.mgmt.scale(name, self.version, s.min_workers, self.timeout)

    def switch(self) -> None:
        """Replace the old registration with the smoke-tested archive under the real name, made the default."""
        self.kept.unlink(missing_ok=True)
        _link(self.store / self.file_name, self.kept)
        drain_then(self.mgmt, self.drain_dir, self.name, self.version, self.timeout)
        self.old_gone = True
        self._put(self.store / self.next_file)
        self.new_sent = True
        self.register(self.file_name, self.name)
        self.mgmt.set_default(self.name, self.version)
        self.old_gone = self.new_sent = False
        self.finish()

    def _put(self, source: Path) -> None:
        """`source` becomes the model store's archive of this version, atomically (a hard link: no copy)."""
        tmp = self.store / f".{self.file_name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        _link(source, tmp)
        os.replace(tmp, self.store / self.file_name)

    def finish(self, keep_previous: bool = False) -> None:
        """Drop the temporary registration and the files only the rollout needed (the old archive's copy unless it
        could not be registered again: then it is all that is left of the old version)."""
        try:
            self.mgmt.unregister(self.temp_name, self.version, timeout=self.timeout)
        except ApiError as exc:
            if exc.status != 404:
                logger.warning(f"could not unregister {self.temp_name}: {exc}")
        (self.store / self.next_file).unlink(missing_ok=True)
        if not keep_previous:
            self.kept.unlink(missing_ok=True)

    def undo(self) -> list[str]:
        """After a failure: the old version serves again; returns what could not be undone."""
        problems: list[str] = []
        if self.old_gone:
            try:
                self._restore()
            except (ApiError, OSError) as exc:
                problems.append(
                    f"could not register the previous {self.name} v{self.version} again ({exc}); its archive is kept "
                    f"as {self.kept}"
                )
        self.finish(keep_previous=bool(problems))
        return problems

    def _restore(self) -> None:
        if self.new_sent and any(str(d.get("modelVersion")) == self.version for d in self.mgmt.versions(self.name)):
            self.mgmt.unregister(self.name, self.version, timeout=self.timeout)  # the new one, half switched
        self._put(self.kept)  # the kept copy stays until the old version serves again
        self.register(self.file_name, self.name)
        if self.was_default:
            self.mgmt.set_default(self.name, self.version)
        self.old_gone = self.new_sent = False


def _link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, dest)

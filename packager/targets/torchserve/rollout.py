"""Whether a version already registered on TorchServe serves this build's files.

TorchServe keeps one registration per model name and version, so `pack deploy` of a version that is registered
already reuses it. After `pack build --force` of that version its files differ from what the server loaded: the
registered archive's pack.json records the sha256 of every member (`members_sha256`), and the build's report.json the
sha256 of its export. When they differ the deploy refuses before it touches the server (exit 4, the registered files
keep serving) and names the one command that replaces the version; it never reports the old files as deployed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ...errors import DeployFailed, ValidationFailed
from ...report.build_report import BuildReport, sha256_file
from .mar import MEMBER_DIGESTS, SERIALIZED
from .marcheck import read_meta


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


def refuse_if_changed(archive: Path, build_dir: Path, report: BuildReport, fmt: str, served_file: str) -> None:
    """Raise DeployFailed when the archive registered for this version packs another model file than the build."""
    registered = registered_digest(archive, SERIALIZED[fmt])
    if registered is None or registered == build_digest(build_dir, report, served_file):
        return
    name, version = report.name, report.version
    raise DeployFailed(
        f"{name} v{version} is registered on TorchServe with other files than this build ({served_file} changed since it "
        f"was registered); the registered v{version} keeps serving",
        f"replace it with {replacing_command(name, version)}",
    )


def replacing_command(name: str, version: str) -> str:
    """The one command that replaces a registered version with its build's files."""
    which = f"{name} --version {version} --target torchserve"
    return f"`pack undeploy {which} && pack deploy {which}`"

"""Signatures that stay true: what a build's own signature (`model.sig`) says about it without a key, the one rule
for a command that rewrites files of a build, and the signature check `pack deploy` makes before any target runs.

- `status(folder, report)`: `unsigned`, `covers` (the signature's statement lists every file with the digest it has
  now; who signed it is checked only with a key, `pack verify --signature`), `stale` (a file changed, was added or
  removed after signing), `broken` (not a signature pack can read) or `removed` (a command rewrote the build without
  a key and deleted its signature; report.json says which and when).
- `Rewrite`: every command that rewrites files of a build (`pack optimize`, `pack archive`, `pack tune`'s adopt)
  saves the report through it. The signature is deleted before the first file is replaced, so a command killed
  part-way leaves an unsigned build, never a stale signature; with the command's `--sign-key` the build is signed
  again after the report is written (inside the optimize's temporary copy: one atomic step), otherwise a warning
  line says the build is no longer signed and report.json records it (`signature`: removed, by, at, key_id).
- `deploy_check`: `pack deploy` warns on a stale, broken or removed signature and, with `--require-signature`,
  refuses (exit 3) a build whose signature does not verify with the given key.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SignatureFailed, UsageError
from .build_report import FILE as REPORT
from .provenance import SIGNATURE

if TYPE_CHECKING:
    from .build_report import BuildReport
    from .signing import SigningKey

logger = logging.getLogger(__name__)
RESIGN = "sign it again (pack sign BUILD --key KEY.pem, or --sign-key on the command that rewrites it)"


@dataclass
class SignatureStatus:
    state: str  # unsigned | covers | stale | broken | removed
    words: str  # what pack says about it, one line
    problems: list[tuple[str, str]] = field(default_factory=list)  # stale or broken: (path, problem)

    @property
    def suspect(self) -> bool:
        """A signature that was there and no longer vouches for the build: deploy warns, verify says so."""
        return self.state in ("stale", "broken", "removed")

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"state": self.state, "words": self.words}
        if self.problems:
            doc["problems"] = [{"path": p, "problem": why} for p, why in self.problems]
        return doc


def status(folder: Path, report: BuildReport, hash_files: bool = True) -> SignatureStatus:
    """The build's own signature, checked without a key against what the report records and, with `hash_files`,
    against every file of the folder (deploy, whose files were just checked against the report, passes False)."""
    from .signing import coverage

    sig = folder / SIGNATURE
    if not sig.exists() and not sig.is_symlink():
        record = report.signature
        if record.get("status") == "removed":
            key = f" (key {record['key_id'][:16]})" if record.get("key_id") else ""
            return SignatureStatus(
                "removed", f"unsigned: its signature{key} was removed when `{record['by']}` rewrote the build at {record['at']}"
            )
        return SignatureStatus("unsigned", "unsigned")
    problems = coverage(folder, report.sha256, REPORT, hash_files)
    if not problems:
        return SignatureStatus("covers", f"{SIGNATURE} lists every file with its current digest")
    if len(problems) == 1 and problems[0][0] == str(sig):
        return SignatureStatus("broken", f"{SIGNATURE} {problems[0][1]}", problems)
    path, why = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    rel = Path(path).relative_to(folder).as_posix() if Path(path).is_relative_to(folder) else path
    return SignatureStatus("stale", f"{SIGNATURE} does not cover the build: {rel}: {why}{more}", problems)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Rewrite:
    """The one rule for a command that rewrites files of a build: `drop` the signature before the first file is
    replaced, `save` the report through it (it records what becomes of the signature), and `seal` the folder once the
    command's temporary files are gone (it signs with the key, or warns)."""

    command: str  # "pack optimize", what report.json and the warning name
    key: SigningKey | None = None
    dropped: bool = False
    was_signed: dict[str, Any] | None = None  # what `drop` found: the old signature's key id
    outcome: dict[str, Any] = field(default_factory=lambda: {"status": "unsigned"})

    def drop(self, folder: Path) -> None:
        """Under the model's lock, after the build was checked and before any file of it is replaced: delete
        model.sig (it will not cover what follows). Idempotent."""
        from .signing import signer_hint

        sig = folder / SIGNATURE
        if not self.dropped and (sig.exists() or sig.is_symlink()):
            hint = None if sig.is_symlink() else signer_hint(sig)
            self.was_signed = {"key_id": hint} if hint else {}
            sig.unlink()
        self.dropped = True

    def save(self, folder: Path, report: BuildReport, rewritten: list[str] | None = None) -> None:
        """Record what will become of the signature and save the report (BuildReport.save); `seal` then signs."""
        self.drop(folder)
        if self.key is not None:
            state = "re-signed" if self.was_signed is not None else "signed"
            report.signature = {"status": state, "by": self.command, "at": _now(), "key_id": self.key.key_id}
            report.signature["method"] = self.key.method
        elif self.was_signed is not None:
            report.signature = {"status": "removed", "by": self.command, "at": _now(), **self.was_signed}
        report.save(folder, rewritten)

    def seal(self, folder: Path) -> None:
        """Once the command's own temporary files are gone from the folder, still under the model's lock: sign it with
        the key, or say loudly that the build is no longer signed."""
        from .signing import sign_folder

        if self.key is not None:
            status = "re-signed" if self.was_signed is not None else "signed"
            signed = sign_folder(folder, self.key)
            self.outcome = {"status": status, **signed, "signature": SIGNATURE}
            logger.info(f"{status} the build with key {self.key.key_id[:16]} ({signed['files']} files)")
        elif self.was_signed is not None:
            words = f"the build was signed; `{self.command}` rewrote it without --sign-key, so its signature was removed"
            self.outcome = {"status": "removed", "warning": f"{words}; {RESIGN}"}
            logger.warning(f"{words}; {RESIGN}")


_CURRENT: ContextVar[Rewrite | None] = ContextVar("pack_rewrite", default=None)


@contextlib.contextmanager
def rewriting(command: str, sign_key: str | None) -> Iterator[Rewrite]:
    """Around a command that rewrites a build: its `--sign-key` read and checked now (exit 2 before any work), and
    the rule every rewrite inside it uses (`current`)."""
    from .signing import load_signing_key

    rule = Rewrite(command, load_signing_key(sign_key) if sign_key else None)
    token = _CURRENT.set(rule)
    try:
        yield rule
    finally:
        _CURRENT.reset(token)


def current(command: str) -> Rewrite:
    """The running command's rule, or one without a key (pack used as a library)."""
    return _CURRENT.get() or Rewrite(command)


def deploy_check(folder: Path, report: BuildReport, require: bool, public_key: str | None, chain: Sequence[str]) -> None:
    """Before any target runs: with `require`, the build's own signature must verify with the key (exit 3 otherwise);
    without, a stale, broken or removed signature is a warning line. The build's files were checked against its report
    just before (report.integrity.intact_build)."""
    if not require:
        if public_key or chain:
            raise UsageError("--public-key and --certificate-chain go with --require-signature", "add --require-signature")
        found = status(folder, report, hash_files=False)
        if found.suspect:
            logger.warning(f"{found.words}; deploying anyway (--require-signature refuses such a build)")
        return
    from .signing import verify_signature

    problems, _ = verify_signature(folder, None, public_key, chain)
    if problems:
        path, why = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SignatureFailed(
            f"will not deploy {folder}: --require-signature: {path}: {why}{more}",
            "deploy a build signed with that key (pack sign BUILD --key KEY.pem signs a verified build)",
        )


__all__ = ["Rewrite", "SignatureStatus", "current", "deploy_check", "rewriting", "status"]

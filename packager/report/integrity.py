"""Whether a build folder still matches its report: every file report.json lists, with its digest, and no link.

`require_intact` runs before a build is handed to a serving target (`intact_build`: the CLI's serving commands, bench
and tune), and again under the store lock by a command that rewrites a build's files from what it reads (`pack
archive`, `pack tune` writing its settings). `pack verify` reports the same findings and more
(packager/cli/verify.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ValidationFailed
from .build_report import FILE as REPORT
from .build_report import BuildReport, sha256_file


@dataclass
class Finding:
    path: str
    problem: str

    def line(self) -> str:
        return f"{self.path}: {self.problem}"


def _inside(folder: Path, rel: str) -> bool:
    p = PurePosixPath(rel)
    return not p.is_absolute() and ".." not in p.parts


def digest_findings(folder: Path, listed: dict[str, str]) -> list[Finding]:
    """Every file the report lists: inside the folder, a plain file, with the recorded digest."""
    findings: list[Finding] = []
    for rel, digest in sorted(listed.items()):
        if not _inside(folder, rel):
            findings.append(Finding(rel, "the report names a path outside the build folder"))
            continue
        path = folder / rel
        if path.is_symlink():
            findings.append(Finding(str(path), "is a symbolic link"))
        elif not path.is_file():
            findings.append(Finding(str(path), "sample missing" if rel.startswith("samples/") else "missing"))
        elif sha256_file(path) != digest:
            findings.append(
                Finding(str(path), f"sha256 differs from the report ({sha256_file(path)[:12]}... != {digest[:12]}...)")
            )
    return findings


def link_findings(folder: Path) -> list[Finding]:
    """Every symbolic link in the build, to a file or a folder: a build holds its own files, pack follows no link."""
    return [
        Finding(str(p), "is a symbolic link (pack never follows links in a build)")
        for p in sorted(folder.rglob("*"))
        if p.is_symlink()
    ]


def require_intact(folder: Path, report: BuildReport, skip: set[str] | None = None) -> None:
    """Raise ValidationFailed (exit 3) naming the first file of the build that does not match report.json (a changed
    digest, a missing file or sample, a link), before a command hands the build to a target: nothing unverified is
    served or packed. The same checks as `pack verify` (its digest and link findings). `skip` names recorded files
    the command does not read (`pack archive` packing the ONNX export skips the TorchScript and
    pt2 files and the other targets' copies): they are not hashed, so packing 100 MB does not read 300 MB more."""
    listed = {rel: d for rel, d in report.sha256.items() if not skip or rel not in skip}
    findings = digest_findings(folder, listed) + link_findings(folder)
    findings += [
        Finding(str(folder / rel), f"the {fmt} export has no digest in the report")
        for fmt, rel in report.artifacts.items()
        if rel not in report.sha256 and not (skip and rel in skip)
    ]
    if not report.sha256:
        findings.insert(0, Finding(str(folder / REPORT), "lists no sha256 digests"))
    if findings:
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise ValidationFailed(
            f"{findings[0].line()}{more}",
            f"the build changed after `pack build`: see `pack verify {folder}`, then rebuild it (pack build ... --force)",
        )


def intact_build(store: str | Path, model: str, version: str | None) -> tuple[Path, BuildReport]:
    """The build of `model` at `version` (default: the latest) in `store` and its report, checked against the report's
    digests: the one way a serving command, bench or tune takes a build before it calls a target."""
    from .store import find_build

    folder = find_build(store, model, version)
    report = BuildReport.load(folder)
    require_intact(folder, report)  # nothing unverified reaches a server, an archive or a repository
    return folder, report


__all__ = ["Finding", "digest_findings", "intact_build", "link_findings", "require_intact"]

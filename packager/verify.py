"""`pack verify`: recompute digests against the report, check archive structure, optionally re-run the samples.

Works on a build folder (its report.json), a single `.mar`, or a Triton model repository. Every difference is a
`Finding` naming the file; any finding makes the command exit 3.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .archive import UnsafeArchive, open_archive
from .errors import UsageError

Log = Callable[[str], None]
REPORT = "report.json"


@dataclass
class Finding:
    path: str
    problem: str

    def line(self) -> str:
        return f"{self.path}: {self.problem}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def kind_of(target: Path) -> str:
    if target.is_file():
        return "mar" if target.suffix == ".mar" or zipfile.is_zipfile(target) else "file"
    if (target / REPORT).is_file():
        return "build"
    if target.is_dir() and any((p / "config.pbtxt").is_file() for p in target.iterdir() if p.is_dir()):
        return "repository"
    if not target.exists():
        raise UsageError(f"{target} does not exist")
    raise UsageError(f"{target} is neither a build folder (no report.json), a .mar, nor a Triton repository")


def check_mar(path: Path, label: str | None = None) -> list[Finding]:
    """Structure of a TorchServe archive: safe entry names, CRCs, a manifest whose files are present."""
    label = label or str(path)
    try:
        zf = open_archive(path)
    except UnsafeArchive as exc:
        return [Finding(label, exc.message.split(": ", 1)[-1])]
    except UsageError as exc:
        return [Finding(label, exc.message)]
    findings: list[Finding] = []
    with zf:
        bad = zf.testzip()
        if bad is not None:
            findings.append(Finding(f"{label}!{bad}", "CRC mismatch (the archive is corrupt)"))
        names = set(zf.namelist())
        if "MAR-INF/MANIFEST.json" not in names:
            return findings + [Finding(label, "no MAR-INF/MANIFEST.json (not a TorchServe model archive)")]
        try:
            manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        except (ValueError, zipfile.BadZipFile) as exc:
            return findings + [Finding(f"{label}!MAR-INF/MANIFEST.json", f"unreadable ({exc})")]
        model = manifest.get("model", {})
        for key in ("serializedFile", "handler", "configFile"):
            ref = model.get(key)
            if ref and ref not in names:
                findings.append(Finding(label, f"manifest names {key} {ref!r}, which the archive lacks"))
        if not model.get("modelName"):
            findings.append(Finding(label, "manifest has no model.modelName"))
    return findings


def _inside(folder: Path, rel: str) -> bool:
    p = PurePosixPath(rel)
    return not p.is_absolute() and ".." not in p.parts


def check_build(folder: Path) -> tuple[list[Finding], dict[str, Any]]:
    try:
        report = json.loads((folder / REPORT).read_text())
    except ValueError as exc:
        return [Finding(str(folder / REPORT), f"not valid JSON ({exc})")], {}
    findings: list[Finding] = []
    listed = report.get("sha256") or {}
    if not listed:
        findings.append(Finding(str(folder / REPORT), "lists no sha256 digests"))
    for rel, digest in sorted(listed.items()):
        if not _inside(folder, rel):
            findings.append(Finding(rel, "the report names a path outside the build folder"))
            continue
        path = folder / rel
        if path.is_symlink():
            findings.append(Finding(str(path), "is a symbolic link"))
        elif not path.is_file():
            findings.append(Finding(str(path), "missing"))
        elif _sha256(path) != digest:
            findings.append(Finding(str(path), f"sha256 differs from the report ({_sha256(path)[:12]}... != {digest[:12]}...)"))
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != REPORT and rel not in listed:
            findings.append(Finding(str(path), "not listed in the report"))
    for rel, kind in (report.get("artifacts") or {}).items():
        if not (folder / kind).is_file():
            findings.append(Finding(str(folder / kind), f"the {rel} artifact is missing"))
    for mar in sorted(folder.rglob("*.mar")):
        findings += check_mar(mar)
    return findings, report


def check_parity(folder: Path, report: dict[str, Any], log: Log) -> tuple[list[Finding], dict[str, Any]]:
    """Re-run the recorded sample inputs through every artifact and compare with the recorded eager outputs, with
    the build gate's own comparison (packager/samples.py)."""
    from .export import runner_for
    from .samples import load_sample

    sample = load_sample(folder, report)
    findings: list[Finding] = []
    summary: dict[str, Any] = {}
    for fmt, rel in (report.get("artifacts") or {}).items():
        log(f"re-running the samples through {fmt}")
        try:
            runner = runner_for(fmt, folder / rel, "cpu")
        except Exception as exc:  # a file that does not load is a finding
            findings.append(Finding(str(folder / rel), f"does not load as {fmt}: {type(exc).__name__}: {str(exc).strip()[:160]}"))
            continue
        checks = sample.check(runner)
        summary[fmt] = {"passed": all(c.passed for c in checks), "max_abs_error": max(c.max_abs_error for c in checks)}
        for c in checks:
            if not c.passed:
                findings.append(Finding(str(folder / rel), f"output {c.output!r}: {c.reason}"))
    return findings, summary


def verify(target: Path, parity: bool, log: Log) -> dict[str, Any]:
    kind = kind_of(target)
    result: dict[str, Any] = {"target": str(target), "kind": kind}
    if kind == "build":
        findings, report = check_build(target)
        result["files_checked"] = len(report.get("sha256", {}))
        if parity and report and not findings:
            parity_findings, result["parity"] = check_parity(target, report, log)
            findings += parity_findings
        elif parity:
            result["parity"] = "skipped: the files do not match the report"
    elif kind in ("mar", "file"):
        findings = check_mar(target)
        if parity:
            raise UsageError("--parity needs a build folder (with report.json and samples)", f"run pack verify on the build folder holding {target.name}")
    else:
        from .targets.triton.check import check_repository

        checked = check_repository(target)
        findings = [Finding(str(target / p["model"]), p["message"]) for p in checked["problems"] if p["severity"] == "error"]
        result["models"] = checked["models"]
    result["passed"] = not findings
    result["findings"] = [{"path": f.path, "problem": f.problem} for f in findings]
    return result

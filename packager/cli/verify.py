"""`pack verify`: recompute digests against the report, check archive structure, optionally re-run the samples.

Works on a build folder (its report.json), or on one artifact of a serving target (a `.mar`, a Triton model
repository), whose own target checks what it can without the build's report (`Target.checked` says what: its
structure, and for pack's own archives its members against the digests the archive records). Every difference is a
`Finding` naming the file; any finding makes the command exit 3. A build's own signature is checked without a key
too (packager/report/trust.py): a stale or broken one is a finding. A stand-alone artifact with no finding is `verified:
false` (exit 6 in the CLI): nothing tied it to a build's report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, ValidationFailed
from ..report import provenance, trust
from ..report.build_report import FILE as REPORT
from ..report.integrity import Finding, digest_findings, link_findings

if TYPE_CHECKING:
    from ..report.build_report import BuildReport
    from ..targets import Target

logger = logging.getLogger(__name__)


def owner_of(target: Path) -> Target | None:
    """The serving target whose artifact `target` is (a .mar: TorchServe; a model repository: Triton), or None."""
    from ..targets import all_targets

    return next((t for t in all_targets() if t.artifact and t.owns(target)), None)


def kind_of(target: Path, any_folder: bool = False) -> str:
    """`build` (a folder with report.json), or the kind of target artifact it is (`mar`, `repository`); with
    `any_folder` (a signature check), any other folder is a `folder` (a KServe storage folder pack signed)."""
    if not target.exists():
        raise UsageError(f"{target} does not exist")
    if target.is_dir() and (target / REPORT).is_file():
        return "build"
    if any_folder and target.is_dir() and owner_of(target) is None:
        return "folder"
    return str(owner(target).artifact)


def owner(target: Path) -> Target:
    """The serving target whose artifact `target` is; UsageError when no target owns it."""
    found = owner_of(target)
    if found is None:
        raise UsageError(
            f"{target} is neither a build folder (no report.json) "
            "nor an artifact of a serving target (a .mar, a Triton repository)"
        )
    return found


def _target_findings(path: Path, by: Target) -> list[Finding]:
    return [Finding(p, problem) for p, problem in by.verify(path)]


def check_build(folder: Path) -> tuple[list[Finding], BuildReport | None]:
    """Findings of a build folder against its report.json, and the report (None when it does not load)."""
    from ..report.build_report import BuildReport

    try:
        report = BuildReport.load(folder)
    except ValidationFailed as exc:
        return [Finding(str(folder / REPORT), exc.message.split(": ", 1)[-1])], None
    listed = report.sha256
    findings: list[Finding] = []
    if not listed:
        findings.append(Finding(str(folder / REPORT), "lists no sha256 digests"))
    findings += digest_findings(folder, listed)
    findings += link_findings(folder)
    findings += _unlisted_findings(folder, listed)
    findings += [Finding(p, problem) for p, problem in provenance.findings(folder, report.to_dict())]
    for fmt, rel in report.artifacts.items():
        if not (folder / rel).is_file():
            findings.append(Finding(str(folder / rel), f"the {fmt} artifact is missing"))
    for mar in sorted(folder.rglob("*.mar")):  # archives inside the build get their own structural checks
        by = owner_of(mar)
        if by is not None:  # a folder or other non-archive named *.mar: no target's artifact to check
            findings += _target_findings(mar, by)
    return findings, report


def _unlisted_findings(folder: Path, listed: dict[str, str]) -> list[Finding]:
    """Files in the folder that the report does not list."""
    findings: list[Finding] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not path.is_symlink() and rel not in (REPORT, provenance.SIGNATURE) and rel not in listed:
            findings.append(Finding(str(path), "not listed in the report"))
    return findings


def check_parity(folder: Path, report: BuildReport) -> tuple[list[Finding], dict[str, Any]]:
    """Re-run the recorded sample inputs through every artifact and compare with the recorded eager outputs, with
    the build gate's own comparison (packager/report/samples.py)."""
    from dataclasses import replace

    from ..export import runner_for
    from ..report.samples import load_sample, variant_tolerances

    sample = load_sample(folder, report)
    findings: list[Finding] = []
    summary: dict[str, Any] = {}
    runs = [(fmt, fmt, rel, sample) for fmt, rel in report.artifacts.items()]
    for record in report.variants.get("results", []):  # each variant kept in the build, within its own tolerances
        if record.get("file"):
            tolerances = variant_tolerances(record, len(sample.tolerances)) or sample.tolerances
            runs.append((f"variant {record['kind']}", "onnx", record["file"], replace(sample, tolerances=tolerances)))
    for label, fmt, rel, sample in runs:
        logger.debug(f"re-running the samples through {label}")
        try:
            runner = runner_for(fmt, folder / rel, "cpu")
        except Exception as exc:  # a file that does not load is a finding
            findings.append(Finding(str(folder / rel), f"does not load as {fmt}: {type(exc).__name__}: {str(exc).strip()[:160]}"))
            continue
        checks = sample.check(runner)
        summary[label] = {"passed": all(c.passed for c in checks), "max_abs_error": max(c.max_abs_error for c in checks)}
        for c in checks:
            if not c.passed:
                findings.append(Finding(str(folder / rel), f"output {c.output!r}: {c.reason}"))
    return findings, summary


@dataclass
class SignatureCheck:
    """`pack verify --signature [PATH] --public-key PEM | --certificate-chain PEM`: what to check the build against."""

    path: Path | None  # None: the build's own model.sig
    public_key: str | None
    chain: tuple[str, ...] = ()


def verify(target: Path, parity: bool, signature: SignatureCheck | None = None) -> dict[str, Any]:
    kind = kind_of(target, any_folder=signature is not None)
    result: dict[str, Any] = {"target": str(target), "kind": kind}
    if signature is not None and not target.is_dir():
        raise UsageError("--signature needs a folder (a build, a KServe storage folder)", f"not the file {target.name}")
    findings: list[Finding] = []
    if signature is not None:  # first: when a signature is asked for, it is the statement that counts
        from ..report.signing import verify_signature

        found, result["signature"] = verify_signature(target, signature.path, signature.public_key, signature.chain)
        findings += [Finding(p, problem) for p, problem in found]
    if kind == "build":
        build_findings, report = check_build(target)
        findings += build_findings
        # files that match the report need no second hashing: the signature is compared with the report's digests
        state = trust.status(target, report, hash_files=bool(build_findings)) if report else None
        result["signature_status"] = state.to_dict() if state else None
        result["signed"] = state is not None and state.state == "covers" and not findings
        if state and state.state in ("stale", "broken") and not (signature and signature.path is None):
            findings.append(Finding(str(target / provenance.SIGNATURE), f"{state.words}; {trust.RESIGN} or delete it"))
        result["files_checked"] = len(report.sha256) if report else 0
        result["checked"] = "every file against the digests report.json records"
        if parity and report and not findings:
            parity_findings, result["parity"] = check_parity(target, report)
            findings += parity_findings
        elif parity:
            result["parity"] = "skipped: the files do not match the report"
    else:
        if parity:
            raise UsageError(
                "--parity needs a build folder (with report.json and samples)",
                f"run pack verify on the build folder holding {target.name}",
            )
        result["checked"] = "every file against the signature"
        if kind != "folder":
            by = owner(target)
            findings += _target_findings(target, by)
            result["checked"] = by.checked(target)
    signed = bool(result.get("signature", {}).get("verified"))  # a signature that verified with the key vouches too
    if signed and kind not in ("build", "folder"):
        result["checked"] = "every file against the signature, and the structure"
    result["passed"] = not findings
    result["verified"] = not findings and (kind == "build" or signed)
    result["findings"] = [{"path": f.path, "problem": f.problem} for f in findings]
    return result

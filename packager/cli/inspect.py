"""`pack inspect`: a readable summary of a build folder (and the same as JSON); a target's artifact (a `.mar`, a Triton
repository) is summarised by the target that owns it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..report.provenance import FILE as PROVENANCE
from ..report.provenance import SIGNATURE
from ..report.trust import status
from .verify import kind_of, owner


def _io(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i['name']} {i.get('dtype', '?')} {i.get('shape', '?')}" for i in items)


def inspect_build(folder: Path) -> dict[str, Any]:
    from ..report.build_report import BuildReport

    report = BuildReport.load(folder)
    signature = status(folder, report, hash_files=False)
    plain = report.to_dict()
    files = {rel: (folder / rel).stat().st_size for rel in report.sha256 if (folder / rel).is_file()}
    doc = {
        "kind": "build",
        "path": str(folder),
        "name": report.name,
        "version": report.version,
        "task": report.task,
        "source": report.source,
        "weights": report.weights,
        "inputs": plain["inputs"],
        "outputs": plain["outputs"],
        "formats": plain["formats"],
        "validation": {k: {"passed": v["passed"], "max_abs_error": v.get("max_abs_error")} for k, v in report.validation.items()},
        "targets": report.targets,
        "files": files,
        "warnings": report.warnings,
        "provenance": PROVENANCE if PROVENANCE in report.sha256 else None,
        "signed": signature.state == "covers",  # lists the digests the report records (pack verify checks the files)
        "signature_status": signature.to_dict(),
    }
    words = signature.words  # unsigned, or what is wrong with the signature
    lines = [
        f"build {doc['name']} version {doc['version']} ({doc['task']}) at {folder}",
        f"  source: {doc['source']}   weights: {doc['weights']}",
        f"  inputs: {_io(doc['inputs'] or [])}",
        f"  outputs: {_io(doc['outputs'] or [])}",
        "  formats: " + ", ".join(f"{k} {v['status']}" for k, v in doc["formats"].items()),
        "  validation: "
        + ", ".join(
            f"{k} {'pass' if v['passed'] else 'FAIL'} (max abs {v['max_abs_error'] or 0:.2e})"
            for k, v in doc["validation"].items()
        ),
        "  targets: " + (", ".join(sorted(doc["targets"])) or "none"),
        f"  provenance: {doc['provenance'] or 'none'}   signature: "
        + (f"{SIGNATURE} (check it: pack verify {folder} --signature --public-key KEY.pub)" if doc["signed"] else words),
        "  files:",
        *[f"    {size:>12,d}  {rel}" for rel, size in sorted(files.items())],
        *[f"  WARNING: {w}" for w in doc["warnings"]],
    ]
    doc["summary"] = "\n".join(lines)
    return doc


def inspect(target: Path) -> dict[str, Any]:
    """A build folder here; a target's artifact (a .mar, a repository) by the target that owns it."""
    if kind_of(target) == "build":
        return inspect_build(target)
    return owner(target).inspect(target)

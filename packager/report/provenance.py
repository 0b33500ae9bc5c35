"""The build's provenance statement (`provenance.json`): an in-toto Statement v1 with a SLSA provenance v1 predicate.

Subjects are every file of the build folder with its sha256, except report.json (which records this file's digest)
and the signature; the predicate says what went in (the model reference and the spec as externalParameters; the
source file, weights file and state_dict digests the report recorded as resolvedDependencies), with which tools
(internalParameters) and what came out (the parity gate's verdict per format and the variants' verdicts, as
byproducts). It is a pure function of report.json: `BuildReport.save` writes it with the report, so a command that
rewrites build files (`pack archive`) keeps the two in step, and `pack verify` rebuilds it from the report and names
the first place where the file differs. Signing the build (`pack sign`) covers it with the other files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE = "provenance.json"
SIGNATURE = "model.sig"  # the name OpenSSF Model Signing uses; never a subject, never in the report
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:pack-models:build:v1"
NOT_SUBJECTS = frozenset({"report.json", FILE, SIGNATURE})


def _dependencies(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The inputs the build resolved, with the digests the report recorded (loader.py and record.py computed them)."""
    deps: list[dict[str, Any]] = []
    source = report["source"]
    if source.get("sha256"):
        deps.append({"name": source.get("ref", ""), "digest": {"sha256": source["sha256"]}, "annotations": {"role": "source"}})
    elif source.get("kind") == "builtin":
        pack = report["versions"].get("pack", "")
        deps.append({"name": f"pack-models=={pack}", "uri": f"pkg:pypi/pack-models@{pack}", "annotations": {"role": "source"}})
    if source.get("migrated_from_sha256"):
        deps.append(
            {
                "name": source.get("migrated_from", ""),
                "digest": {"sha256": source["migrated_from_sha256"]},
                "annotations": {"role": "migrated from", "kind": source.get("migrated_from_kind", "")},
            }
        )
    weights = report["weights"]
    if weights.get("sha256"):
        deps.append(
            {"name": weights.get("file", "weights"), "digest": {"sha256": weights["sha256"]}, "annotations": {"role": "weights"}}
        )
    if weights.get("state_dict_sha256"):
        deps.append(
            {
                "name": "state_dict",
                "digest": {"sha256": weights["state_dict_sha256"]},
                "annotations": {"role": "packaged weights", "initialised_by": weights.get("initialised_by", "")},
            }
        )
    return deps


def _gate(report: dict[str, Any]) -> dict[str, Any]:
    """Per format: its outcome and, when it was compared with eager, the gate's verdict and worst errors."""
    out: dict[str, Any] = {}
    for fmt, record in report["formats"].items():
        entry: dict[str, Any] = {"status": record["status"], "file": record.get("file")}
        summary = (report.get("validation") or {}).get(fmt) or {}
        for key in ("passed", "max_abs_error", "max_rel_error"):
            if key in summary:
                entry[key] = summary[key]
        if record.get("reason"):
            entry["reason"] = record["reason"]
        out[fmt] = entry
    return out


def statement(report: dict[str, Any], digests: dict[str, str]) -> dict[str, Any]:
    """The statement for a build whose report.json holds `report` and whose files have `digests` (relative path ->
    sha256): a function of the report's document alone."""
    from .files import plain

    byproducts: list[dict[str, Any]] = [{"name": "parity-gate", "annotations": _gate(report)}]
    variants = report.get("variants")  # a report section of newer builds; absent before
    if variants:  # annotations are a map: a list of verdicts goes under one key
        byproducts.append({"name": "variants", "annotations": variants if isinstance(variants, dict) else {"verdicts": variants}})
    spec = {
        "task": report["task"],
        "inputs": [
            {
                "name": i["name"],
                "shape": i["shape"],
                "dtype": i["dtype"],
                "dynamic_axes": i.get("dynamic_axes", [0]),
                **({"dim_names": i["dim_names"]} if i.get("dim_names") else {}),  # declared names only
            }
            for i in report["inputs"]
        ],
        "formats": list(report["formats"]),
        "batch_sizes": report["batch_sizes"],
        "tolerance": report["tolerance"],
        "seed": report["seed"],
        "device": report["device"],
    }
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "model": {"name": report["name"], "version": str(report["version"]), "source": report["source"]},
                "spec": spec,
            },
            "internalParameters": {"versions": report["versions"]},
            "resolvedDependencies": _dependencies(report),
        },
        "runDetails": {
            "builder": {"id": f"urn:pack-models:pack@{report['versions'].get('pack', '')}", "version": report["versions"]},
            "byproducts": byproducts,
        },
    }
    subjects = [{"name": rel, "digest": {"sha256": d}} for rel, d in sorted(digests.items()) if rel not in NOT_SUBJECTS]
    result: dict[str, Any] = plain(
        {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE, "predicate": predicate}
    )
    return result


def write(folder: Path, report: dict[str, Any], digests: dict[str, str]) -> None:
    """Write provenance.json of the report's document for the files' `digests` (atomically: a temporary name, then a
    rename)."""
    text = json.dumps(statement(report, digests), indent=2) + "\n"
    tmp = folder / f".{FILE}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, folder / FILE)


def findings(folder: Path, report: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, problem) where provenance.json disagrees with the build: a subject whose digest is not the file's (or
    names no file), a build file it leaves out, or any statement field that is not what report.json says.
    A build written before provenance existed has none: no finding (its report does not list the file)."""
    from ..errors import PackError
    from ..safeio import load_json, read_file, utf8
    from .files import sha256_file

    path = folder / FILE
    if not path.exists():  # a build from before provenance (or, when the report lists it, verify says `missing`)
        return []
    try:
        found = load_json(utf8(read_file(path, FILE), FILE), FILE)
    except PackError as exc:  # missing, a link, too large, not JSON: one finding
        return [(str(path), exc.message.split(": ", 1)[-1])]
    problems: list[tuple[str, str]] = []
    subjects = found.get("subject") if isinstance(found, dict) else None
    listed = {s.get("name"): (s.get("digest") or {}).get("sha256") for s in subjects or [] if isinstance(s, dict)}
    for name, digest in sorted(listed.items(), key=lambda kv: str(kv[0])):
        target = folder / str(name)
        if not isinstance(name, str) or name in NOT_SUBJECTS or not target.is_file() or target.is_symlink():
            problems.append((str(path), f"subject {name!r} names no file of the build"))
        elif sha256_file(target) != digest:
            problems.append((str(path), f"subject {name!r}: sha256 differs from the file"))
    digests: dict[str, str] = report.get("sha256") or {}
    for rel in sorted(set(digests) - set(listed) - NOT_SUBJECTS):
        problems.append((str(path), f"leaves out {rel!r} (listed in report.json)"))
    expected = statement(report, digests)
    if not problems and found != expected:
        problems.append((str(path), f"{_first_difference(found, expected)} differs from report.json"))
    return problems


def _first_difference(found: Any, expected: Any, where: str = "") -> str:
    """The dotted path of the first value that differs (for a one-line finding)."""
    if isinstance(found, dict) and isinstance(expected, dict):
        for key in [*expected, *(k for k in found if k not in expected)]:
            if found.get(key) != expected.get(key):
                return _first_difference(found.get(key), expected.get(key), f"{where}.{key}" if where else str(key))
    if isinstance(found, list) and isinstance(expected, list) and len(found) == len(expected):
        for i, (a, b) in enumerate(zip(found, expected, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{where}[{i}]")
    return where or "(the whole statement)"


__all__ = ["FILE", "NOT_SUBJECTS", "PREDICATE_TYPE", "SIGNATURE", "STATEMENT_TYPE", "findings", "statement", "write"]

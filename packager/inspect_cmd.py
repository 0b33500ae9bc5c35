"""`pack inspect`: a readable summary of a build folder, a `.mar`, or a Triton repository (and the same as JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .archive import open_archive
from .verify import REPORT, kind_of


def _io(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i['name']} {i.get('dtype', '?')} {i.get('shape', '?')}" for i in items)


def inspect_build(folder: Path) -> dict[str, Any]:
    report = json.loads((folder / REPORT).read_text())
    files = {rel: (folder / rel).stat().st_size for rel in report.get("sha256", {}) if (folder / rel).is_file()}
    doc = {
        "kind": "build",
        "path": str(folder),
        "name": report["name"],
        "version": report["version"],
        "task": report.get("task"),
        "source": report.get("source"),
        "weights": report.get("weights"),
        "inputs": report.get("inputs"),
        "outputs": report.get("outputs"),
        "validation": {k: {"passed": v["passed"], "max_abs_error": v["max_abs_error"]} for k, v in report.get("validation", {}).items()},
        "targets": report.get("targets", {}),
        "files": files,
        "warnings": report.get("warnings", []),
    }
    lines = [
        f"build {doc['name']} version {doc['version']} ({doc['task']}) at {folder}",
        f"  source: {doc['source']}   weights: {doc['weights']}",
        f"  inputs: {_io(doc['inputs'] or [])}",
        f"  outputs: {_io(doc['outputs'] or [])}",
        "  validation: " + ", ".join(f"{k} {'pass' if v['passed'] else 'FAIL'} (max abs {v['max_abs_error']:.2e})" for k, v in doc["validation"].items()),
        "  targets: " + (", ".join(sorted(doc["targets"])) or "none"),
        "  files:",
        *[f"    {size:>12,d}  {rel}" for rel, size in sorted(files.items())],
        *[f"  WARNING: {w}" for w in doc["warnings"]],
    ]
    doc["summary"] = "\n".join(lines)
    return doc


def inspect_mar(path: Path) -> dict[str, Any]:
    import yaml

    with open_archive(path) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json")) if "MAR-INF/MANIFEST.json" in names else None
        config_name = (manifest or {}).get("model", {}).get("configFile")
        config = yaml.safe_load(zf.read(config_name)) if config_name and config_name in names else None
        meta = json.loads(zf.read("pack.json")) if "pack.json" in names else None
        entries = [{"name": i.filename, "bytes": i.file_size, "compressed": i.compress_size, "stored": i.compress_type == 0} for i in zf.infolist()]
    doc = {"kind": "mar", "path": str(path), "manifest": manifest, "model_config": config, "metadata": meta, "entries": entries}
    model = (manifest or {}).get("model", {})
    lines = [
        f"archive {path} ({path.stat().st_size:,d} bytes)",
        f"  model {model.get('modelName')} version {model.get('modelVersion')}, handler {model.get('handler')}, serialized {model.get('serializedFile')}",
        f"  model-config: {json.dumps(config, sort_keys=True) if config else 'none'}",
        "  entries:",
        *[f"    {e['bytes']:>12,d}  {'stored ' if e['stored'] else 'deflate'}  {e['name']}" for e in entries],
    ]
    doc["summary"] = "\n".join(lines)
    return doc


def inspect_repository(repo: Path) -> dict[str, Any]:
    from .targets.triton import config as cfg

    models = []
    for entry in sorted(p for p in repo.iterdir() if (p / "config.pbtxt").is_file()):
        config = cfg.read(entry / "config.pbtxt")
        models.append(
            {
                "name": entry.name,
                "kind": cfg.kind_of(config),
                "max_batch_size": config.max_batch_size,
                "inputs": [{"name": t.name, "dtype": cfg.dtype_name(t.data_type), "dims": list(t.dims)} for t in config.input],
                "outputs": [{"name": t.name, "dtype": cfg.dtype_name(t.data_type), "dims": list(t.dims)} for t in config.output],
                "versions": sorted((p.name for p in entry.iterdir() if p.is_dir() and p.name.isdigit()), key=int),
            }
        )
    lines = [f"Triton repository {repo}: {len(models)} model(s)"]
    for m in models:
        lines.append(f"  {m['name']} ({m['kind']}, max_batch_size {m['max_batch_size']}, versions {', '.join(m['versions']) or '-'})")
        lines.append("    in:  " + ", ".join(f"{t['name']} {t['dtype']} {t['dims']}" for t in m["inputs"]))
        lines.append("    out: " + ", ".join(f"{t['name']} {t['dtype']} {t['dims']}" for t in m["outputs"]))
    return {"kind": "repository", "path": str(repo), "models": models, "summary": "\n".join(lines)}


def inspect(target: Path) -> dict[str, Any]:
    kind = kind_of(target)
    if kind == "build":
        return inspect_build(target)
    if kind == "repository":
        return inspect_repository(target)
    return inspect_mar(target)

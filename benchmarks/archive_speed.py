"""Archive speed, whole commands: `pack archive` against torch-model-archiver 0.12 and a plain copy, process start to
exit.

    python benchmarks/archive_speed.py [--model resnet50] [--store DIR] [--repeat 7] [--json out.json] [--smoke]

Builds MODEL once into --store when it is not there yet (random weights; the ONNX export of resnet50 is about
100 MB), then times each command as a separate process, on the same input files (the ONNX model, the handler and its
helpers, model-config.yaml, pack.json, labels.txt), each replacing its previous archive as a release job does:

  pack archive     `pack archive MODEL --force`: checks the digests of what it packs, writes the .mar (weights
                   stored, text deflated, reproducible) and config.properties atomically, records the new digests
  tma zip-store    `torch-model-archiver ... --archive-format zip-store --force` (no compression)
  tma default      `torch-model-archiver ... --force` (deflate everything)
  cp               `cp` of every input file into one folder (the floor: same bytes, no archive, no checks)

The cases run round-robin (one warm-up round first, not counted) so a busy machine slows every case alike; the table
shows medians and ratios. Goals: pack archive at most 1.0x tma zip-store, and at least 10x faster than tma default.
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
PACK = [sys.executable, "-m", "packager.cli"]


def ensure_build(model: str, store: Path) -> Path:
    from packager.report.store import versions

    if versions(store, model):
        return store / model / versions(store, model)[-1]
    from packager.build.pipeline import build
    from packager.build.plan import resolve
    from packager.targets import packagers

    print(f"building {model} into {store} (once)", file=sys.stderr)
    _, folder = build(resolve(model, None, {"device": "cpu"}), store, force=False, iterations=0, packagers=packagers())
    return folder


def stage_inputs(folder: Path, report: Any, settings: Any, inputs: Path) -> dict[str, Path]:
    """The archive's input files, copied into `inputs`: the same bytes for every tool."""
    from packager.targets.torchserve.mar import plan_entries

    inputs.mkdir()
    entries, _ = plan_entries(folder, report, settings)
    files = {}
    for entry in entries:
        if entry.name.startswith("MAR-INF/"):
            continue
        dest = inputs / entry.name
        if entry.path is not None:
            shutil.copyfile(entry.path, dest)
        else:
            dest.write_bytes(entry.data or b"")
        files[entry.name] = dest
    return files


def commands(model: str, store: Path, work: Path, files: dict[str, Path], version: str) -> dict[str, list[str]]:
    handler = next(n for n in files if n in ("pack_classifier.py", "pack_detector.py", "pack_tensors.py"))
    extras = ",".join(str(p) for n, p in files.items() if n not in ("model.onnx", handler, "model-config.yaml"))

    def tma(fmt: str) -> list[str]:
        out = work / f"tma-{fmt}"
        out.mkdir(exist_ok=True)
        # --archive-format default is torch-model-archiver's own default (deflate)
        return [
            str(BIN / "torch-model-archiver"),
            *("--model-name", model, "--version", version, "--serialized-file", str(files["model.onnx"])),
            *("--handler", str(files[handler]), "--extra-files", extras, "--config-file", str(files["model-config.yaml"])),
            *("--export-path", str(out), "--archive-format", fmt, "--force"),
        ]

    (work / "cp").mkdir()
    return {
        # this checkout's pack (run from ROOT), not whichever checkout the venv's `pack` script imports
        "pack archive": [*PACK, "archive", model, "--store", str(store.resolve()), "--force", "-q"],
        "tma zip-store": tma("zip-store"),
        "tma default": tma("default"),
        "cp": ["cp", *(str(p) for p in files.values()), str(work / "cp")],
    }


def timed(cases: dict[str, list[str]], repeat: int) -> dict[str, list[float]]:
    """Seconds per run of every command (process start to exit), round-robin; round 0 warms the page cache."""
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(repeat + 1):
        for name, argv in cases.items():
            t0 = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-400:]}")
            if round_index:
                runs[name].append(seconds)
    return runs


def summary(args: argparse.Namespace, runs: dict[str, list[float]], sizes: dict[str, int], total: int) -> dict[str, Any]:
    median = {k: statistics.median(v) for k, v in runs.items()}
    pack_s = median["pack archive"]
    doc: dict[str, Any] = {
        "benchmark": "archive_speed",
        "measured": "whole processes, start to exit",
        "model": args.model,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "input_bytes": total,
        "repeat": args.repeat,
        "results": {
            k: {
                "median_s": round(median[k], 4),
                "runs_s": [round(r, 4) for r in runs[k]],
                "bytes": sizes[k],
                "ratio_to_pack": round(median[k] / pack_s, 2),
            }
            for k in runs
        },
        "pack_vs_tma_zip_store": round(pack_s / median["tma zip-store"], 2),
        "tma_default_vs_pack": round(median["tma default"] / pack_s, 1),
        "pack_vs_cp": round(pack_s / median["cp"], 2),
    }
    doc["goals"] = {
        "pack archive <= 1.0x tma zip-store": doc["pack_vs_tma_zip_store"] <= 1.0,
        "pack archive >= 10x faster than tma default": doc["tma_default_vs_pack"] >= 10,
    }
    return doc


def print_summary(doc: dict[str, Any]) -> None:
    print(f"{doc['model']}: {doc['input_bytes'] / 1e6:.1f} MB of input, whole processes, median of {doc['repeat']} rounds")
    print(f"{'command':<14} {'seconds':>8} {'x pack':>7} {'archive MB':>11}")
    for name, row in doc["results"].items():
        print(f"{name:<14} {row['median_s']:>8.3f} {row['ratio_to_pack']:>7.2f} {row['bytes'] / 1e6:>11.1f}")
    print(
        f"pack archive takes {doc['pack_vs_tma_zip_store']}x the time of torch-model-archiver --archive-format zip-store, "
        f"is {doc['tma_default_vs_pack']}x faster than its default, and takes {doc['pack_vs_cp']}x a plain cp"
    )
    for goal, met in doc["goals"].items():
        print(f"goal {goal}: {'met' if met else 'missed'}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--store", type=Path, default=ROOT / "benchmarks" / "out" / "store")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "archive_speed.json")
    parser.add_argument("--smoke", action="store_true", help="tiny, one round: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.repeat = "tiny", 1
    return args


def main() -> int:
    args = parse_args()
    from packager.report.build_report import BuildReport
    from packager.targets.torchserve.config import settings_from

    folder = ensure_build(args.model, args.store)
    report = BuildReport.load(folder)
    settings = settings_from(report, "onnx")
    work = Path(tempfile.mkdtemp(prefix="pack-bench-"))
    try:
        files = stage_inputs(folder, report, settings, work / "inputs")
        total = sum(p.stat().st_size for p in files.values())
        cases = commands(report.name, args.store, work, files, report.version)
        runs = timed(cases, args.repeat)
        sizes = {
            "pack archive": (folder / "torchserve" / f"{report.name}.mar").stat().st_size,
            "tma zip-store": (work / "tma-zip-store" / f"{report.name}.mar").stat().st_size,
            "tma default": (work / "tma-default" / f"{report.name}.mar").stat().st_size,
            "cp": total,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = summary(args, runs, sizes, total)
    print_summary(doc)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Archive speed: pack's .mar writer against torch-model-archiver 0.12 and a plain copy of the same bytes.

    python benchmarks/archive_speed.py [--model resnet50] [--store DIR] [--repeat 3] [--json out.json]

Builds MODEL once into --store when it is not there yet (random weights; ONNX export of resnet50 is about 100 MB),
then times, in this one process and on the same input files (the ONNX model, the handler and its helpers,
model-config.yaml, pack.json, labels.txt):

  pack             packager.targets.torchserve.mar.write_mar (weights stored, text deflated, reproducible)
  tma-default      torch-model-archiver's generate_model_archive, default format (deflate everything)
  tma-zip-store    the same with --archive-format zip-store (no compression)
  copy             shutil.copyfile of every input file into one folder (the floor: same bytes, no archive)

Every case runs once to warm the page cache, then --repeat rounds (round-robin); the table shows the median. Targets of the issue:
pack at least 5x faster than tma-default, and within 1.5x of copy. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ensure_build(model: str, store: Path) -> Path:
    from packager.store import versions

    if versions(store, model):
        return store / model / versions(store, model)[-1]
    from packager.build import build
    from packager.plan import resolve

    print(f"building {model} into {store} (once)", file=sys.stderr)
    _, folder = build(resolve(model, None, {"device": "cpu"}), store, force=False, iterations=0)
    return folder


def timed(cases: dict, repeat: int) -> dict[str, list[float]]:
    """Seconds per run of every case, run round-robin so that a busy machine slows every case alike.

    Each case's `clean` removes its output first, outside the timing (freeing 100 MB of pages costs time too)."""
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(repeat + 1):
        for name, (fn, clean) in cases.items():
            clean()
            t0 = time.perf_counter()
            fn()
            if round_index:  # round 0 warms the page cache and the imports
                runs[name].append(time.perf_counter() - t0)
    return runs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--store", type=Path, default=ROOT / "benchmarks" / "out" / "store")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "archive_speed.json", help="where to write the figures"
    )
    return parser.parse_args()


def stage_inputs(folder: Path, report: Any, settings: Any, inputs: Path) -> dict[str, Path]:
    """The archive's input files, copied into `inputs`: the same files for every tool."""
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


def _clean(*paths: Path) -> Callable[[], None]:
    def run() -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    return run


def make_cases(work: Path, folder: Path, report: Any, settings: Any, files: dict[str, Path]) -> dict[str, Any]:
    """{case: (run, clean)} for pack, torch-model-archiver in both formats, and the plain copy."""
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

    from packager.targets.torchserve.mar import write_mar

    handler = next(n for n in files if n in ("pack_classifier.py", "pack_detector.py", "pack_tensors.py"))
    extras = [str(p) for n, p in files.items() if n not in ("model.onnx", handler, "model-config.yaml")]

    def pack_case() -> None:
        write_mar(folder, report, settings, work / "pack.mar")

    def tma(fmt: str) -> Callable[[], None]:
        def run() -> None:
            out = work / f"tma-{fmt}"
            out.mkdir(exist_ok=True)
            config = ModelArchiverConfig(
                model_name=report.name,
                handler=str(files[handler]),
                version=str(report.version),
                serialized_file=str(files["model.onnx"]),
                extra_files=",".join(extras),
                export_path=str(out),
                archive_format=fmt,
                force=True,
                config_file=str(files["model-config.yaml"]),
            )
            generate_model_archive(config)

        return run

    def copy_case() -> None:
        out = work / "copy"
        out.mkdir()
        for name, path in files.items():
            shutil.copyfile(path, out / name)

    return {
        "pack": (pack_case, _clean(work / "pack.mar")),
        "tma-default": (tma("default"), _clean(work / "tma-default" / f"{report.name}.mar")),
        "tma-zip-store": (tma("zip-store"), _clean(work / "tma-zip-store" / f"{report.name}.mar")),
        "copy": (copy_case, _clean(work / "copy")),
    }


def summary(args: argparse.Namespace, results: dict[str, Any], sizes: dict[str, int], total_bytes: int) -> dict[str, Any]:
    pack_s = results["pack"]["median_s"]
    doc: dict[str, Any] = {
        "model": args.model,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "input_bytes": total_bytes,
        "repeat": args.repeat,
        "results": {
            k: {**v, "bytes": sizes[k], "mb_per_s": round(total_bytes / v["median_s"] / 1e6, 1)} for k, v in results.items()
        },
        "speedup_vs_tma_default": round(results["tma-default"]["median_s"] / pack_s, 1),
        "speedup_vs_tma_zip_store": round(results["tma-zip-store"]["median_s"] / pack_s, 2),
        "ratio_to_copy": round(pack_s / results["copy"]["median_s"], 2),
    }
    doc["targets_met"] = {
        "5x_faster_than_tma_default": doc["speedup_vs_tma_default"] >= 5,
        "within_1.5x_of_copy": doc["ratio_to_copy"] <= 1.5,
    }
    return doc


def print_summary(doc: dict[str, Any]) -> None:
    print(f"{doc['model']}: {doc['input_bytes'] / 1e6:.1f} MB of input, median of {doc['repeat']} runs")
    print(f"{'case':<14} {'seconds':>8} {'MB/s':>8} {'archive MB':>11}")
    for name, row in doc["results"].items():
        print(f"{name:<14} {row['median_s']:>8.3f} {row['mb_per_s']:>8.0f} {row['bytes'] / 1e6:>11.1f}")
    print(
        f"pack is {doc['speedup_vs_tma_default']}x faster than torch-model-archiver (deflate), "
        f"{doc['speedup_vs_tma_zip_store']}x its zip-store, and takes {doc['ratio_to_copy']}x the time of a plain copy"
    )


def main() -> int:
    args = parse_args()
    from packager.report import BuildReport
    from packager.targets.torchserve.config import settings_from

    folder = ensure_build(args.model, args.store)
    report = BuildReport.load(folder)
    settings = settings_from(report, "onnx")
    work = Path(tempfile.mkdtemp(prefix="pack-bench-"))
    try:
        files = stage_inputs(folder, report, settings, work / "inputs")
        total_bytes = sum(p.stat().st_size for p in files.values())
        cases = make_cases(work, folder, report, settings, files)
        results = {}
        for name, runs in timed(cases, args.repeat).items():
            results[name] = {"median_s": statistics.median(runs), "runs_s": [round(r, 4) for r in runs]}
        sizes = {
            "pack": (work / "pack.mar").stat().st_size,
            "tma-default": (work / "tma-default" / f"{report.name}.mar").stat().st_size,
            "tma-zip-store": (work / "tma-zip-store" / f"{report.name}.mar").stat().st_size,
            "copy": total_bytes,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    doc = summary(args, results, sizes, total_bytes)
    print_summary(doc)
    text = json.dumps(doc, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

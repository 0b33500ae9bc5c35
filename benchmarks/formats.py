"""Latency of every export format against eager, per built-in model, at batch 1 and 8, measured side by side in one
run; and the time each format's export (with its gate) took.

    .venv/bin/python benchmarks/formats.py [--models tiny,resnet18,resnet50,mobilenet_v3_small,yolov8n]
        [--batches 1,8] [--rounds 5] [--out benchmarks/results/formats_cpu.json] [--smoke]

Each model is built once with `--formats torchscript,onnx,pt2,aoti` into a temporary store (the export seconds come
from its report). The formats are then timed in rounds: every round runs each format once per batch size, in turn,
so a machine that gets busier slows them all alike; the median over rounds (after a warm-up) is reported, and each
format's ratio is eager's median divided by its own (above 1: faster than eager).
Target: AOTInductor at least 1.3x eager for resnet50 at batch 8 on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FORMATS = ("torchscript", "onnx", "pt2", "aoti")


def build(model: str, store: Path) -> tuple[dict, Path]:
    """`pack build MODEL` with every format, as a user runs it (its progress on stderr); the report and its folder."""
    command = [sys.executable, "-m", "packager.cli", "build", model, "--store", str(store), "--force", "--json"]
    command += ["--formats", ",".join(FORMATS), "--batch-sizes", "1,8", "--device", "cpu", "--iterations", "0"]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"error: pack build {model} exited {done.returncode}; see its line above")
    report = json.loads(done.stdout)
    return report, Path(report["path"])


def runners(model: str, report: dict, folder: Path) -> dict:
    from packager.build.loader import load_module
    from packager.build.modelio import bind, export_module
    from packager.build.plan import resolve
    from packager.build.runners import torch_runner
    from packager.export import runner_for

    module, _, _ = load_module(resolve(model, None, {"device": "cpu"}))
    eager = export_module(module.eval(), bind(module, [i["name"] for i in report["inputs"]]))
    out = {"eager": torch_runner(eager, "cpu")}
    for fmt in FORMATS:
        if fmt in report["artifacts"]:
            out[fmt] = runner_for(fmt, folder / report["artifacts"][fmt])
    return out


def inputs_for(report: dict, batch: int) -> list:
    from packager.registry import TensorSpec
    from packager.report.cases import make_inputs

    specs = [
        TensorSpec(
            i["name"], tuple(i["shape"]), i["dtype"], tuple(i["dynamic_axes"]), tuple(i["range"]) if i.get("range") else None
        )
        for i in report["inputs"]
    ]
    return make_inputs(specs, batch, 0)


def measure(run: dict, batches: list[int], rounds: int, report: dict) -> dict:
    arrays = {b: inputs_for(report, b) for b in batches}
    for fn in run.values():  # warm-up: first calls compile, allocate, fill caches
        for b in batches:
            fn(arrays[b])
    times: dict = {f: {b: [] for b in batches} for f in run}
    for _ in range(rounds):
        for b in batches:
            for fmt, fn in run.items():
                start = time.perf_counter()
                fn(arrays[b])
                times[fmt][b].append((time.perf_counter() - start) * 1000)
    return {fmt: {str(b): round(statistics.median(v), 3) for b, v in per.items()} for fmt, per in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,resnet18,resnet50,mobilenet_v3_small,yolov8n")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/formats_cpu.json")
    parser.add_argument("--smoke", action="store_true", help="tiny at batch 1, one round: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.batches, args.rounds = "tiny", "1", 1
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            print(f"{model}: building every format", file=sys.stderr)
            report, folder = build(model, Path(tmp))
            latency = measure(runners(model, report, folder), batches, args.rounds, report)
            export_s = {f: (report["export"].get(f) or {}).get("seconds") for f in FORMATS}
            for b in map(str, batches):
                eager = latency["eager"][b]
                rows.append(
                    {
                        "model": model,
                        "batch": int(b),
                        "eager_ms": eager,
                        **{f"{f}_ms": latency.get(f, {}).get(b) for f in FORMATS},
                        **{f"{f}_x": round(eager / latency[f][b], 2) if f in latency else None for f in FORMATS},
                    }
                )
            rows[-1]["export_seconds"] = export_s
            rows[-1]["build_seconds"] = report["build_seconds"]
    import torch

    resnet50 = next((r for r in rows if r["model"] == "resnet50" and r["batch"] == 8), None)
    result = {
        "benchmark": "formats",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "rounds": args.rounds,
        "target": "AOTInductor >= 1.3x eager for resnet50 at batch 8 (CPU)",
        "target_met": None if resnet50 is None or resnet50["aoti_x"] is None else resnet50["aoti_x"] >= 1.3,
        "rows": rows,
        "load_average_after": os.getloadavg()[0],
    }
    header = ["model", "batch", "eager ms", *(f"{f} ms (x)" for f in FORMATS)]
    print("  ".join(header))
    for r in rows:
        cells = [r["model"], str(r["batch"]), f"{r['eager_ms']:.2f}"]
        cells += [f"{r[f + '_ms']:.2f} ({r[f + '_x']:.2f}x)" if r[f + "_ms"] is not None else "-" for f in FORMATS]
        print("  ".join(cells))
    for r in rows:
        if "export_seconds" in r:
            print(f"{r['model']}: export seconds {r['export_seconds']}, whole build {r['build_seconds']} s")
    print(
        "target (resnet50 batch 8 AOTInductor >= 1.3x eager): "
        f"{'met' if result['target_met'] else 'MISSED' if result['target_met'] is False else 'not measured'}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

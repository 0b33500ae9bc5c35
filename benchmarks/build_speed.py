"""Whole-process time of `pack build yolov8n` (both exports + validation + measurement) against ultralytics' own
`export(format="onnx")` + `export(format="torchscript")` of the same model, side by side in one run.

    .venv/bin/python benchmarks/build_speed.py [--repeats 3] [--model yolov8n] [--out benchmarks/results/build_speed.json]

Runs alternate (pack, ultralytics, pack, ...) so both see the same machine state; the median of each is compared.
Target: pack at most 1.5x ultralytics' two bare exports.
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

ULTRALYTICS = """
import os
os.environ["YOLO_OFFLINE"] = "1"
from ultralytics import YOLO
model = YOLO("{model}.yaml")
model.export(format="onnx", imgsz=640, verbose=False)
model.export(format="torchscript", imgsz=640, verbose=False)
"""


def timed(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/build_speed.json")
    args = parser.parse_args()

    runs: dict[str, list[float]] = {"pack build": [], "pack build --iterations 0": [], "ultralytics export onnx+torchscript": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            store = str(Path(tmp) / f"store{i}")
            runs["pack build"].append(
                timed([sys.executable, "-m", "packager.cli", "build", args.model, "--store", store + "a"], tmp)
            )
            runs["pack build --iterations 0"].append(
                timed(
                    [sys.executable, "-m", "packager.cli", "build", args.model, "--store", store + "b", "--iterations", "0"], tmp
                )
            )
            work = Path(tmp) / f"ultra{i}"
            work.mkdir()
            runs["ultralytics export onnx+torchscript"].append(
                timed([sys.executable, "-c", ULTRALYTICS.format(model=args.model)], str(work))
            )

    base = statistics.median(runs["ultralytics export onnx+torchscript"])
    rows = []
    for name, times in runs.items():
        med = statistics.median(times)
        rows.append(
            {
                "command": name,
                "median_s": round(med, 2),
                "runs_s": [round(t, 2) for t in times],
                "ratio_to_ultralytics": round(med / base, 2),
            }
        )
    import torch

    result = {
        "benchmark": "build_speed",
        "model": args.model,
        "repeats": args.repeats,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "target": "pack build <= 1.5x ultralytics' two exports",
        "rows": rows,
        # pack build = exports + parity gate + .mar + Triton repository + warm-up and latency measurement;
        # --iterations 0 skips only the measurement, which ultralytics does not do either.
        "target_met": {
            "pack build": rows[0]["ratio_to_ultralytics"] <= 1.5,
            "pack build --iterations 0": rows[1]["ratio_to_ultralytics"] <= 1.5,
        },
        "load_average_after": os.getloadavg()[0],
    }
    width = max(len(r["command"]) for r in rows)
    print(f"{'command'.ljust(width)}  median s  ratio  runs")
    for r in rows:
        print(f"{r['command'].ljust(width)}  {r['median_s']:8.2f}  {r['ratio_to_ultralytics']:5.2f}  {r['runs_s']}")
    for name, met in result["target_met"].items():
        print(f"target ({name} <= 1.5x ultralytics): {'met' if met else 'MISSED'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

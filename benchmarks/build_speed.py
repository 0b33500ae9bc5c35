"""Whole-process time of `pack build yolov8n` against ultralytics' own `export(format="onnx")` +
`export(format="torchscript")` of the same model, side by side in one run, and where pack's time goes.

    .venv/bin/python benchmarks/build_speed.py [--repeats 3] [--model yolov8n] [--out benchmarks/results/build_speed.json]
        [--smoke]

Rows (each a fresh process, run round-robin so every row sees the same machine state; medians compared):
  pack build                          the default: TorchScript, ONNX and torch.export, each gated against eager on
                                      every declared axis, Triton repository and .mar, time-boxed latency measurement
  pack build --iterations 0           the same without the latency measurement
  pack build --formats torchscript,onnx --iterations 0
                                      like with like: the two formats ultralytics writes, gated
  pack build again                    the default rebuilt from unchanged inputs: restored from the build cache
  ultralytics export onnx+torchscript the two bare exports (onnxslim on, no validation)

Goals: the default at most 1.5x ultralytics, the like-with-like row at most 1.0x, the cached rebuild at most 0.1x.
The timeline of the last default build (its own log's elapsed times) says where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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
BASE = "ultralytics export onnx+torchscript"
CACHED = "pack build again (unchanged inputs: a cache hit)"
GOALS = {"pack build": 1.5, "pack build --formats torchscript,onnx --iterations 0": 1.0, CACHED: 0.1}
STAMP = re.compile(r"^pack: \[\s*([\d.]+)s\] (.*)$")


def timed(cmd: list[str], cwd: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stderr


def timeline(stderr: str, total: float) -> list[dict[str, object]]:
    """The build's own log lines as phases: each runs from its stamp to the next one; the first phase is the
    process start and imports (before the build's clock starts)."""
    stamps = [(float(m.group(1)), m.group(2)) for m in map(STAMP.match, stderr.splitlines()) if m]
    if not stamps:
        return []
    startup = total - stamps[-1][0]  # upper bound: the tail after the last stamp is counted here too
    phases: list[dict[str, object]] = [{"phase": "process start, imports, writing the result", "seconds": round(startup, 2)}]
    for (t0, what), (t1, _) in zip(stamps, stamps[1:] + [(stamps[-1][0], "")], strict=True):
        phases.append({"phase": what[:90], "seconds": round(t1 - t0, 2)})
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/build_speed.json")
    parser.add_argument("--smoke", action="store_true", help="one round of the like-with-like rows: checks the script runs")
    args = parser.parse_args()

    pack = [sys.executable, "-m", "packager.cli", "build", args.model, "-v"]
    commands = {
        "pack build": pack,
        "pack build --iterations 0": [*pack, "--iterations", "0"],
        "pack build --formats torchscript,onnx --iterations 0": [*pack, "--formats", "torchscript,onnx", "--iterations", "0"],
        CACHED: [],  # the first pack row of the round again, in its store (--force): the cache hit is timed
        BASE: [sys.executable, "-c", ULTRALYTICS.format(model=args.model)],
    }
    if args.smoke:
        args.repeats = 1
        commands = {k: v for k, v in commands.items() if "--formats" in k or k in (BASE, CACHED)}
    runs: dict[str, list[float]] = {name: [] for name in commands}
    last_log = ""
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for n, (name, cmd) in enumerate(commands.items()):
                work = Path(tmp) / f"run{i}-{n}"
                work.mkdir()
                argv = cmd if name == BASE else [*cmd, "--store", str(work / "store")]
                if name == CACHED:
                    first = next(iter(commands))
                    work = Path(tmp) / f"run{i}-0"
                    argv = [*commands[first], "--force", "--store", str(work / "store")]
                seconds, stderr = timed(argv, str(work))
                runs[name].append(seconds)
                if name == next(iter(commands)):
                    last_log = stderr
    base = statistics.median(runs[BASE])
    rows = [
        {
            "command": name,
            "median_s": round(statistics.median(times), 2),
            "runs_s": [round(t, 2) for t in times],
            "ratio_to_ultralytics": round(statistics.median(times) / base, 2),
        }
        for name, times in runs.items()
    ]
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
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": rows,
        "goals": {
            f"{name} <= {limit}x ultralytics": next(r for r in rows if r["command"] == name)["ratio_to_ultralytics"] <= limit
            for name, limit in GOALS.items()
            if name in runs
        },
        "timeline_of_the_last_default_build": timeline(last_log, runs[next(iter(commands))][-1]),
    }
    width = max(len(r["command"]) for r in rows)
    print(f"{'command'.ljust(width)}  median s  x ultralytics  runs")
    for r in rows:
        print(f"{r['command'].ljust(width)}  {r['median_s']:8.2f}  {r['ratio_to_ultralytics']:13.2f}  {r['runs_s']}")
    for goal, met in result["goals"].items():
        print(f"goal {goal}: {'met' if met else 'missed'}")
    print("where the last default build's time went:")
    for phase in result["timeline_of_the_last_default_build"]:
        print(f"  {phase['seconds']:7.2f} s  {phase['phase']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

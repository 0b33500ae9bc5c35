"""Served efficiency: `pack tune` each server for a model, then `pack bench` it at the tuned settings, and print each
server's throughput against the same runtime in-process (goal: at least 0.95x), side by side.

    .venv/bin/python benchmarks/served.py [--models resnet18,yolov8n] [--targets triton,torchserve]
        [--budget-s 180] [--p99-ms N] [--store benchmarks/out/store] [--concurrency 8] [--requests 200]
        [--out benchmarks/results] [--smoke]

For each model: `pack build MODEL --iterations 0` into --store when it has no build there, `pack tune MODEL --target T`
for each target (written into that build; results in OUT/tune_<model>_<target>.json), then
`pack bench MODEL --targets inprocess,fastapi,<targets>` (fastapi: the HTTP baseline; OUT/bench_<model>_tuned_cpu.json),
and a summary in OUT/served_<models>_cpu.json. A second tune of the first target checks reproducibility (same setting, or
within 10% on both axes). --smoke checks the script runs: the tiny model on Triton alone, the shortest tune, no
fastapi row, no second tune, a few requests. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PACK = [sys.executable, "-m", "packager.cli"]


def pack(*args: str) -> dict[str, Any]:
    proc = subprocess.run([*PACK, *args, "--json"], capture_output=True, text=True, cwd=ROOT)
    sys.stderr.write(proc.stderr[-3000:])
    if proc.returncode not in (0, 3) or not proc.stdout.strip():
        raise SystemExit(f"pack {' '.join(args)} failed ({proc.returncode})")
    return dict(json.loads(proc.stdout))


def within(a: dict[str, Any] | None, b: dict[str, Any] | None, tolerance: float = 0.10) -> bool:
    if not a or not b:
        return False
    if a["settings"] == b["settings"]:
        return True
    return all(abs(a[k] - b[k]) <= tolerance * max(a[k], b[k]) for k in ("throughput_rps", "p99_ms"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,yolov8n")
    parser.add_argument("--targets", default="triton,torchserve")
    parser.add_argument("--budget-s", default="180")
    parser.add_argument("--window-s", default="2")
    parser.add_argument("--p99-ms")
    parser.add_argument("--store", default=str(ROOT / "benchmarks" / "out" / "store"))
    parser.add_argument("--concurrency", default="8")
    parser.add_argument("--requests", default="200")
    parser.add_argument("--no-repeat", action="store_true", help="skip the reproducibility tune")
    parser.add_argument("--baseline", default="fastapi", help="HTTP baseline rows of the bench ('' for none)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON and PNG results")
    parser.add_argument("--smoke", action="store_true", help="tiny on Triton, one short round: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.targets, args.budget_s, args.window_s = "tiny", "triton", "10", "0.5"
        args.concurrency, args.requests, args.no_repeat, args.baseline = "2", "20", True, ""
    return args


def main() -> int:
    args = parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    bound = [*(["--p99-ms", args.p99_ms] if args.p99_ms else []), "--window-s", args.window_s]
    summary: list[dict[str, Any]] = []
    for model in args.models.split(","):
        if not (Path(args.store) / model).is_dir():
            pack("build", model, "--store", args.store, "--iterations", "0")
        tuned = {}
        for target in args.targets.split(","):
            doc = pack(
                "tune",
                model,
                "--target",
                target,
                "--store",
                args.store,
                "--budget-s",
                args.budget_s,
                *bound,
                "--concurrency",
                args.concurrency,
                "--plot",
                str(out / f"tune_{model}_{target}.png"),
            )
            (out / f"tune_{model}_{target}.json").write_text(json.dumps(doc, indent=2) + "\n")
            tuned[target] = doc["best"]
        repeat = None
        if not args.no_repeat:
            first = args.targets.split(",")[0]
            again = pack(
                "tune",
                model,
                "--target",
                first,
                "--store",
                args.store,
                "--budget-s",
                args.budget_s,
                *bound,
                "--concurrency",
                args.concurrency,
                "--no-write",
            )
            repeat = {
                "target": first,
                "first": tuned[first],
                "second": again["best"],
                "reproduced": within(tuned[first], again["best"]),
            }
        bench = pack(
            "bench",
            model,
            "--store",
            args.store,
            "--targets",
            ",".join(filter(None, ["inprocess", args.baseline, args.targets])),
            "--concurrency",
            f"1,{args.concurrency}",
            "--requests",
            args.requests,
            "--plot",
            str(out / f"bench_{model}_tuned_cpu.png"),
        )
        (out / f"bench_{model}_tuned_cpu.json").write_text(json.dumps(bench, indent=2) + "\n")
        summary.append({"model": model, "tuned": tuned, "reproducibility": repeat, "goals": bench["goals"]})
    print(f"{'model':<10} {'goal':<78} {'ratio':>6}  met")
    for entry in summary:
        for goal in entry["goals"]:
            ratio = goal.get("peak_ratio", goal.get("ratio"))
            print(f"{entry['model']:<10} {goal['goal']:<78} {ratio:>6}  {'yes' if goal['met'] else 'no'}")
        if entry["reproducibility"]:
            r = entry["reproducibility"]
            print(f"{entry['model']:<10} second tune of {r['target']} picks the same or within 10%: {r['reproduced']}")
    doc = {"summary": summary, "load_average": os.getloadavg()}
    (out / f"served_{args.models.replace(',', '_')}_cpu.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does `pack bench` at the settings `pack tune` wrote reproduce the tuned best? For each target: `pack tune MODEL`
(written into the build), then `pack bench MODEL --targets T` at the tuned concurrency, twice; each bench run's
`vs_tuned` (bench / tune, throughput and p99) is the answer (goal: throughput within 10%).

    .venv/bin/python benchmarks/tune_repro.py [--model resnet18] [--targets triton,torchserve] [--budget-s 90]
        [--concurrency 8] [--requests 200] [--benches 2] [--store benchmarks/out/store] [--out benchmarks/results]
        [--smoke]

Results: OUT/tune_repro_<model>[_<tag>].json. --smoke checks the script runs: the tiny model on Triton, the shortest
tune, one short bench. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from served import RESULTS, pack  # noqa: E402  (the same way of running pack as the served-efficiency benchmark)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--targets", default="triton,torchserve")
    parser.add_argument("--budget-s", default="90")
    parser.add_argument("--concurrency", default="8")
    parser.add_argument("--requests", default="200")
    parser.add_argument("--benches", type=int, default=2)
    parser.add_argument("--tag", default="", help="results in tune_repro_<model>_<tag>.json")
    parser.add_argument("--store", default=str(Path(__file__).resolve().parent / "out" / "store"))
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON result")
    parser.add_argument("--smoke", action="store_true", help="tiny on Triton, one short round: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.targets, args.budget_s, args.benches = "tiny", "triton", "10", 1
        args.concurrency, args.requests = "2", "20"
    window = ["--window-s", "0.5"] if args.smoke else []
    args.out.mkdir(parents=True, exist_ok=True)
    if not (Path(args.store) / args.model).is_dir():
        pack("build", args.model, "--store", args.store, "--iterations", "0")
    rows: list[dict[str, Any]] = []
    for target in args.targets.split(","):
        common = ("--store", args.store, "--concurrency", args.concurrency)
        tune = pack("tune", args.model, "--target", target, "--budget-s", args.budget_s, *window, *common)
        tune_load = [round(x, 2) for x in os.getloadavg()]  # the machine's load as the tune ended (1, 5, 15 min)
        for _ in range(args.benches):
            bench = pack("bench", args.model, "--targets", target, "--requests", args.requests, *common)
            run = bench["rows"][0]["runs"][0]
            rows.append(
                {
                    "target": target,
                    "settings": tune["best"]["settings"],
                    "tuned": {k: tune["best"][k] for k in ("throughput_rps", "p99_ms", "stable")},
                    "tune_load_average": tune_load,
                    "warnings": tune.get("warnings", []),
                    "bench": {k: run[k] for k in ("throughput_rps", "p99_ms", "load_average")},
                    "vs_tuned": run.get("vs_tuned"),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    doc = {"model": args.model, "concurrency": int(args.concurrency), "rows": rows, "load_average": os.getloadavg()}
    (args.out / f"tune_repro_{args.model}{'_' + args.tag if args.tag else ''}.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

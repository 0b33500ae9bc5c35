"""Each ONNX variant's speed-up over the base ONNX export and its agreement with eager, per model, side by side.

    .venv/bin/python benchmarks/variants.py [--models tiny,resnet50,encoder] [--iterations 20]
        [--out benchmarks/results/variants_cpu.json] [--smoke]

Each model is built once with `pack build --formats onnx --batch-sizes 1,8 --variants all` into a temporary store:
the build's own variant step makes every variant, gates it against eager (the kind's tolerances and the task's
agreement: top-1/top-5 for the image classifiers, cosine similarity for the encoder) and times it against the base
ONNX in alternation (the better p50 of two rounds per batch size). The speed-up is the geometric mean over batch 1
and 8. `encoder` is benchmarks/encoder_model.py (4 layers, width 384, sequence 64).
Goal: resnet50 and the encoder each get a kept variant at least 1.3x faster than the base ONNX on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "tiny": ["tiny"],
    "resnet18": ["resnet18"],
    "resnet50": ["resnet50"],
    "encoder": [f"{ROOT}/benchmarks/encoder_model.py:encoder", "--input", "x:8x64x384:float32:dyn=0,1", "--name", "encoder"],
}


def build(model: str, store: Path, iterations: int) -> dict:
    command = [sys.executable, "-m", "packager.cli", "build", *MODELS[model], "--formats", "onnx", "--batch-sizes", "1,8"]
    command += ["--variants", "all", "--iterations", str(iterations), "--store", str(store), "--json", "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"{model}: pack build failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    report: dict = json.loads(done.stdout)
    return report


def rows_of(model: str, report: dict) -> list[dict]:
    rows = []
    base = report["performance"]["onnx"]
    for r in report["variants"]["results"]:
        rows.append(
            {
                "model": model,
                "variant": r["kind"],
                "status": r["status"],
                "speedup": r.get("speedup"),
                "p50_ms": r.get("p50_ms"),
                "agreement": (r.get("agreement") or {}).get("values"),
                "max_abs_error": (r.get("gate") or {}).get("max_abs_error"),
                "reason": r["reason"],
                "base_p50_ms": {b: v["p50_ms"] for b, v in base.items()},
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | variant | base ONNX p50 ms (b1 / b8) | variant p50 ms (b1 / b8) | speed-up | agreement | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        p = r["p50_ms"] or {}
        base = " / ".join(f"{p[b]['base']:.2f}" for b in ("1", "8")) if p else "-"
        mine = " / ".join(f"{p[b]['variant']:.2f}" for b in ("1", "8")) if p else "-"
        agreement = ", ".join(f"{k} {v:.3f}" for k, v in (r["agreement"] or {}).items()) or "-"
        speed = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        verdict = r["status"] if r["status"] == "kept" else f"{r['status']}: {r['reason'][:90]}"
        lines.append(f"| {r['model']} | {r['variant']} | {base} | {mine} | {speed} | {agreement} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,resnet50,encoder")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "variants_cpu.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny, two iterations: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.iterations = "tiny", 2
    rows: list[dict] = []
    served = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pack-variants-") as tmp:
        for model in args.models.split(","):
            print(f"building {model} with every variant", file=sys.stderr)
            report = build(model, Path(tmp), args.iterations)
            rows += rows_of(model, report)
            served[model] = report["variants"]["served"]
    print(table(rows))
    for model, kind in served.items():
        print(f"{model}: serves {kind or 'the base ONNX export'}")
    result = {
        "machine": {"arch": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "iterations": args.iterations,
        "served": served,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

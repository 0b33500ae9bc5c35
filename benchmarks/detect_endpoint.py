"""Triton's detection endpoint against the same pipeline in-process, side by side in one run: a YOLO build's
`<name>_ensemble` (one JPEG in, boxes, scores and classes out) served in each layout pack writes, against decoding,
letterbox, onnxruntime and NMS run in this process by the same runtime functions, at each concurrency, as ratios of
throughput (goal: at least 0.95x).

- `one-instance`: the python backend's layout, one model running the three steps (what `pack deploy` writes there);
- `ensemble`: the three-entry ensemble native backends get, its detector here on the python backend too (the layout
  the python backend had before; the PyPI server has no native backend).

    .venv/bin/python benchmarks/detect_endpoint.py [--model yolov8n] [--store benchmarks/out/store]
        [--requests 200] [--concurrency 1,8] [--settings "--workers 2 --threads 1"]
        [--out benchmarks/results/detect_endpoint.json] [--smoke]

Each server is started for its layout in a store of its own (the build hard-linked into it) and stopped after. Before
timing, each endpoint's answer is checked against the in-process one (same boxes within 1e-3 pixels). --smoke checks
the script runs: a few requests at one caller. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PACK = [sys.executable, "-m", "packager.cli"]
# The ensemble layout, deployed by pack itself with the one-instance choice turned off in that process.
AS_ENSEMBLE = (
    "import sys; from packager.targets.triton import detection, repository; "
    "detection.one_instance = repository.one_instance = lambda backend: False; "
    "from packager.cli import main; sys.exit(main(sys.argv[1:]))"
)
LAYOUTS = {"one-instance": PACK, "ensemble": [sys.executable, "-c", AS_ENSEMBLE]}


def pack(argv: list[str], *args: str) -> dict[str, Any]:
    proc = subprocess.run([*argv, *args, "--json"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"pack {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return dict(json.loads(proc.stdout))


def image() -> bytes:
    """A real photograph when ultralytics ships one (boxes for NMS to sort), else pack's synthetic JPEG."""
    try:
        import ultralytics

        return (Path(ultralytics.__file__).parent / "assets" / "bus.jpg").read_bytes()
    except (ImportError, OSError):
        from packager.serve.tasks import sample_image

        return sample_image()


def in_process(folder: Path, report: Any) -> Any:
    """detect(bytes) -> (boxes, scores, classes): the served runtime's steps and model, in this process."""
    from packager.report.formats import served
    from packager.serve.tasks import runtime_on_path
    from packager.targets.triton.detection import detection_configs
    from packager.targets.triton.repository import RepoOptions, model_config

    runtime_on_path()
    import pack_images
    import pack_runtime

    ropts = RepoOptions(backend="python", gpu=False)
    [one] = detection_configs(report, model_config(report, ropts)[0], "python", 1).values()
    params = {k: v.string_value for k, v in one.parameters.items()}
    steps = pack_images.YoloSteps(params)
    path = str(folder / served(report, "onnx").file)
    model = pack_runtime.load_model(path, "onnx", "cpu", 0, [params["pack_model_input"]], [params["pack_model_output"]])

    def detect(data: bytes) -> Any:
        pixels, meta = steps.pixels(np.frombuffer(data, dtype=np.uint8))
        return steps.detections(np.asarray(model([pixels])[0]), meta)

    return detect


def endpoint(url: str, name: str) -> Any:
    """make_caller for the load generator: each caller thread keeps its own tritonclient connection."""
    import tritonclient.http as httpclient

    def make(data: bytes) -> Any:
        client = httpclient.InferenceServerClient(url.split("://")[1], connection_timeout=60, network_timeout=120)
        item = httpclient.InferInput("image", [1, len(data)], "UINT8")
        item.set_data_from_numpy(np.frombuffer(data, dtype=np.uint8)[None])
        outs = [httpclient.InferRequestedOutput(o) for o in ("boxes", "scores", "classes")]

        def detect(_: int = 0) -> Any:
            result = client.infer(name, [item], outputs=outs)
            return tuple(result.as_numpy(o)[0] for o in ("boxes", "scores", "classes"))

        return detect

    return make


def measure(make_caller: Any, concurrency: list[int], requests: int) -> dict[int, dict[str, Any]]:
    from packager.bench.load import run_load, warm_up

    rows = {}
    for c in concurrency:
        warm_up(make_caller, c, 2)
        rows[c] = run_load(make_caller, requests=requests, concurrency=c, time_limit_s=120).summary()
    return rows


def agree(a: Any, b: Any) -> bool:
    return len(a[0]) == len(b[0]) and bool(np.allclose(a[0], b[0], atol=1e-3)) and list(a[2]) == list(b[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--store", type=Path, default=ROOT / "benchmarks" / "out" / "store")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "detect_endpoint.json")
    parser.add_argument("--settings", default="", help="extra `pack deploy` flags for both layouts, e.g. '--workers 2'")
    parser.add_argument("--smoke", action="store_true", help="a few requests at one caller: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.concurrency = 4, "1"
    concurrency = [int(c) for c in args.concurrency.split(",")]
    from packager.report.build_report import BuildReport

    if not (args.store / args.model).is_dir():
        pack(PACK, "build", args.model, "--iterations", "0", "--store", str(args.store))
    folder = max((p for p in (args.store / args.model).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    report = BuildReport.load(folder)
    data = image()
    local = in_process(folder, report)
    reference = local(data)
    results: dict[str, dict[int, dict[str, Any]]] = {
        "inprocess": measure(lambda: lambda _: local(data), concurrency, args.requests)
    }
    agreed = {}
    work = Path(tempfile.mkdtemp(prefix="pack-detect-bench-"))
    try:
        for layout, argv in LAYOUTS.items():
            store = work / layout
            shutil.copytree(folder, store / args.model / folder.name, copy_function=os.link)
            try:
                doc = pack(argv, "deploy", args.model, "--target", "triton", "--store", str(store), *args.settings.split())
                make = endpoint(doc["url"], doc["serving_model"])
                agreed[layout] = agree(make(data)(), reference)
                results[layout] = measure(lambda make=make: make(data), concurrency, args.requests)
            finally:
                subprocess.run([*PACK, "stop", "--target", "triton", "--store", str(store)], capture_output=True, cwd=ROOT)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for c in concurrency:
        base = results["inprocess"][c]["throughput_rps"]
        row: dict[str, Any] = {"concurrency": c, "inprocess_rps": base}
        for layout in LAYOUTS:
            rps = results[layout][c]["throughput_rps"]
            row[f"{layout}_rps"], row[f"{layout}_x"] = rps, round(rps / base, 3) if base else None
            row[f"{layout}_p50_ms"] = results[layout][c]["p50_ms"]
        rows.append(row)
    print(f"{'callers':>7} {'in-process rps':>14} {'one-instance rps':>16} {'x':>6} {'ensemble rps':>12} {'x':>6}")
    for r in rows:
        print(
            f"{r['concurrency']:>7} {r['inprocess_rps']:>14} {r['one-instance_rps']:>16} {r['one-instance_x']:>6} "
            f"{r['ensemble_rps']:>12} {r['ensemble_x']:>6}"
        )
    print(f"answers agree with in-process: {agreed}")
    doc = {
        "benchmark": "detect_endpoint",
        "model": args.model,
        "settings": args.settings,
        "image_bytes": len(data),
        "agree": agreed,
        "rows": rows,
    }
    doc["results"] = {k: {str(c): v for c, v in r.items()} for k, r in results.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not all(agreed.values()):
        raise SystemExit("an endpoint's answer differs from the in-process one")


if __name__ == "__main__":
    main()

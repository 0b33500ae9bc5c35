"""Soak test: a fixed number of requests at a fixed concurrency to each deployed target, nothing lost.

For every model and target: build the model into a temporary store (or use --store), deploy it with pack's own deploy
function (a local TorchServe or tritonserver on 127.0.0.1), send --requests requests from --concurrency threads
(closed loop: each thread sends its next request when the previous one is answered), check every answer against the
build's recorded eager output, stop the server. Bounded: a fixed request count and a --time-limit per run.

    errors  answered, but not HTTP 200 or not the recorded output (within the build's tolerances)
    lost    sent and never answered (connection error or timeout), or never sent before the time limit

Prints a table and writes JSON (default benchmarks/results/soak.json). Loopback only.

    python benchmarks/soak.py --requests 2000 --concurrency 32 --models tiny,resnet18 --targets torchserve,triton

Chaos (`--chaos`): once `--chaos-at` of the requests have been sent, kill (SIGKILL) the serving process of the model
once: the TorchServe worker or the Triton python-backend stub, found through /proc as a descendant of the server this
script deployed (nothing else is signalled). `--retry-for S` makes each request a client that re-sends after a failed
attempt (5xx or no answer; backoff 0.05 s doubling to 1 s) for up to S seconds; `--repair-every S` runs
`pack status --repair` (the target's status with repair) every S seconds after the kill. Recorded per run: answered
(right answers / requests), failed attempts, and recovery (from the kill to the first right answer after the last
failed attempt).

    python benchmarks/soak.py --requests 2000 --concurrency 32 --models tiny --targets torchserve,triton \
        --chaos --retry-for 60 --repair-every 2 --out benchmarks/results/soak_chaos.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.chaos import Chaos, chaos_figures, make_chaos  # noqa: E402  (the project root on sys.path first)


def log(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


def ensure_build(store: Path, model: str) -> tuple[Path, dict[str, Any]]:
    from packager.report.store import find_build

    try:
        folder = find_build(str(store), model, None)
    except Exception:
        from packager.build.pipeline import build
        from packager.build.plan import resolve
        from packager.targets import packagers

        plan = resolve(model, None, {"device": "cpu"})
        _, folder = build(plan, store, force=False, iterations=0, packagers=packagers())
    folder = Path(folder)
    return folder, json.loads((folder / "report.json").read_text())


def _expected(folder: Path, report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float, float]:
    x = np.load(folder / report["samples"]["inputs"][0])
    y = np.load(folder / report["samples"]["outputs"][0])
    out = report["outputs"][0]
    return x, y, float(out.get("atol", report["tolerance"]["atol"])), float(out.get("rtol", report["tolerance"]["rtol"]))


def torchserve_sender(
    deployed: dict[str, Any], folder: Path, report: dict[str, Any]
) -> Callable[[], Callable[[], tuple[str, float]]]:
    from packager.targets.torchserve.server import read_tokens

    x, y, atol, rtol = _expected(folder, report)
    token = read_tokens(Path(deployed["token_file"]))["inference"] if deployed.get("token_file") else None
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": report["inputs"][0]["name"],
                    "shape": list(x.shape),
                    "dtype": str(x.dtype),
                    "encoding": "base64",
                    "data": base64.b64encode(x.astype(x.dtype.newbyteorder("<")).tobytes()).decode(),
                }
            ],
            "output_encoding": "base64",
        }
    ).encode()
    url = deployed["predictions_url"]

    def factory() -> Callable[[], tuple[str, float]]:
        def send() -> tuple[str, float]:
            req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    data = json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return ("error" if exc.code >= 500 else "wrong"), time.perf_counter() - t0
            except (urllib.error.URLError, OSError, TimeoutError):
                return "lost", time.perf_counter() - t0
            ms = time.perf_counter() - t0
            try:
                got = data["outputs"][0]
                arr = np.frombuffer(base64.b64decode(got["data"]), dtype=np.dtype(got["dtype"]).newbyteorder("<")).reshape(
                    got["shape"]
                )
                ok = arr.shape == y.shape and bool(np.all(np.abs(arr - y) <= atol + rtol * np.abs(y)))
            except (KeyError, ValueError, TypeError):
                ok = False
            return ("ok" if ok else "wrong"), ms

        return send

    return factory


def triton_sender(
    deployed: dict[str, Any], folder: Path, report: dict[str, Any]
) -> Callable[[], Callable[[], tuple[str, float]]]:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    x, y, atol, rtol = _expected(folder, report)
    host = deployed["url"].split("://", 1)[1]
    model, version = deployed["serving_model"], deployed["version"]
    in_name, out_name = report["inputs"][0]["name"], report["outputs"][0]["name"]

    def factory() -> Callable[[], tuple[str, float]]:
        client = httpclient.InferenceServerClient(host, connection_timeout=60, network_timeout=60)
        item = httpclient.InferInput(in_name, list(x.shape), np_to_triton_dtype(x.dtype))
        item.set_data_from_numpy(x)
        wanted = [httpclient.InferRequestedOutput(out_name)]

        def send() -> tuple[str, float]:
            t0 = time.perf_counter()
            try:
                result = client.infer(model, [item], model_version=version, outputs=wanted)
            except InferenceServerException as exc:
                status = str(exc.status() or "")
                return ("error" if status.isdigit() or status.startswith("StatusCode") else "lost"), time.perf_counter() - t0
            except (OSError, TimeoutError):
                return "lost", time.perf_counter() - t0
            ms = time.perf_counter() - t0
            arr = result.as_numpy(out_name)
            ok = arr is not None and arr.shape == y.shape and bool(np.all(np.abs(arr - y) <= atol + rtol * np.abs(y)))
            return ("ok" if ok else "wrong"), ms

        return send

    return factory


def _send_until_answered(send: Callable[[], tuple[str, float]], retry_for: float, failures: list[float]) -> tuple[str, float]:
    """One request, re-sent after a failed attempt (5xx or no answer) until `retry_for` seconds have passed."""
    start, delay = time.perf_counter(), 0.05
    while True:
        outcome, _ = send()
        if outcome in ("ok", "wrong"):
            return outcome, time.perf_counter() - start
        failures.append(time.monotonic())
        if time.perf_counter() - start + delay > retry_for:
            return outcome, time.perf_counter() - start
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def closed_loop(
    factory: Callable[[], Callable[[], tuple[str, float]]],
    requests: int,
    concurrency: int,
    time_limit: float,
    chaos: Chaos | None = None,
    retry_for: float = 0.0,
) -> dict[str, Any]:
    lock = threading.Lock()
    issued = [0]
    outcomes: dict[str, int] = {"ok": 0, "error": 0, "wrong": 0, "lost": 0}
    latencies: list[float] = []
    failures: list[float] = []  # when each failed attempt ended (time.monotonic)
    answered_at: list[float] = []  # when each right answer came
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        send = factory()
        while True:
            with lock:
                if issued[0] >= requests or time.monotonic() > deadline:
                    return
                issued[0] += 1
                if chaos is not None:
                    chaos.tick(issued[0])
            outcome, seconds = _send_until_answered(send, retry_for, failures)
            with lock:
                outcomes[outcome] += 1
                if outcome == "ok":
                    latencies.append(seconds * 1000)
                    answered_at.append(time.monotonic())

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic() + 90))
    wall = time.perf_counter() - t0
    if chaos is not None:
        chaos.finish()
    never_sent = requests - issued[0]
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "sent": issued[0],
        "ok": outcomes["ok"],
        "errors": outcomes["error"] + outcomes["wrong"],
        "lost": outcomes["lost"] + never_sent + (issued[0] - sum(outcomes.values())),
        "answered_pct": round(100.0 * outcomes["ok"] / requests, 2),
        "failed_attempts": len(failures),
        "seconds": round(wall, 2),
        "throughput_rps": round(outcomes["ok"] / wall, 1) if wall else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        **(chaos_figures(chaos, failures, answered_at) if chaos is not None else {}),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from packager.report.build_report import BuildReport
    from packager.targets import get_target

    own_store = args.store is None
    store = Path(args.store or tempfile.mkdtemp(prefix="pack-soak-")).resolve()
    results = []
    try:
        for model in args.models:
            folder, report = ensure_build(store, model)
            for target in args.targets:
                module = get_target(target)
                opts = module.Options(store=store, timeout=args.deploy_timeout)
                log(f"deploying {model} to {target}")
                t0 = time.perf_counter()
                deployed = module.deploy(folder, BuildReport.load(folder), opts)
                deploy_s = round(time.perf_counter() - t0, 2)
                try:
                    factory = (torchserve_sender if target == "torchserve" else triton_sender)(deployed, folder, report)
                    factory()()  # one warm-up request, not counted
                    log(f"{model} on {target}: {args.requests} requests at concurrency {args.concurrency}")
                    row = {
                        "model": model,
                        "target": target,
                        "deploy_s": deploy_s,
                        **closed_loop(
                            factory,
                            args.requests,
                            args.concurrency,
                            args.time_limit,
                            make_chaos(args, module, opts, target, model),
                            args.retry_for,
                        ),
                    }
                finally:
                    module.stop(opts)
                row["server_stopped"] = True
                results.append(row)
                log(f"{model} on {target}: ok {row['ok']}, errors {row['errors']}, lost {row['lost']}, p99 {row['p99_ms']} ms")
    finally:
        if own_store:
            for target in args.targets:
                try:
                    chosen = get_target(target)
                    chosen.stop(chosen.Options(store=store))
                except Exception:
                    pass
            shutil.rmtree(store, ignore_errors=True)
    return {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": list(args.load_at_start),
        },
        "command": " ".join(["python", "benchmarks/soak.py", *sys.argv[1:]]),
        "results": results,
    }


def table(doc: dict[str, Any]) -> str:
    head = ["model", "target", "requests", "conc", "ok", "errors", "lost", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    rows = [
        [
            r["model"],
            r["target"],
            r["requests"],
            r["concurrency"],
            r["ok"],
            r["errors"],
            r["lost"],
            r["throughput_rps"],
            r["p50_ms"],
            r["p95_ms"],
            r["p99_ms"],
            r["max_ms"],
        ]
        for r in doc["results"]
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    chaos = [r for r in doc["results"] if "chaos" in r]
    if chaos:
        lines += ["", "| model | target | killed pid | answered % | failed attempts | recovery s | repairs |", "|" + "---|" * 7]
        lines += [
            f"| {r['model']} | {r['target']} | {r['chaos']['killed_pid']} | {r['answered_pct']} | {r['failed_attempts']} | "
            f"{r['chaos']['recovery_s']} | {_repairs(r['chaos']['repairs'])} |"
            for r in chaos
        ]
    return "\n".join(lines)


def _repairs(repairs: list[dict[str, Any]]) -> str:
    done = [r for r in repairs if (r.get("repair") or {}).get("repaired")]
    if not done:
        return "none needed" if repairs else "-"
    return ", ".join(f"reloaded {r['at_s']} s after the kill in {r['repair']['seconds']} s" for r in done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--models", type=lambda s: s.split(","), default=["tiny", "resnet18"])
    parser.add_argument("--targets", type=lambda s: s.split(","), default=["torchserve", "triton"])
    parser.add_argument("--store", help="a store that already holds the builds (default: a temporary one, removed after)")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per model and target")
    parser.add_argument("--deploy-timeout", type=float, default=300.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    parser.add_argument("--chaos", action="store_true", help="kill the model's worker (TorchServe) or stub (Triton) once")
    parser.add_argument("--chaos-at", type=float, default=0.25, help="the fraction of requests sent before the kill")
    parser.add_argument("--retry-for", type=float, default=0.0, help="seconds a request is re-sent after failed attempts")
    parser.add_argument("--repair-every", type=float, default=0.0, help="seconds between `pack status --repair` after the kill")
    args = parser.parse_args(argv)
    for target in args.targets:
        if target not in ("torchserve", "triton"):
            parser.error(f"unknown target {target!r}: torchserve or triton")
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    args.load_at_start = [round(v, 2) for v in os.getloadavg()]
    doc = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(table(doc))
    print(f"load average at start: {' '.join(map(str, args.load_at_start))}; JSON: {args.out}")
    bad = [r for r in doc["results"] if r["errors"] or r["lost"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

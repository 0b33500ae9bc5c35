"""`pack bench`: the same build served in-process, by TorchServe and by Triton, measured side by side.

Rows (see docs/bench.md):
    inprocess-eager        pack's TorchServe handler code in this process, eager PyTorch model, image bytes in
    inprocess-onnx         the same handler code with onnxruntime (the runtime TorchServe serves by default)
    inprocess-onnx-tensor  onnxruntime alone on the pre-processed tensor
    torchserve             image bytes (or tensor JSON) to a TorchServe launched by the bench   (vs inprocess-eager)
    triton                 the pre-processed tensor to a tritonserver launched by the bench     (vs inprocess-onnx-tensor)
plus an eager-vs-ONNX comparison at one batch size. Servers run from a temporary store and are stopped at the end,
also on errors and Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..report import BuildReport

log = logging.getLogger(__name__).info

TARGETS = ("inprocess", "torchserve", "triton")
GOALS = {  # the targets: served / in-process throughput, and ONNX / eager at batch 8
    "torchserve": 0.8,
    "triton": 0.9,
    "onnx_batch": 1.3,
}


@dataclass
class BenchOptions:
    model: str
    version: str | None = None
    store: Path = Path("model_store")
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    requests: int = 200
    time_limit_s: float = 120.0
    warmup: int = 2
    threads: int = 0  # in-process torch / onnxruntime intra-op threads; 0: the libraries' defaults
    batch: int = 8
    timeout: float = 180.0
    torchserve: dict[str, Any] = field(default_factory=dict)
    triton: dict[str, Any] = field(default_factory=dict)
    command: str = ""


# Server settings the bench uses unless told otherwise (see docs/bench.md for why).
TORCHSERVE_DEFAULTS = {"workers": 1, "batch_size": 1, "max_batch_delay_ms": 0, "format": "onnx"}
TRITON_DEFAULTS = {"instances": 1, "max_batch": 8, "max_queue_delay_ms": 1}


def parse_list(text: str, what: str, cast: Callable[[str], Any] = str) -> list[Any]:
    try:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--{what} {text!r} is not a comma-separated list", f"e.g. --{what} 1,8,32") from None
    if not items:
        raise UsageError(f"--{what} is empty")
    return items


def check_options(o: BenchOptions) -> None:
    unknown = [t for t in o.targets if t not in TARGETS]
    if unknown:
        raise UsageError(f"unknown bench target {unknown[0]!r}", f"use {', '.join(TARGETS)}")
    if any(c < 1 or c > 256 for c in o.concurrency):
        raise UsageError("--concurrency values must be between 1 and 256")
    if o.requests < 1:
        raise UsageError("--requests must be at least 1")
    if o.time_limit_s <= 0:
        raise UsageError("--time-limit must be positive")


def _host() -> dict[str, Any]:
    from .gpu import gpu_name

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem = None
    versions = {"python": platform.python_version()}
    for mod in ("torch", "onnxruntime", "numpy"):
        m = sys.modules.get(mod)
        versions[mod] = getattr(m, "__version__", None) if m else None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": mem,
        "gpu": gpu_name(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def _locate(o: BenchOptions, scratch: Path) -> tuple[Path, BuildReport]:
    from ..record import load_report
    from ..store import find_build, versions

    if versions(o.store, o.model) or o.version is not None:
        folder = find_build(o.store, o.model, o.version)
        return folder, load_report(folder)
    from ..registry import get_entry

    if get_entry(o.model) is None:
        find_build(o.store, o.model, None)  # raises the usual "no build" error
    from ..build import build
    from ..plan import resolve
    from ..targets import packagers

    log(
        f"no build of {o.model} in {o.store}: building it into the bench's temporary store (`pack build {o.model}` once to skip this)"
    )
    report, folder = build(
        resolve(o.model, None, {"device": "cpu"}), scratch / "builds", False, iterations=0, packagers=packagers()
    )
    return folder, report


def _run_one(name: str, make_caller: Any, c: int, o: BenchOptions) -> dict[str, Any]:
    from .gpu import GpuSampler
    from .load import run_load

    with GpuSampler() as gpu:
        result = run_load(make_caller, o.requests, c, o.time_limit_s, warmup=o.warmup)
    summary = result.summary()
    summary["gpu_util_pct"] = gpu.mean_util_pct
    summary["load_average"] = round(os.getloadavg()[0], 2)
    log(
        f"{name} c={c}: {summary['throughput_rps']:.1f} req/s, p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms"
        + (f", {summary['errors']} error(s): {summary['error_samples'][0]}" if summary["errors"] else "")
        + (" (time limit reached)" if summary["timed_out"] else "")
    )
    return summary


def _row(
    name: str,
    target: str,
    runtime: str,
    payload: str,
    work: str,
    compare_with: str | None,
    cold_start: dict[str, Any],
    memory: dict[str, Any],
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "target": target,
        "runtime": runtime,
        "payload": payload,
        "work": work,
        "compare_with": compare_with,
        "cold_start": cold_start,
        "memory": memory,
        "gpu_util_pct": None,
        "settings": settings or {},
        "runs": [],
    }


def _in_process_rows(
    folder: Path, report: BuildReport, o: BenchOptions, body: bytes, payload: str
) -> tuple[list[tuple[dict[str, Any], Any]], list, dict[str, Any]]:
    """The in-process rows, ready to run: [(row, make_caller)], the pre-processed tensor, and memory / batch figures."""
    from . import inprocess as ip

    torch_threads = ip.set_torch_threads(o.threads)
    threads = {"torch": torch_threads, "onnxruntime": o.threads or "default (one per physical core)"}
    log(f"in-process: torch threads {torch_threads}, onnxruntime intra-op threads {threads['onnxruntime']}")
    t0 = time.perf_counter()
    module, eager_kind = ip.eager_module(folder, report)
    eager = ip.eager_runner(module)
    eager_handler = ip.handler_instance(folder, report, eager, "torchscript")
    eager_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    onnx = ip.onnx_runner(folder, report, o.threads)
    onnx_handler = ip.handler_instance(folder, report, onnx, "onnx")
    onnx_load = time.perf_counter() - t0
    arrays = ip.preprocessed(eager_handler, body)
    log("in-process memory: a fresh process per runtime with the model loaded")
    rss = {"eager": ip.measure_rss_subprocess(folder, "eager"), "onnx": ip.measure_rss_subprocess(folder, "onnx")}
    handler = ip.handler_file(report)
    work = f"decode + pre-process + model + post-process + JSON answer ({handler}, the TorchServe handler's own code)"
    shape = " ".join(f"{list(a.shape)} {a.dtype}" for a in arrays)
    rows = [
        (
            _row(
                "inprocess-eager",
                "inprocess",
                eager_kind,
                payload,
                work,
                None,
                {"launch_s": None, "load_s": round(eager_load, 2)},
                {"rss_mb": rss["eager"].get("rss_mb"), "overhead_mb": None},
                {"threads": threads},
            ),
            lambda: ip.pipeline(eager_handler, body),
        ),
        (
            _row(
                "inprocess-onnx",
                "inprocess",
                "onnxruntime (pack_runtime.load_model)",
                payload,
                work,
                "inprocess-eager",
                {"launch_s": None, "load_s": round(onnx_load, 2)},
                {"rss_mb": rss["onnx"].get("rss_mb"), "overhead_mb": None},
                {"threads": threads},
            ),
            lambda: ip.pipeline(onnx_handler, body),
        ),
        (
            _row(
                "inprocess-onnx-tensor",
                "inprocess",
                "onnxruntime",
                f"pre-processed tensor {shape}",
                "model only",
                None,
                {"launch_s": None, "load_s": round(onnx_load, 2)},
                {"rss_mb": rss["onnx"].get("rss_mb"), "overhead_mb": None},
                {"threads": threads},
            ),
            lambda: ip.tensor_call(onnx, arrays),
        ),
    ]
    iterations = max(3, min(30, o.requests // max(o.batch, 1)))
    log(f"eager vs ONNX at batch {o.batch} ({iterations} runs each)")
    batch = ip.batch_comparison(eager, onnx, arrays, o.batch, iterations, o.time_limit_s)
    batch["eager_runtime"] = eager_kind
    batch["threads"] = threads
    batch["load_average"] = round(os.getloadavg()[0], 2)
    log(
        f"batch {o.batch}: eager {batch['eager']['items_per_s']} items/s, onnx {batch['onnx']['items_per_s']} items/s ({batch['onnx_over_eager']}x)"
    )
    return rows, arrays, {"rss": rss, "batch": batch}


def _ratios(rows: list[dict[str, Any]]) -> None:
    by_name = {r["name"]: r for r in rows}
    for row in rows:
        runs = row["runs"]
        utils = [r["gpu_util_pct"] for r in runs if r.get("gpu_util_pct") is not None]
        row["gpu_util_pct"] = round(sum(utils) / len(utils), 1) if utils else None
        row["peak_throughput_rps"] = max((r["throughput_rps"] for r in runs), default=0.0)
        base = by_name.get(row["compare_with"] or "")
        same = by_name.get(row.get("same_runtime_baseline") or "")
        for run in runs:
            for key, ref in (("ratio", base), ("ratio_same_runtime", same)):
                if ref is None:
                    run[key] = None
                    continue
                match = next((b for b in ref["runs"] if b["concurrency"] == run["concurrency"]), None)
                run[key] = (
                    round(run["throughput_rps"] / match["throughput_rps"], 3) if match and match["throughput_rps"] else None
                )
        ref_peak = max((r["throughput_rps"] for r in base["runs"]), default=0.0) if base else 0.0
        row["peak_ratio"] = round(row["peak_throughput_rps"] / ref_peak, 3) if ref_peak else None
        rs = [r["ratio"] for r in runs if r.get("ratio") is not None]
        row["min_ratio"] = min(rs) if rs else None


def _goals(rows: list[dict[str, Any]], batch: dict[str, Any] | None, model: str) -> list[dict[str, Any]]:
    by_name = {r["name"]: r for r in rows}
    out = []
    for target, base in (("torchserve", "inprocess-eager"), ("triton", "inprocess-onnx-tensor")):
        row = by_name.get(target)
        if row is None or row.get("peak_ratio") is None:
            continue
        out.append(
            {
                "goal": f"{target} throughput >= {GOALS[target]:.0%} of {base}",
                "peak_ratio": row["peak_ratio"],
                "min_ratio": row["min_ratio"],
                "met": row["peak_ratio"] >= GOALS[target],
            }
        )
    if batch:
        out.append(
            {
                "goal": f"ONNX (onnxruntime) >= {GOALS['onnx_batch']}x eager at batch {batch['batch']}"
                + ("" if model == "resnet50" else " (the issue sets it for resnet50 at batch 8)"),
                "ratio": batch["onnx_over_eager"],
                "met": batch["onnx_over_eager"] >= GOALS["onnx_batch"],
            }
        )
    return out


class _Terminated(KeyboardInterrupt):
    pass


def run_bench(o: BenchOptions) -> dict[str, Any]:
    from . import inprocess as ip
    from . import targets as tg

    check_options(o)
    started = time.time()
    host = _host()
    if host["load_average"][0] >= 0.5:
        log(f"the machine is busy (load average {host['load_average'][0]}); timings will be lower than on a quiet machine")
    scratch = Path(tempfile.mkdtemp(prefix="pack-bench-"))
    server_store = scratch / "store"
    launched: list[str] = []
    stopped: list[dict[str, Any]] = []
    previous = None
    if threading_main():

        def on_term(signum: int, frame: Any) -> None:
            raise _Terminated()

        previous = signal.signal(signal.SIGTERM, on_term)
    served: dict[str, Any] = {}
    try:
        folder, report = _locate(o, scratch)
        body, content_type, payload = ip.request_payload(folder, report)
        prepared: list[tuple[dict[str, Any], Any]] = []
        extra: dict[str, Any] = {"rss": {}, "batch": None}
        arrays = None
        if "inprocess" in o.targets:
            prepared, arrays, extra = _in_process_rows(folder, report, o, body, payload)
        elif "triton" in o.targets:
            arrays = ip.preprocessed(ip.handler_instance(folder, report, lambda a: a, "onnx"), body)
        with_baselines = "inprocess" in o.targets
        for target in [t for t in o.targets if t != "inprocess"]:  # deployed one after the other: cold starts do not overlap
            launched.append(target)
            if target == "torchserve":
                settings = {**TORCHSERVE_DEFAULTS, **{k: v for k, v in o.torchserve.items() if v is not None}}
                server = tg.torchserve(folder, report, server_store, body, content_type, payload, settings, o.timeout)
                runtime = (
                    "onnxruntime in TorchServe workers" if settings["format"] == "onnx" else "TorchScript in TorchServe workers"
                )
                work = "the same handler code as the in-process rows, behind TorchServe's frontend"
                same = "inprocess-onnx" if settings["format"] == "onnx" else None
                rss_key = "onnx" if settings["format"] == "onnx" else "eager"
            else:
                settings = {**TRITON_DEFAULTS, **{k: v for k, v in o.triton.items() if v is not None}}
                server = tg.triton(folder, report, server_store, arrays, settings, o.timeout)
                runtime = "onnxruntime in Triton's python backend"
                work = "model only (tensor in, raw outputs back)"
                same = None
                rss_key = "onnx"
            served[target] = server
            base_mb = (extra["rss"].get(rss_key) or {}).get("rss_mb")
            row = _row(
                target,
                target,
                runtime,
                server.payload,
                work,
                server.compare_with if with_baselines else None,
                server.cold_start,
                {"rss_mb": None, "rss_after_deploy_mb": server.memory_mb(), "inprocess_rss_mb": base_mb, "overhead_mb": None},
                server.settings,
            )
            row["same_runtime_baseline"] = same if with_baselines else None
            prepared.append((row, server.make_caller(max(o.timeout, 60.0))))
        # Every row at one concurrency, then the next concurrency: rows compared with each other are measured minutes
        # apart at most, so a change in the machine's load moves them together.
        for c in o.concurrency:
            for row, make_caller in prepared:
                row["runs"].append(_run_one(row["name"], make_caller, c, o))
        for target, server in served.items():
            row = next(r for r, _ in prepared if r["name"] == target)
            memory = row["memory"]
            after = server.memory_mb()
            memory["rss_mb"] = max(x for x in (memory["rss_after_deploy_mb"], after, 0.0) if x is not None) or None
            memory["processes"] = len(server.pids())
            if memory["rss_mb"] and memory["inprocess_rss_mb"]:
                memory["overhead_mb"] = round(memory["rss_mb"] - memory["inprocess_rss_mb"], 1)
        for target in list(launched):
            stopped.append(_stop(target, server_store, served[target].pids if target in served else (lambda: [])))
            launched.remove(target)
        rows = [r for r, _ in prepared]
    finally:
        for target in list(launched):
            try:
                stopped.append(_stop(target, server_store, served[target].pids if target in served else (lambda: [])))
            except Exception as exc:  # keep stopping the others; say what is left
                log(f"could not stop the bench's {target}: {exc}")
        shutil.rmtree(scratch, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _ratios(rows)
    batch = extra.get("batch")
    notes = []
    if "inprocess" not in o.targets:
        notes.append("no in-process rows (add inprocess to --targets): no ratios, no memory overhead")
    if os.cpu_count() and max(o.concurrency) > 4 * os.cpu_count():
        notes.append(
            f"concurrency {max(o.concurrency)} on {os.cpu_count()} CPU cores: latency grows with the queue, throughput does not"
        )
    host["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "bench": 1,
        "command": o.command,
        "model": report.name,
        "version": report.version,
        "build": str(folder.resolve()) if folder.exists() else None,
        "task": report.task,
        "weights": report.weights,
        "host": host,
        "settings": {
            "requests": o.requests,
            "concurrency": o.concurrency,
            "time_limit_s": o.time_limit_s,
            "warmup_per_caller": o.warmup,
            "client": "closed loop, one keep-alive HTTP connection per caller thread, 127.0.0.1",
        },
        "rows": rows,
        "batch_comparison": batch,
        "goals": _goals(rows, batch, report.name),
        "servers_stopped": stopped,
        "notes": notes,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
    }


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _stop(target: str, store: Path, pids: Callable[[], list[int]]) -> dict[str, Any]:
    from .targets import stop

    result = stop(target, store)
    left = [p for p in pids() if _alive(p)]
    return {"target": target, "stopped": bool(result.get("stopped")), "processes_left": left}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

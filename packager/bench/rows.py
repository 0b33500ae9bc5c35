"""The rows of `pack bench` (docs/bench.md): a row's document, the in-process rows ready to run, and what is computed
over finished rows: throughput ratios against the row each is compared with, and the issue's goals met or not."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..report.build_report import BuildReport

if TYPE_CHECKING:
    import numpy as np

    from ..targets import BenchProfile
    from . import BenchOptions

logger = logging.getLogger(__name__)

GOALS = {  # ONNX / eager at batch 8; a server's own goal against its compared row is its bench profile's (`goal`)
    "onnx_batch": 1.3,
    "same_runtime": 0.95,  # a server at its tuned settings against the same runtime in-process (served efficiency)
}


def make_row(
    name: str,
    target: str,
    runtime: str,
    payload: str,
    work: str,
    compare_with: str | None,
    cold_start: dict[str, Any],
    memory: dict[str, Any],
    settings: dict[str, Any] | None = None,
    served_file: str | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "target": target,
        "runtime": runtime,
        "served_file": served_file,  # the build-relative file the row serves (None: the eager model, not a served file)
        "payload": payload,
        "work": work,
        "compare_with": compare_with,
        "cold_start": cold_start,
        "memory": memory,
        "gpu_util_pct": None,
        "settings": settings or {},
        "runs": [],
    }


def in_process_rows(
    folder: Path, report: BuildReport, o: BenchOptions, body: bytes, payload: str
) -> tuple[list[tuple[dict[str, Any], Any]], list[np.ndarray], dict[str, Any]]:
    """The in-process rows, ready to run: [(row, make_caller)], the pre-processed tensor, and memory / batch figures."""
    from . import inprocess as ip

    torch_threads = ip.set_torch_threads(o.threads or 0)
    threads = {"torch": torch_threads, "onnxruntime": o.threads or "default (one per physical core)"}
    logger.debug(f"in-process: torch threads {torch_threads}, onnxruntime intra-op threads {threads['onnxruntime']}")
    t0 = time.perf_counter()
    module, eager_kind = ip.eager_module(folder, report)
    eager = ip.eager_runner(module)
    eager_handler = ip.handler_instance(folder, report, eager, "torchscript")
    eager_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    onnx = ip.onnx_runner(folder, report, o.threads or 0)
    onnx_handler = ip.handler_instance(folder, report, onnx, "onnx")
    onnx_load = time.perf_counter() - t0
    onnx_file = ip.served_onnx(report)
    arrays = ip.preprocessed(eager_handler, body)
    logger.debug("in-process memory: a fresh process per runtime with the model loaded")
    rss = {"eager": ip.measure_rss_subprocess(folder, "eager"), "onnx": ip.measure_rss_subprocess(folder, "onnx")}
    handler = ip.handler_file(report)
    work = f"decode + pre-process + model + post-process + JSON answer ({handler}, the TorchServe handler's own code)"
    shape = " ".join(f"{list(a.shape)} {a.dtype}" for a in arrays)
    rows = [
        (
            make_row(
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
            make_row(
                "inprocess-onnx",
                "inprocess",
                "onnxruntime (pack_runtime.load_model)",
                payload,
                work,
                "inprocess-eager",
                {"launch_s": None, "load_s": round(onnx_load, 2)},
                {"rss_mb": rss["onnx"].get("rss_mb"), "overhead_mb": None},
                {"threads": threads},
                onnx_file,
            ),
            lambda: ip.pipeline(onnx_handler, body),
        ),
        (
            make_row(
                "inprocess-onnx-tensor",
                "inprocess",
                "onnxruntime",
                f"pre-processed tensor {shape}",
                "model only",
                None,
                {"launch_s": None, "load_s": round(onnx_load, 2)},
                {"rss_mb": rss["onnx"].get("rss_mb"), "overhead_mb": None},
                {"threads": threads},
                onnx_file,
            ),
            lambda: ip.tensor_call(onnx, arrays),
        ),
    ]
    iterations = max(3, min(30, o.requests // max(o.batch, 1)))
    logger.info(f"eager vs ONNX at batch {o.batch} ({iterations} runs each)")
    batch = ip.batch_comparison(eager, onnx, arrays, o.batch, iterations, o.time_limit_s)
    batch["eager_runtime"] = eager_kind
    batch["threads"] = threads
    batch["load_average"] = round(os.getloadavg()[0], 2)
    logger.info(
        f"batch {o.batch}: eager {batch['eager']['items_per_s']} items/s, onnx {batch['onnx']['items_per_s']} items/s "
        f"({batch['onnx_over_eager']}x)"
    )
    return rows, arrays, {"rss": rss, "batch": batch}


def ratios(rows: list[dict[str, Any]]) -> None:
    by_name = {r["name"]: r for r in rows}
    for row in rows:
        runs = row["runs"]
        utils = [r["gpu_util_pct"] for r in runs if r.get("gpu_util_pct") is not None]
        row["gpu_util_pct"] = round(sum(utils) / len(utils), 1) if utils else None
        row["peak_throughput_rps"] = max((r["throughput_rps"] for r in runs), default=0.0)
        base = by_name.get(row["compare_with"] or "")
        same = by_name.get(row.get("same_runtime_baseline") or "")
        http = by_name.get(row.get("http_baseline") or "")
        for run in runs:
            for key, ref in (("ratio", base), ("ratio_same_runtime", same), ("vs_http_baseline", http)):
                if ref is None:
                    run[key] = None
                    continue
                match = next((b for b in ref["runs"] if b["concurrency"] == run["concurrency"]), None)
                run[key] = (
                    round(run["throughput_rps"] / match["throughput_rps"], 3) if match and match["throughput_rps"] else None
                )
        ref_peak = max((r["throughput_rps"] for r in base["runs"]), default=0.0) if base else 0.0
        row["peak_ratio"] = round(row["peak_throughput_rps"] / ref_peak, 3) if ref_peak else None
        http_peak = max((r["throughput_rps"] for r in http["runs"]), default=0.0) if http else 0.0
        row["peak_vs_http_baseline"] = round(row["peak_throughput_rps"] / http_peak, 3) if http_peak else None
        rs = [r["ratio"] for r in runs if r.get("ratio") is not None]
        row["min_ratio"] = min(rs) if rs else None


def goals(
    rows: list[dict[str, Any]], batch: dict[str, Any] | None, model: str, profiles: dict[str, BenchProfile]
) -> list[dict[str, Any]]:
    """The issue's goals, met or not: each server row's profile goal against the row it is compared with, served
    efficiency, and ONNX over eager at one batch size."""
    by_name = {r["name"]: r for r in rows}
    out = []
    for target, profile in profiles.items():
        row = by_name.get(target)
        if row is None or row.get("peak_ratio") is None or profile.goal is None:
            continue
        out.append(
            {
                "goal": f"{target} throughput >= {profile.goal:.0%} of {row['compare_with']}",
                "peak_ratio": row["peak_ratio"],
                "min_ratio": row["min_ratio"],
                "met": row["peak_ratio"] >= profile.goal,
            }
        )
    out += _efficiency(by_name, profiles)
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


def _efficiency(by_name: dict[str, dict[str, Any]], profiles: dict[str, BenchProfile]) -> list[dict[str, Any]]:
    """Served efficiency: each server's peak throughput against the same runtime in-process (its profile's
    `same_runtime`; the peak over the same concurrencies), at the settings it was measured with (`tuned` when `pack
    tune` chose them)."""
    out = []
    for target, profile in profiles.items():
        row, ref = by_name.get(target), by_name.get(profile.same_runtime or "")
        if row is None or ref is None:
            continue
        peak = max((r["throughput_rps"] for r in ref["runs"]), default=0.0)
        if not peak:
            continue
        ratio = round(row["peak_throughput_rps"] / peak, 3)
        tuned = bool((row.get("settings") or {}).get("tuned"))
        out.append(
            {
                "goal": f"{target} at its {'tuned' if tuned else 'default (not tuned)'} settings >= "
                f"{GOALS['same_runtime']:.0%} of {profile.same_runtime}",
                "peak_ratio": ratio,
                "tuned": tuned,
                "met": ratio >= GOALS["same_runtime"],
            }
        )
    return out

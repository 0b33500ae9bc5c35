"""`pack bench`: the server comparison for one model (in-process baselines, TorchServe, Triton); see docs/bench.md."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from ..console import emit_json, run
from .app import SECONDS, common, format_option, main, ranged, store_option, version_option

logger = logging.getLogger(__name__)


@main.command("bench")
@click.argument("model")
@version_option("Build version (default: the latest; a built-in model missing from the store is built into a temporary store).")
@store_option
@click.option(
    "--targets",
    default="inprocess,fastapi,triton,torchserve",
    show_default=True,
    help="Rows to measure: inprocess, fastapi, triton, torchserve.",
)
@click.option("--concurrency", default="1,8,32", show_default=True, help="Concurrent callers per run, comma-separated.")
@ranged("--requests", 1, 100000, 200, "Timed requests per run (per row and concurrency).")
@ranged("--time-limit", 1, 3600, 120.0, "Seconds a run may take; it stops early past it.")
@ranged("--warmup", 0, 100, 2, "Untimed requests per caller before each run.")
@ranged("--threads", 0, 256, 0, "In-process torch/onnxruntime threads (0: the libraries' defaults).")
@ranged("--batch", 1, 256, 8, "Batch size of the in-process eager-vs-ONNX comparison.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG: latency vs throughput per row.")
@click.option("--workers", type=click.IntRange(1, 64), help="TorchServe workers (bench default 1).")
@click.option("--batch-size", type=click.IntRange(1, 256), help="TorchServe batch size (bench default 1).")
@click.option("--max-batch-delay", type=click.IntRange(0, 10000), help="TorchServe max batch delay, ms (bench default 0).")
@format_option("What TorchServe serves (default onnx).")
@click.option("--instances", type=click.IntRange(1, 64), help="Triton instance count (bench default 1).")
@click.option("--max-batch", type=click.IntRange(0, 256), help="Triton max_batch_size (bench default 8).")
@click.option("--max-queue-delay", type=click.IntRange(0, 10000), help="Triton dynamic batching delay, ms (bench default 1).")
@click.option("--timeout", type=SECONDS, default=180.0, show_default=True, help="Seconds to wait for a server and its model.")
@common
def bench_cmd(
    model: str,
    version: str | None,
    store: str,
    targets: str,
    concurrency: str,
    requests: int,
    time_limit: float,
    warmup: int,
    threads: int,
    batch: int,
    plot_path: str | None,
    workers: int | None,
    batch_size: int | None,
    max_batch_delay: int | None,
    fmt: str | None,
    instances: int | None,
    max_batch: int | None,
    max_queue_delay: int | None,
    timeout: float,
    as_json: bool,
    debug: bool,
) -> None:
    """Measure MODEL in-process and behind TorchServe and Triton: cold start, memory, throughput, latency.

    Servers are launched from a temporary store and stopped at the end. See docs/bench.md.
    """

    def body(out: Any) -> None:
        import sys

        from ..bench import BenchOptions, parse_list, run_bench
        from ..bench.report import plot, text_table

        options = BenchOptions(
            model=model,
            version=version,
            store=Path(store),
            targets=parse_list(targets, "targets"),
            concurrency=parse_list(concurrency, "concurrency", int),
            requests=requests,
            time_limit_s=time_limit,
            warmup=warmup,
            threads=threads,
            batch=batch,
            timeout=timeout,
            torchserve={"workers": workers, "batch_size": batch_size, "max_batch_delay_ms": max_batch_delay, "format": fmt},
            triton={"instances": instances, "max_batch": max_batch, "max_queue_delay_ms": max_queue_delay},
            command="pack " + " ".join(sys.argv[1:]),
        )
        result = run_bench(options)
        if plot_path:
            result["plot"] = str(plot(result, Path(plot_path)))
            logger.info(f"wrote {plot_path}")
        if as_json:
            emit_json(out, result)
        else:
            out.write(text_table(result) + "\n")

    run(debug, body)

"""`pack bench`: the server comparison for one model (in-process baselines and every server pack deploys to); see
docs/bench.md. Its rows and their server settings come from the registry: the targets with a bench profile, and the
settings their profiles say a flag may set (each flag declared once, packager/serve/settings.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from ..bench import INPROCESS, bench_targets
from ..bench.settings import profiles
from ..console import emit_json, run
from .app import SECONDS, common, format_option, main, ranged, setting_option, store_option, version_option

logger = logging.getLogger(__name__)

ROWS = bench_targets()  # what --targets may name: the in-process rows, then every target with a bench profile


def _scope(setting: str) -> str:
    """The rows a setting's flag applies to (the in-process rows run at --threads too)."""
    return ", ".join([INPROCESS] * (setting == "threads") + [n for n, p in profiles().items() if setting in p.settings])


@main.command("bench")
@click.argument("model")
@version_option("Build version (default: the latest; a built-in model missing from the store is built into a temporary store).")
@store_option
@click.option("--targets", default=",".join(ROWS), show_default=True, help=f"Rows to measure: {', '.join(ROWS)}.")
@click.option("--concurrency", default="1,8,32", show_default=True, help="Concurrent callers per run, comma-separated.")
@ranged("--requests", 1, 100000, 200, "Timed requests per run (per row and concurrency).")
@ranged("--time-limit", 1, 3600, 120.0, "Seconds a run may take; it stops early past it.")
@ranged("--warmup", 0, 100, 2, "Untimed requests per caller before each run, then 1 s of untimed load (as pack tune); 0: none.")
@setting_option("threads", scope=_scope("threads"))
@ranged("--batch", 1, 256, 8, "Batch size of the in-process eager-vs-ONNX comparison.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG: latency vs throughput per row.")
@setting_option("workers", scope=_scope("workers"))
@setting_option("batch_size", scope=_scope("batch_size"))
@setting_option("max_batch_delay_ms", scope=_scope("max_batch_delay_ms"))
@format_option(f"Which export a server serves (bench default onnx). [{_scope('format')}]")
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
    threads: int | None,
    batch: int,
    plot_path: str | None,
    fmt: str | None,
    timeout: float,
    as_json: bool,
    debug: bool,
    **settings: Any,
) -> None:
    """Measure MODEL in-process and behind every server pack deploys to: cold start, memory, throughput, latency.

    Servers are launched from a temporary store and stopped at the end. A server setting given applies to every row
    whose server has it; otherwise a row runs at what `pack tune` chose for the build, else the bench's default for
    that server. See docs/bench.md.
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
            settings={**settings, "format": fmt},
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

"""`pack tune`: the best server settings under a p99 bound, searched on the real server (see docs/tune.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..console import emit_json, run
from ..targets import TUNABLE, capable
from .app import Number, common, main, ranged, rewrite_line, sign_key_option, store_option, version_option

TUNABLE_TARGETS = list(capable(TUNABLE))  # the registry's targets that `pack tune` can tune, in order


@main.command("tune")
@click.argument("model")
@version_option()
@click.option("--target", type=click.Choice(TUNABLE_TARGETS), default=TUNABLE_TARGETS[0], show_default=True)
@click.option("--p99-ms", type=Number(0.001, 3_600_000), help="Latency bound: the best setting has p99 at most this.")
@ranged("--budget-s", 10, 7200, 240.0, "Seconds the search may take (deploys included); it stops at the last point that fits.")
@ranged("--concurrency", 1, 256, 8, "Concurrent callers (closed loop) while a point is measured.")
@ranged("--window-s", 0.5, 60, 2.0, "Seconds of one measurement window (repeated until two agree within 10%).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write the frontier as a PNG here.")
@click.option("--no-write", is_flag=True, help="Measure and report only; leave the build as it is.")
@ranged("--timeout", 1, 3600, 180.0, "Seconds to wait for a server and its model at each point.")
@store_option
@sign_key_option
@common
def tune_cmd(
    model: str,
    version: str | None,
    target: str,
    p99_ms: float | None,
    budget_s: float,
    concurrency: int,
    window_s: float,
    plot_path: str | None,
    no_write: bool,
    timeout: float,
    store: str,
    sign_key: str | None,
    as_json: bool,
    debug: bool,
) -> None:
    """Search MODEL's server settings on TARGET for the most requests/s with p99 under --p99-ms.

    Each point is deployed to a server of its own (stopped at the end), warmed up and measured; the best point
    under the bound is written into the build (config.pbtxt or the .mar's model-config.yaml) unless --no-write.
    A signed build is signed again with --sign-key; without it, its signature is removed and a warning says so.
    """

    def body(out: Any) -> None:
        from ..errors import ValidationFailed
        from ..report.trust import rewriting
        from ..tune import TuneOptions, Window, run_tune
        from ..tune.frontier import describe, plot, table

        window = Window(seconds=window_s, concurrency=concurrency, timeout=timeout)
        options = TuneOptions(model, target, version, Path(store), p99_ms, budget_s, window, not no_write)
        with rewriting("pack tune", sign_key) as rule:
            doc = run_tune(options)
        doc["signature"] = rule.outcome
        if plot_path:
            doc["plot"] = str(plot(doc, Path(plot_path)))
        if as_json:
            emit_json(out, doc)
        else:
            front = [p for p in doc["points"] if any(p["settings"] == f["settings"] for f in doc["frontier"])]
            chosen = next((p for p in doc["points"] if doc["best"] and p["settings"] == doc["best"]["settings"]), None)
            out.write(table(doc["points"], front, chosen) + "\n")
            if chosen:
                out.write(
                    f"best: {describe(chosen['settings'])}"
                    + (f"; wrote {', '.join(doc['written'])}" if doc["written"] else "")
                    + "\n"
                )
                out.write(rewrite_line(rule.outcome))
        if doc["best"] is None:
            bound = f"p99 <= {p99_ms:g} ms" if p99_ms is not None else "a served point"
            raise ValidationFailed(
                f"no setting of {len(doc['points'])} measured met {bound}; nothing was written",
                "raise --p99-ms, lower --concurrency, or give the search more --budget-s",
            )

    run(debug, body)

"""`pack optimize`: faster ONNX variants for an existing build, each behind its own gate (packager/variants/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..console import emit_json, run
from .app import common, main, ranged, rewrite_line, sign_key_option, store_option, variant_options, version_option


@main.command("optimize")
@click.argument("model")
@version_option("The build's version (default: the highest).")
@store_option
@ranged("--iterations", 1, 10000, 10, "Timed runs per runner and batch size in each side-by-side round.")
@variant_options
@sign_key_option
@common
def optimize_cmd(
    model: str, version: str | None, store: str, iterations: int, sign_key: str | None, as_json: bool, debug: bool, **opts: Any
) -> None:
    """Make faster ONNX variants of a verified build (--variants), keep those that pass their gate and are faster,
    and re-package the targets to serve the best one (or the one given with --serve-variant). A signed build is signed
    again with --sign-key; without it, its signature is removed (it would no longer cover the files) and a warning
    says so."""

    def body(out: Any) -> None:
        from ..report.trust import rewriting
        from ..targets import packagers
        from ..variants import settings_from
        from ..variants.optimize import optimize, variants_table

        settings = settings_from({}, opts)
        with rewriting("pack optimize", sign_key) as rule:  # the key is checked before any work
            report, folder = optimize(Path(store), model, version, settings, iterations, packagers())
        doc = {"name": report.name, "version": report.version, "path": str(folder.resolve()), **report.variants}
        if as_json:
            emit_json(out, {**doc, "signature": rule.outcome})
        else:
            out.write(f"optimized {report.name} version {report.version} -> {folder}\n{variants_table(report.variants)}\n")
            out.write(rewrite_line(rule.outcome))

    run(debug, body)

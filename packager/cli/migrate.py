"""`pack migrate SOURCE`: a TorchServe `.mar` or a Triton TorchScript folder to a pack build, proven answer for answer
(packager/migrate/)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..console import emit_json, run
from .app import common, main, ranged, sign_key_option, store_option


def _table(doc: dict[str, Any]) -> str:
    proof, build, source = doc["proof"], doc["build"], doc["source"]
    lines = [
        f"migrated: {source['kind']} -> {build['name']} v{build['version']} ({', '.join(build['formats'])}) at {build['path']}",
        f"compared: {proof['old']}  vs  {proof['new']}  ({proof['compared']})",
    ]
    width = max(len(r["request"]) for r in proof["requests"])
    lines += [f"  {'agree   ' if r['agree'] else 'DISAGREE'}  {r['request']:<{width}}  {r['detail']}" for r in proof["requests"]]
    changes = doc["changes"]
    if changes["settings"]:
        lines.append("settings carried over: " + ", ".join(f"{k}={v}" for k, v in changes["settings"].items()))
    lines += [f"note: {n}" for n in changes["notes"]]
    lines += [f"next: {n}" for n in changes["next"]]
    for what, result in doc.get("outputs", {}).items():
        lines.append(f"{what}: {result.get('summary') or result.get('path') or 'written'}")
    return "\n".join(lines)


@main.command("migrate")
@click.argument("source", type=click.Path(exists=False))
@store_option
@click.option("--name", help="Model name of the build (default: the old model's).")
@click.option("--version", "version", help="Version number of the build (default 1).")
@click.option("--force", is_flag=True, help="Replace an existing version.")
@click.option("--trust-archive-code", is_flag=True, help="Import the archive's own Python code (its model file): read it first.")
@click.option(
    "--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]", help="The model's inputs, where the source does not say."
)
@click.option("--formats", help="Formats that must each pass (default: every default format is tried).")
@click.option(
    "--against",
    metavar="URL",
    help="The old server, running: its answers are compared with the build's, served on --target. Its token: PACK_AGAINST_TOKEN.",
)
@click.option("--against-model", help="The model's name on the old server (default: the source's).")
@click.option("--target", help="Where the build is served for --against (default: the first target pack bench can ask, Triton).")
@click.option(
    "--sample",
    "samples",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True),
    help="A request to compare on too: an image, a text, or a body the custom handler reads.",
)
@click.option(
    "--repo", is_flag=True, help="Once the answers agree, write the build's Triton repository entry (settings carried over)."
)
@click.option(
    "--kserve-storage-uri", metavar="URI", help="Once the answers agree, write the KServe storage folder and InferenceService."
)
@ranged("--iterations", 0, 10000, 20, "At most this many timed runs per format and batch size (0 skips measuring).")
@sign_key_option
@common
def migrate_cmd(
    source: str,
    store: str,
    name: str | None,
    version: str | None,
    force: bool,
    trust_archive_code: bool,
    inputs: tuple[str, ...],
    formats: str | None,
    against: str | None,
    against_model: str | None,
    target: str | None,
    samples: tuple[str, ...],
    repo: bool,
    kserve_storage_uri: str | None,
    iterations: int,
    sign_key: str | None,
    as_json: bool,
    debug: bool,
) -> None:
    """Migrate SOURCE (a model archive made by torch-model-archiver: .mar, .tar.gz or folder; or a Triton
    pytorch_libtorch model folder) to a pack build with every default format behind the gate, and prove its answers
    equal the old ones (exit 3 when they do not; see docs/migrate.md).

    Code inside an archive (an eager model file) is imported only with --trust-archive-code."""

    def body(out: Any) -> None:
        from ..build.cache import cache_dir
        from ..build.plan import parse_formats, parse_input
        from ..errors import ValidationFailed
        from ..migrate.run import MigrateOptions, migrate
        from ..report.signing import build_signer
        from ..targets import packagers

        signer, _ = build_signer(sign_key)
        opts = MigrateOptions(
            source=Path(source),
            store=Path(store),
            name=name,
            version=version,
            trust_archive_code=trust_archive_code,
            inputs=[parse_input(t) for t in inputs],
            formats=parse_formats(formats) if formats else None,
            against=against,
            against_model=against_model,
            token=os.environ.get("PACK_AGAINST_TOKEN") or None,
            target=target,
            samples=[Path(p) for p in samples],
            force=force,
            iterations=iterations,
            repo=repo,
            kserve_storage_uri=kserve_storage_uri,
            sign=signer,
            cache=cache_dir(Path(store), None, True),
        )
        doc, agreed = migrate(opts, packagers())
        if as_json:
            emit_json(out, doc)
        else:
            out.write(_table(doc) + "\n")
        if not agreed:
            first = next(r for r in doc["proof"]["requests"] if not r["agree"])
            raise ValidationFailed(
                f"the migrated build answers differently from the old model ({first['request']}: {first['detail']})",
                "check the source's pre-processing and weights; the build is kept for inspection",
            )

    run(debug, body)

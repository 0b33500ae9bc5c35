"""What a proven migration writes on request: the Triton repository entry (`--repo`) and the KServe storage folder
with its InferenceService (`--kserve-storage-uri`), each through its target's own code, the source's serving settings
carried over. Nothing is written for a migration whose answers disagree: nothing unverified is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..report.build_report import BuildReport
from ..targets import MANIFEST_CHECKER, REPOSITORY_WRITER, DeployOptions, capable, get_target, sole
from ..targets.migration import MigrationSource


def write(
    source: MigrationSource, folder: Path, report: BuildReport, store: Path, repo: bool, storage_uri: str | None
) -> dict[str, Any]:
    """The outputs asked for, as each target's result."""
    from ..serve.settings import SETTINGS

    settings = {k: v for k, v in source.settings.items() if k in SETTINGS}
    out: dict[str, Any] = {}
    if repo:
        opts = DeployOptions(store=store, extra={"force": True}, **settings)
        out["repository"] = sole(REPOSITORY_WRITER).repo(folder, report, opts)
    if storage_uri:
        kserve = get_target(next(iter(capable(MANIFEST_CHECKER))))
        options: dict[str, Any] = {"store": store, "storage_uri": storage_uri, **settings}  # the KServe target's options
        out["manifest"] = kserve.deploy(folder, report, kserve.Options(**options))
    return out

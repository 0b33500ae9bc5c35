"""The one shape of a `pack deploy` result, whatever the target (packager/schemas/deploy.schema.json, README
"pack deploy --json"): the keys every target fills with the same meaning, built here and nowhere else, then the
target's own extras under their own names.

- `target`, `model`, `version`; `format` and `served_file`: what `report.formats.served` chose (the build-relative file);
- `url`: the server's base URL; `infer_url`: the full Open Inference Protocol v2 infer endpoint of this model and
  version under it (TorchServe 0.12 has no version routes: its model's route, which serves the version the deploy
  made the default); `v2_curl`: a ready-to-run request of the build's sample to it. All three are null where no server
  is reached (KServe writes files for a cluster), and `url_reason` says why and where the model will answer;
- `smoke_test`: the gate's comparison of the served answer (null where nothing was served); `summary`; `timings`;
- `server`: `launched` (this command started it), `pid` and `log` of the server pack launched for the store.
"""

from __future__ import annotations

import json
import urllib.parse
from functools import lru_cache
from importlib.resources import files
from typing import Any

from ..report.build_report import BuildReport
from ..report.formats import Served

REQUIRED = (
    "target",
    "model",
    "version",
    "format",
    "served_file",
    "url",
    "infer_url",
    "v2_curl",
    "smoke_test",
    "summary",
    "timings",
    "server",
)


def v2_infer_url(base: str, model: str, version: str | None) -> str:
    """The v2 infer endpoint of one version of `model` on the server at `base` (`version` None: the route of the
    model's default version, for a server without version routes: TorchServe 0.12)."""
    path = f"/v2/models/{urllib.parse.quote(model, safe='')}" + (f"/versions/{version}" if version else "")
    return f"{base.rstrip('/')}{path}/infer"


def server_info(launched: bool, pid: int | None = None, log: str | None = None, **extra: Any) -> dict[str, Any]:
    """The `server` section: this command started it; the pid and log of the server pack launched for the store."""
    return {"launched": launched, "pid": pid, "log": log, **extra}


def deploy_result(
    target: str,
    report: BuildReport,
    served: Served,
    *,
    url: str | None,
    infer_url: str | None,
    v2_curl: str | None,
    smoke_test: dict[str, Any] | None,
    timings: dict[str, Any],
    server: dict[str, Any],
    summary: str,
    url_reason: str | None = None,
    **extras: Any,
) -> dict[str, Any]:
    """A deploy result: the common keys, then the target's `extras`, then the summary."""
    doc: dict[str, Any] = {
        "target": target,
        "model": report.name,
        "version": report.version,
        "format": served.format,
        "served_file": served.file,
        "url": url.rstrip("/") if url else None,
        "infer_url": infer_url,
        "v2_curl": v2_curl,
        "smoke_test": smoke_test,
        "timings": timings,
        "server": server,
    }
    if url_reason:
        doc["url_reason"] = url_reason
    clash = sorted(set(extras) & set(REQUIRED))
    if clash:
        raise ValueError(f"a {target} deploy result's extras redefine common keys: {clash}")
    return {**doc, **extras, "summary": summary}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((files("packager") / "schemas" / "deploy.schema.json").read_text())
    return loaded


def problems(doc: Any) -> list[str]:
    """Where a deploy result departs from the schema ("path: message"); empty when it matches."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {str(e.message)[:200]}" for e in errors]


__all__ = ["REQUIRED", "deploy_result", "problems", "schema", "server_info", "v2_infer_url"]

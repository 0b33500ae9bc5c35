"""`pack status [--repair] --target triton`: each deployment probed with its build's sample (and a detector's ensemble
with an image), not only `/v2/health/ready`; `--repair` reloads an unhealthy deployment's models through the
repository API (POST /v2/repository/models/NAME/load), which starts new python-backend stubs for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...serve.health import Deployed, check_and_repair
from .client import TritonHTTP
from .repository import is_detection
from .smoke import ensemble_smoke, smoke_test


def deployments(client: TritonHTTP, state: Any, store: Path) -> dict[str, dict[str, Any]]:
    """What to probe: the deployments pack recorded for its own server; for a server given by --url, every READY
    model whose build is in the store."""
    if state is not None:
        return dict(state.deployments)
    found: dict[str, dict[str, Any]] = {}
    for entry in client.index(ready_only=True):
        name, version = str(entry.get("name", "")), str(entry.get("version", ""))
        if (Path(store) / name / version / "report.json").is_file():
            found[name] = {"version": version, "models": [name], "backend": None, "serving_model": name}
    return found


def probe_all(client: TritonHTTP, state: Any, store: Path, timeout: float, repair: bool) -> dict[str, dict[str, Any]]:
    """{deployment name: its health} (see packager/serve/health.py)."""
    out = {}
    for name, record in sorted(deployments(client, state, store).items()):
        version = str(record.get("version", ""))
        model = Deployed(name, version, Path(store))
        repair_fn = _reload(client, record, timeout) if repair else None
        out[name] = {"version": version, **check_and_repair(model, _probe(client, name, record, timeout), repair_fn, timeout)}
    return out


def _probe(client: TritonHTTP, name: str, record: dict[str, Any], timeout: float) -> Any:
    version = str(record.get("version", ""))

    def probe(folder: Path, report: Any) -> dict[str, Any]:
        result = smoke_test(client.url, folder, report, record.get("backend") or "python", name, version, timeout, runs=1)
        serving = record.get("serving_model") or name
        if result["passed"] and is_detection(report) and serving != name:
            return ensemble_smoke(client.url, serving, version, timeout)
        return result

    return probe


def _reload(client: TritonHTTP, record: dict[str, Any], timeout: float) -> Any:
    def reload() -> None:
        for model in record.get("models") or []:  # in load order: the composing models, then the ensemble
            client.load(model, timeout=timeout)

    return reload

"""A client for Triton's HTTP health, metadata and repository APIs (KServe v2 protocol), on pack's HTTP client base
(packager/serve/http.py: timeouts on every call, one error tree). Inference goes through tritonclient (see smoke.py)."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import quote, urlparse

from ...serve.http import ApiError, ForeignAnswer, HttpClient, HttpError


def missing_backend(exc: ApiError, backend: str) -> bool:
    """Triton refused a load because it has no library for the model's backend. A platform this Triton does not know
    at all (`torch_aoti` before the pytorch backend had it) fails earlier, while the repository is polled, with only
    "failed to poll" in the answer (the reason is in its log): for torch_aoti, whose config pack's offline checks
    passed, that is the same missing backend."""
    if "unable to find backend library" in exc.message or "unable to find 'libtriton_" in exc.message:
        return True
    return backend == "torch_aoti" and "failed to poll from model repository" in exc.message


class TritonHTTP(HttpClient):
    server = "Triton"
    api = "Triton's HTTP API (KServe v2)"
    default_timeout = 10.0

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def hostport(self) -> str:
        """host:port, as tritonclient wants it."""
        return urlparse(self.base_url).netloc

    # health and metadata
    def _ok(self, path: str, timeout: float) -> bool:
        try:
            return self.request("GET", path, timeout=min(self.timeout, timeout)).status == 200
        except ForeignAnswer:
            raise  # another server answers there: say so, not "not ready"
        except HttpError:
            return False

    def ready(self) -> bool:
        return self._ok("/v2/health/ready", 2.0)

    def live(self) -> bool:
        return self._ok("/v2/health/live", 2.0)

    def metadata(self) -> dict[str, Any]:
        return self.json("GET", "/v2") or {}

    def model_ready(self, model: str, version: str | None = None) -> bool:
        return self._ok(f"/v2/models/{quote(model)}" + (f"/versions/{version}" if version else "") + "/ready", 5.0)

    def model_config(self, model: str) -> dict[str, Any]:
        return self.json("GET", f"/v2/models/{quote(model)}/config") or {}

    # repository API (explicit model-control mode)
    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        return self.json("POST", "/v2/repository/index", payload={"ready": ready_only}) or []

    def load(
        self, model: str, config_json: str | None = None, files: dict[str, bytes] | None = None, timeout: float | None = None
    ) -> None:
        """Load (or reload) a model; with config/files, Triton loads those instead of its repository's copy."""
        params: dict[str, Any] = {}
        if config_json is not None:
            params["config"] = config_json
        for rel, data in (files or {}).items():
            params[f"file:{rel}"] = base64.b64encode(data).decode()
        self.json(
            "POST",
            f"/v2/repository/models/{quote(model)}/load",
            payload={"parameters": params} if params else {},
            timeout=timeout,
        )

    def unload(self, model: str, dependents: bool = False, timeout: float | None = None) -> None:
        payload = {"parameters": {"unload_dependents": True}} if dependents else {}
        self.json("POST", f"/v2/repository/models/{quote(model)}/unload", payload=payload, timeout=timeout)

    def states(self) -> dict[str, dict[str, Any]]:
        """{model: index entry} (the highest version per model)."""
        out: dict[str, dict[str, Any]] = {}
        for entry in self.index():
            name = entry.get("name", "")
            prev = out.get(name)
            if prev is None or (entry.get("state") == "READY" and prev.get("state") != "READY"):
                out[name] = entry
        return out

    def wait_unloaded(self, model: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [e.get("state") for e in self.index() if e.get("name") == model]
            if not any(s in ("READY", "UNLOADING", "LOADING") for s in states):
                return True
            time.sleep(0.1)
        return False

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return True
            time.sleep(0.1)
        return False

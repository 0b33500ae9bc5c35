"""A small client for Triton's HTTP health, metadata and repository APIs (KServe v2 protocol), with timeouts on every
call and typed errors. Inference goes through tritonclient (see deploy.smoke_test)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlparse


class TritonError(Exception):
    """Base class: a Triton call failed."""


class TritonUnreachable(TritonError):
    """No answer at the URL (connection refused, timeout)."""


class TritonAPIError(TritonError):
    """Triton answered with an HTTP error; `status` and Triton's own `message`."""

    def __init__(self, status: int, message: str, path: str):
        super().__init__(f"HTTP {status} from {path}: {message}")
        self.status = status
        self.message = message
        self.path = path

    @property
    def missing_backend(self) -> bool:
        return "unable to find backend library" in self.message or "unable to find 'libtriton_" in self.message


class TritonHTTP:
    def __init__(self, url: str, timeout: float = 10.0):
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        self.timeout = timeout

    @property
    def hostport(self) -> str:
        """host:port, as tritonclient wants it."""
        return urlparse(self.url).netloc

    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                raw = response.read()
                return response.status, (json.loads(raw) if raw.strip() else None)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw).get("error", raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            raise TritonAPIError(exc.code, str(message).strip(), path) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TritonUnreachable(f"no answer from {self.url}{path}: {reason}") from None

    # health and metadata
    def ready(self) -> bool:
        try:
            status, _ = self._call("GET", "/v2/health/ready", timeout=min(self.timeout, 2.0))
            return status == 200
        except TritonError:
            return False

    def live(self) -> bool:
        try:
            status, _ = self._call("GET", "/v2/health/live", timeout=min(self.timeout, 2.0))
            return status == 200
        except TritonError:
            return False

    def metadata(self) -> dict[str, Any]:
        return self._call("GET", "/v2")[1] or {}

    def model_ready(self, model: str, version: str | None = None) -> bool:
        path = f"/v2/models/{quote(model)}" + (f"/versions/{version}" if version else "") + "/ready"
        try:
            return self._call("GET", path, timeout=min(self.timeout, 5.0))[0] == 200
        except TritonError:
            return False

    def model_config(self, model: str) -> dict[str, Any]:
        return self._call("GET", f"/v2/models/{quote(model)}/config")[1] or {}

    # repository API (explicit model-control mode)
    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        return self._call("POST", "/v2/repository/index", {"ready": ready_only})[1] or []

    def load(self, model: str, config_json: str | None = None, files: dict[str, bytes] | None = None, timeout: float | None = None) -> None:
        """Load (or reload) a model; with config/files, Triton loads those instead of its repository's copy."""
        params: dict[str, Any] = {}
        if config_json is not None:
            params["config"] = config_json
        if files:
            import base64

            for rel, data in files.items():
                params[f"file:{rel}"] = base64.b64encode(data).decode()
        body = {"parameters": params} if params else {}
        self._call("POST", f"/v2/repository/models/{quote(model)}/load", body, timeout=timeout)

    def unload(self, model: str, dependents: bool = False, timeout: float | None = None) -> None:
        body = {"parameters": {"unload_dependents": True}} if dependents else {}
        self._call("POST", f"/v2/repository/models/{quote(model)}/unload", body, timeout=timeout)

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

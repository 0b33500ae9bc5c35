"""Small clients for TorchServe's REST APIs (management and inference), on urllib with a timeout on every call.

Tokens are sent as `Authorization: Bearer <key>` and never appear in errors, logs or reprs.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ServerError(Exception):
    """Base of the client's errors."""


class Unreachable(ServerError):
    """No HTTP answer at all (connection refused, timeout, DNS)."""


class ApiError(ServerError):
    """TorchServe answered with an HTTP error; `message` is its own explanation."""

    def __init__(self, status: int, message: str, url: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.url = url


def _server_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(doc, dict):
        return str(doc.get("message") or doc.get("error") or doc)[:300]
    return text[:300]


class _Client:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, token={'set' if self._token else None})"

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: bytes | None = None, content_type: str | None = None, timeout: float | None = None) -> tuple[int, bytes, dict[str, str]]:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: _param(v) for k, v in params.items() if v is not None})
        req = urllib.request.Request(url, data=body, method=method)
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _server_message(exc.read() or b""), self.base_url + path) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"{self.base_url}: {reason}") from None

    def json(self, method: str, path: str, **kw: Any) -> Any:
        _, body, _ = self.request(method, path, **kw)
        return json.loads(body) if body.strip() else None


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ManagementClient(_Client):
    """TorchServe's management API (port 8081 by default): register, scale, set-default, unregister, list."""

    def list_models(self) -> list[dict[str, Any]]:
        models: list[dict[str, Any]] = []
        token = None
        while True:
            doc = self.json("GET", "/models", params={"limit": 100, "next_page_token": token})
            models += doc.get("models", [])
            token = doc.get("nextPageToken")
            if not token:
                return models

    def describe(self, name: str, version: str | None = None) -> list[dict[str, Any]]:
        path = f"/models/{_q(name)}" + (f"/{_q(version)}" if version else "/all")
        return self.json("GET", path)

    def default_version(self, name: str) -> str | None:
        """The version /predictions/<name> serves (GET /models/<name> describes the default version)."""
        try:
            found = self.json("GET", f"/models/{_q(name)}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return str(found[0].get("modelVersion")) if found else None

    def register(self, url: str, model_name: str, batch_size: int, max_batch_delay: int, initial_workers: int, response_timeout: int, timeout: float) -> str:
        doc = self.json(
            "POST",
            "/models",
            params={
                "url": url,
                "model_name": model_name,
                "batch_size": batch_size,
                "max_batch_delay": max_batch_delay,
                "initial_workers": initial_workers,
                "response_timeout": response_timeout,
                "synchronous": True,
            },
            timeout=timeout,
        )
        return (doc or {}).get("status", "")

    def scale(self, name: str, version: str, workers: int, timeout: float) -> str:
        doc = self.json(
            "PUT",
            f"/models/{_q(name)}/{_q(version)}",
            params={"min_worker": workers, "max_worker": workers, "synchronous": True, "timeout": int(timeout)},
            timeout=timeout,
        )
        return (doc or {}).get("status", "")

    def set_default(self, name: str, version: str) -> str:
        return (self.json("PUT", f"/models/{_q(name)}/{_q(version)}/set-default") or {}).get("status", "")

    def unregister(self, name: str, version: str, timeout: float = 60.0) -> str:
        return (self.json("DELETE", f"/models/{_q(name)}/{_q(version)}", timeout=timeout) or {}).get("status", "")


class InferenceClient(_Client):
    """TorchServe's inference API (port 8080 by default): ping and predictions."""

    def ping(self, timeout: float = 5.0) -> str:
        doc = self.json("GET", "/ping", timeout=timeout)
        return (doc or {}).get("status", "")

    def predict(self, name: str, body: bytes, content_type: str = "application/octet-stream", version: str | None = None, timeout: float | None = None) -> tuple[int, bytes]:
        path = f"/predictions/{_q(name)}" + (f"/{_q(version)}" if version else "")
        status, data, _ = self.request("POST", path, body=body, content_type=content_type, timeout=timeout)
        return status, data


def _q(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")

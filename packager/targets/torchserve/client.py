"""Clients for TorchServe's REST APIs (management and inference), on pack's HTTP client base (packager/serve/http.py).

Errors are the base's (Unreachable, ApiError); the token is sent as a bearer header and never shown.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from ...serve.http import ApiError, HttpClient


class _TorchServe(HttpClient):
    server = "TorchServe"


class ManagementClient(_TorchServe):
    """TorchServe's management API (port 8081 by default): register, scale, set-default, unregister, list."""

    api = "TorchServe's management API"

    def list_models(self) -> list[dict[str, Any]]:
        models: list[dict[str, Any]] = []
        token = None
        while True:
            doc = self.json("GET", "/models", params={"limit": 100, "next_page_token": token}) or {}
            models += doc.get("models", [])
            token = doc.get("nextPageToken")
            if not token:
                return models

    def describe(self, name: str, version: str | None = None) -> list[dict[str, Any]]:
        path = f"/models/{_q(name)}" + (f"/{_q(version)}" if version else "/all")
        return self.json("GET", path) or []

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every registered version of `name` (described), [] when the model is not registered."""
        try:
            return self.describe(name)
        except ApiError as exc:
            if exc.status == 404:
                return []
            raise

    def default_version(self, name: str) -> str | None:
        """The version /predictions/<name> serves (GET /models/<name> describes the default version)."""
        try:
            found = self.json("GET", f"/models/{_q(name)}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return str(found[0].get("modelVersion")) if found else None

    def register(
        self,
        url: str,
        model_name: str,
        batch_size: int,
        max_batch_delay: int,
        initial_workers: int,
        response_timeout: int,
        timeout: float,
    ) -> str:
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
        return _status(doc)

    def scale(self, name: str, version: str, workers: int, timeout: float) -> str:
        doc = self.json(
            "PUT",
            f"/models/{_q(name)}/{_q(version)}",
            params={"min_worker": workers, "max_worker": workers, "synchronous": True, "timeout": int(timeout)},
            timeout=timeout,
        )
        return _status(doc)

    def set_default(self, name: str, version: str) -> str:
        return _status(self.json("PUT", f"/models/{_q(name)}/{_q(version)}/set-default"))

    def unregister(self, name: str, version: str, timeout: float = 60.0) -> str:
        return _status(self.json("DELETE", f"/models/{_q(name)}/{_q(version)}", timeout=timeout))


class InferenceClient(_TorchServe):
    """TorchServe's inference API (port 8080 by default): ping and predictions."""

    api = "TorchServe's inference API"

    def ping(self, timeout: float = 5.0) -> str:
        doc = self.json("GET", "/ping", timeout=timeout)
        return _status(doc)

    def predict(
        self,
        name: str,
        body: bytes,
        content_type: str = "application/octet-stream",
        version: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        path = f"/predictions/{_q(name)}" + (f"/{_q(version)}" if version else "")
        answer = self.request("POST", path, body=body, content_type=content_type, timeout=timeout)
        return answer.status, answer.body


def _status(doc: Any) -> str:
    """The `status` line of a management or ping answer ("" when it has none)."""
    status: str = (doc or {}).get("status", "")
    return status


def _q(part: str) -> str:
    """A path segment, percent-encoded. TorchServe 0.12's management port treats any request whose text holds
    `/token` as a call to its token API (checked against the API key, and the key file rewritten): `GET
    /models/tokens/all` is refused with the management key. TorchServe decodes the path, so a leading `t` sent as
    `%74` reaches the same model without that text."""
    quoted = urllib.parse.quote(str(part), safe="")
    return "%74" + quoted[1:] if quoted.startswith("token") else quoted

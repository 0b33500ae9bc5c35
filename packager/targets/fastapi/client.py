"""A client for pack's FastAPI server (handlers/pack_fastapi.py), on pack's HTTP client base (packager/serve/http.py): health,
what is served and where it runs, v2 inference and metadata."""

from __future__ import annotations

import urllib.parse
from typing import Any

from ...serve.http import ApiError, HttpClient


class FastAPIClient(HttpClient):
    server = "the FastAPI server"
    api = "pack's FastAPI server"

    def healthy(self) -> bool:
        """The server is up with its models: GET /health answers 200 (every model loaded), or 503 naming a model it
        refused to serve (its file did not verify: the smoke test and `pack status` report it); False for 503 while
        no model is loaded yet."""
        try:
            self.json("GET", "/health")
        except ApiError as exc:
            if exc.status == 503:
                return "refused to serve" in exc.message
            raise
        return True

    def models(self) -> list[dict[str, Any]]:
        """[{name, version, format, placement}] of what the server serves."""
        doc = self.json("GET", "/models") or {}
        return list(doc.get("models") or []) if isinstance(doc, dict) else []

    def infer(self, name: str, version: str, request: dict[str, Any], timeout: float | None = None) -> Any:
        """POST /v2/models/<name>/versions/<version>/infer with a v2 JSON body; the v2 answer."""
        return self.json("POST", f"/v2/models/{_q(name)}/versions/{_q(version)}/infer", payload=request, timeout=timeout)


def _q(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")

"""One small HTTP client for the servers pack talks to (TorchServe's and Triton's REST APIs, OCI registries), and its
one error tree.

Every call has a timeout. A bearer token is sent as `Authorization: Bearer <key>` and never appears in a repr, an
error or a log line; errors name the URL without its query string. A failed call raises an HttpError:

    HttpError
      Unreachable   no HTTP answer (connection refused or reset, timeout, a broken answer); `reason`, `timed_out`
      ApiError      the server answered with an HTTP error: `status`, the server's own `message`, `url`
      ForeignAnswer an answer that is not the API's (an HTML page, text where JSON belongs): another server is there

`pack_error` is the one place where these become pack's one-line errors, and so exit codes (README "Exit codes").
"""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, NamedTuple

from ..errors import DeployFailed, EnvironmentProblem, PackError, UsageError

MESSAGE_LIMIT = 500  # characters of a server's error message that are kept


class HttpError(Exception):
    """A call to a server failed. `server` names the server in messages ("TorchServe", "Triton")."""

    def __init__(self, text: str, server: str, url: str):
        super().__init__(text)
        self.server = server
        self.url = url


class Unreachable(HttpError):
    """No HTTP answer: connection refused or reset, a timeout (`timed_out`, after `timeout` seconds), a broken answer."""

    def __init__(self, server: str, url: str, reason: str, timeout: float | None = None):
        self.reason = reason
        self.timed_out = timeout is not None
        self.timeout = timeout
        what = f"no answer within {timeout:g} s" if timeout is not None else reason
        super().__init__(f"no answer from {server} at {url} ({what})", server, url)


class ApiError(HttpError):
    """The server answered with an HTTP error; `message` is its own explanation."""

    def __init__(self, server: str, status: int, message: str, url: str, is_json: bool = True):
        super().__init__(f"{server} answered HTTP {status}: {message}", server, url)
        self.status = status
        self.message = message
        self.is_json = is_json  # the error body was JSON, or empty (the API's own error); False: text of another server

    @property
    def auth_refused(self) -> bool:
        """The server refused the token (TorchServe says so with HTTP 400 and a message about the token)."""
        return self.status in (401, 403) or (self.status == 400 and "token" in self.message.lower())


class ForeignAnswer(HttpError):
    """Something answered, but not as the API the client speaks: an HTML page, or text where JSON belongs. `api` names
    what was expected ("TorchServe's management API"), `status` the HTTP status, `what` the answer's first bytes."""

    def __init__(self, server: str, url: str, status: int, what: str, api: str):
        super().__init__(f"{url} answered HTTP {status} with {what}: this does not look like {api}", server, url)
        self.status = status
        self.api = api


def _looks_html(body: bytes, headers: Any) -> bool:
    content_type = str((headers or {}).get("Content-Type") or "").lower()
    head = body.lstrip()[:64].lower()
    return "text/html" in content_type or head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml"))


def _first_bytes(body: bytes, html: bool) -> str:
    kind = "an HTML page" if html else "text that is not JSON"
    return f"{kind} ({body.strip()[:60]!r})" if body.strip() else "an empty body"


class Response(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


class HttpClient:
    """The base of both targets' clients: `request` (bytes) and `json`, relative to `base_url`."""

    server = "the server"  # the name used in errors
    api = "the server's API"  # what a foreign answer is said not to be
    default_timeout = 30.0

    def __init__(self, base_url: str, token: str | None = None, timeout: float | None = None, insecure_http: bool = False):
        if "://" not in base_url:
            base_url = "http://" + base_url
        try:
            _ = urllib.parse.urlsplit(base_url).port  # an unclosed [, a port that is not a number from 0 to 65535
        except ValueError as exc:
            raise UsageError(f"{base_url!r} is not a usable URL ({exc})", "write it like http://127.0.0.1:8000") from None
        self.base_url = base_url.rstrip("/")
        if token and not insecure_http:
            require_safe_transport(self.base_url)  # refused here, before anything is sent
        self._token = token
        self.timeout = self.default_timeout if timeout is None else timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, token={'set' if self._token else None})"

    def _authorization(self) -> str | None:
        """The Authorization header's value (a bearer token here; a subclass may send another scheme)."""
        return f"Bearer {self._token}" if self._token else None

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: bytes | IO[bytes] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One call; raises ApiError for an HTTP error status and Unreachable when no complete answer came. A file
        `body` is streamed (pass its Content-Length in `headers`)."""
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: _param(v) for k, v in params.items() if v is not None})
        req = urllib.request.Request(url, data=body, method=method)
        authorization = self._authorization()
        if authorization:
            req.add_header("Authorization", authorization)
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        if content_type:
            req.add_header("Content-Type", content_type)
        limit = timeout or self.timeout
        shown = self.base_url + path  # never the query string
        try:
            with urllib.request.urlopen(req, timeout=limit) as resp:
                answer = Response(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            try:
                raw = exc.read() or b""
            except (OSError, http.client.HTTPException):
                raw = b""
            if _looks_html(raw, exc.headers):
                raise ForeignAnswer(self.server, shown, exc.code, _first_bytes(raw, True), self.api) from None
            raise ApiError(self.server, exc.code, server_message(raw) or exc.reason or "", shown, _is_json(raw)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            timed_out = isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError)
            raise Unreachable(self.server, shown, str(reason) or type(reason).__name__, limit if timed_out else None) from None
        if _looks_html(answer.body, answer.headers):
            raise ForeignAnswer(self.server, shown, answer.status, _first_bytes(answer.body, True), self.api)
        return answer

    def json(
        self, method: str, path: str, params: dict[str, Any] | None = None, payload: Any = None, timeout: float | None = None
    ) -> Any:
        """A call whose answer is JSON (None for an empty body); `payload`, when given, is sent as JSON."""
        body = None if payload is None else json.dumps(payload).encode()
        try:
            answer = self.request(
                method,
                path,
                params=params,
                body=body,
                content_type="application/json" if body is not None else None,
                timeout=timeout,
            )
        except ApiError as exc:
            if exc.is_json:
                raise
            raise ForeignAnswer(self.server, exc.url, exc.status, _first_bytes(exc.message.encode(), False), self.api) from None
        text = answer.body.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise ForeignAnswer(self.server, self.base_url + path, answer.status, _first_bytes(text, False), self.api) from None


def server_message(body: bytes) -> str:
    """The server's explanation in an error body: its JSON `message` or `error`, else the text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:MESSAGE_LIMIT]
    if isinstance(doc, dict):
        return str(doc.get("message") or doc.get("error") or doc)[:MESSAGE_LIMIT]
    return text[:MESSAGE_LIMIT]


def require_safe_transport(url: str) -> None:
    """A token goes only over https or to this machine's loopback: UsageError (exit 2) for plain http elsewhere."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or is_loopback(parts.hostname or ""):
        return
    raise UsageError(
        f"refusing to send a token over plain http to {parts.hostname or url} (not loopback): the network could read it",
        "use an https:// URL, or pass --insecure-http on a network you trust",
    )


def is_loopback(host: str) -> bool:
    """Is `host` (a name or an address, IPv6 with or without brackets) this machine's loopback?"""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_json(body: bytes) -> bool:
    text = body.strip()
    if not text:
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def pack_error(
    exc: HttpError,
    doing: str,
    hint: str | None = None,
    refused: type[PackError] = DeployFailed,
    unreachable: type[PackError] = EnvironmentProblem,
) -> PackError:
    """The one mapping of HTTP failures to pack's errors, for a failure while `doing` something:

    - a refused token: EnvironmentProblem (exit 5), whatever was being done;
    - an answer that is not the API's (an HTML page, text for JSON): `unreachable`, naming the URL, the status and
      the API that was expected;
    - no answer: `unreachable` (EnvironmentProblem, exit 5: a server that cannot be reached; a deploy step, which has
      rolled back, passes DeployFailed, exit 4);
    - any other HTTP error: `refused` (DeployFailed, exit 4: the server refused the operation; reading state before
      a deploy passes EnvironmentProblem).
    `hint` (what to do) is added to the hint that fits the failure.
    """
    if isinstance(exc, ForeignAnswer):
        return unreachable(f"{doing}: {exc}", _join("check --url: another server answers there", hint))
    if isinstance(exc, ApiError) and exc.auth_refused:
        return EnvironmentProblem(
            f"{doing}: {exc.server} at {exc.url} refused pack's token ({exc.message})",
            _join("pass the server's current key_file.json with --token-file", hint),
        )
    if isinstance(exc, ApiError):
        return refused(f"{doing}: {exc}", hint)
    if isinstance(exc, Unreachable) and exc.timed_out:
        return unreachable(f"{doing}: {exc}", _join("raise --timeout on a slow machine", hint))
    return unreachable(f"{doing}: {exc}", hint or "check that the server runs (and --url, when given)")


@contextmanager
def translated(
    doing: str,
    hint: str | None = None,
    refused: type[PackError] = DeployFailed,
    unreachable: type[PackError] = EnvironmentProblem,
) -> Iterator[None]:
    """`with translated("unloading tiny"):` turns an HttpError inside into pack's error (see pack_error)."""
    try:
        yield
    except HttpError as exc:
        raise pack_error(exc, doing, hint, refused, unreachable) from None


@contextmanager
def serving(server: http.server.HTTPServer) -> Iterator[str]:
    """Run a local HTTP server (bound by the caller, e.g. to port 0) from a daemon thread while the block runs; its
    base URL. Shut down and closed on the way out, whatever happens inside."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = str(server.server_address[0]), server.server_address[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _join(*parts: str | None) -> str | None:
    return "; ".join(p for p in parts if p) or None


__all__ = [
    "HttpClient",
    "HttpError",
    "Unreachable",
    "ApiError",
    "ForeignAnswer",
    "Response",
    "is_loopback",
    "require_safe_transport",
    "pack_error",
    "serving",
    "translated",
    "server_message",
]

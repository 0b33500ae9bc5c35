"""The HTTP client base (packager/serve/http.py) against a real HTTP server in this process, its one error mapping, and the
store's one lock (packager/report/store.py StoreLock) as `pack build`, `pack archive` and `pack repo` meet it."""

from __future__ import annotations

import http.server
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from packager.errors import DeployFailed, EnvironmentProblem
from packager.serve.http import ApiError, ForeignAnswer, HttpClient, HttpError, Unreachable, pack_error, serving, translated

TOKEN = "s3cr3t-token-value"


FIXED = {  # route -> (status, body)
    "/empty": (200, b""),
    "/json-error": (409, json.dumps({"code": 409, "type": "Conflict", "message": "version 2 already exists"}).encode()),
    "/triton-error": (400, json.dumps({"error": "failed to load 'tiny'"}).encode()),
    "/text-error": (500, b"plain trouble"),
    "/token": (
        400,
        json.dumps(
            {"message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly"}
        ).encode(),
    ),
    "/not-json": (200, b"<html>"),
    "/html-error": (404, b"<!DOCTYPE html><html><body>Not Found</body></html>"),  # a web server's own error page
    "/v2/health/live": (200, b"<html><body>a web server on the port a tritonserver had</body></html>"),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []

    def _answer(self) -> None:
        _Handler.seen.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "type": self.headers.get("Content-Type")}
        )
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        route = self.path.split("?")[0]
        if route in FIXED:
            self._send(*FIXED[route])
        elif route.startswith("/models/"):  # TorchServe's describe: no versions registered
            self._send(200, b"[]")
        elif route == "/ok":
            self._send(200, json.dumps({"echo": json.loads(body) if body else None}).encode())
        elif route == "/slow":
            time.sleep(2)
            self._send(200, b"{}")
        elif route == "/broken":  # promises 100 bytes, sends 5 and closes
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"a":')
            self.wfile.flush()
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up on purpose (the timeout test) is not news


@contextmanager
def _server() -> Iterator[str]:
    with serving(_QuietServer(("127.0.0.1", 0), _Handler)) as url:
        yield url


class _Client(HttpClient):
    server = "TestServer"
    api = "the test API"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_requests_carry_the_token_and_json_both_ways():
    _Handler.seen.clear()
    with _server() as url:
        client = _Client(url, TOKEN, timeout=5)
        assert client.json("POST", "/ok", params={"flag": True, "skip": None}, payload={"x": 1}) == {"echo": {"x": 1}}
        assert client.json("GET", "/empty") is None
        answer = client.request("GET", "/ok")
        assert answer.status == 200 and json.loads(answer.body) == {"echo": None}
    assert _Handler.seen[0]["auth"] == f"Bearer {TOKEN}" and _Handler.seen[0]["type"] == "application/json"
    assert _Handler.seen[0]["path"] == "/ok?flag=true"
    assert _Client("127.0.0.1:9", None).base_url == "http://127.0.0.1:9"  # a bare host:port gets http://


def test_errors_carry_status_message_url_and_never_the_token():
    with _server() as url:
        client = _Client(url + "/", TOKEN, timeout=5)
        assert TOKEN not in repr(client) and "token=set" in repr(client)
        errors = []
        for path, status, message in (
            ("/json-error", 409, "version 2 already exists"),
            ("/triton-error", 400, "failed to load 'tiny'"),
        ):
            with pytest.raises(ApiError) as info:
                client.json("DELETE", path, params={"url": "a.mar"})
            exc = info.value
            assert (exc.status, exc.message, exc.url, exc.server) == (status, message, url + path, "TestServer")
            assert str(exc) == f"TestServer answered HTTP {status}: {message}"
            errors.append(exc)
        with pytest.raises(ApiError) as info:  # a raw call keeps a text error as the server's message
            client.request("DELETE", "/text-error")
        assert (info.value.status, info.value.message, info.value.is_json) == (500, "plain trouble", False)
        # an answer that is not the API's names the URL, the status and what was expected, whatever the call
        for call, path, status, what in (
            (client.json, "/text-error", 500, "text that is not JSON (b'plain trouble')"),
            (client.json, "/not-json", 200, "an HTML page (b'<html>')"),
            (client.request, "/html-error", 404, "an HTML page (b'<!DOCTYPE html><html><body>Not Found</body></html>')"),
        ):
            with pytest.raises(ForeignAnswer) as foreign:
                call("GET", path)
            assert str(foreign.value) == f"{url}{path} answered HTTP {status} with {what}: this does not look like the test API"
            errors.append(foreign.value)
        with pytest.raises(Unreachable) as info:
            client.request("GET", "/slow", timeout=0.3)
        assert info.value.timed_out and info.value.timeout == 0.3 and "no answer within 0.3 s" in str(info.value)
        with pytest.raises(Unreachable) as info:  # a truncated answer is no answer, not an http.client exception
            client.json("GET", "/broken")
        errors.append(info.value)
    port = _closed_port()
    with pytest.raises(Unreachable) as info:
        _Client(f"http://127.0.0.1:{port}", TOKEN, timeout=5).json("GET", "/models", params={"secret": "x"})
    assert not info.value.timed_out and f"127.0.0.1:{port}/models" in str(info.value) and "secret" not in str(info.value)
    errors.append(info.value)
    for exc in errors:
        assert isinstance(exc, HttpError)
        mapped = pack_error(exc, "registering tiny v2")
        assert TOKEN not in str(exc) and TOKEN not in mapped.line() and TOKEN not in repr(exc)


def test_one_mapping_to_pack_errors_and_exit_codes():
    refused = ApiError("TorchServe", 500, "worker died", "http://127.0.0.1:1/models")
    token = ApiError("TorchServe", 400, "Token Authorization failed", "http://127.0.0.1:1/models")
    down = Unreachable("Triton", "http://127.0.0.1:1/v2", "Connection refused")
    slow = Unreachable("Triton", "http://127.0.0.1:1/v2", "timed out", timeout=30)

    error = pack_error(refused, "setting 1 worker(s) for tiny v2", "see the server log")
    assert isinstance(error, DeployFailed) and error.exit_code == 4
    assert error.line() == "setting 1 worker(s) for tiny v2: TorchServe answered HTTP 500: worker died; see the server log"
    assert pack_error(refused, "reading the index", refused=EnvironmentProblem).exit_code == 5
    error = pack_error(token, "reaching TorchServe's management API", refused=EnvironmentProblem)
    assert error.exit_code == 5 and "refused pack's token" in error.message and "--token-file" in error.hint
    assert pack_error(token, "registering tiny v2").exit_code == 5  # a refused token is the environment's, anywhere
    assert ApiError("Triton", 401, "", "u").auth_refused and not ApiError("Triton", 400, "bad shape", "u").auth_refused
    error = pack_error(down, "reading Triton's repository index")
    assert (
        error.exit_code == 5
        and "no answer from Triton at http://127.0.0.1:1/v2 (Connection refused)" in error.message
        and "server runs" in error.hint
    )
    error = pack_error(slow, "loading tiny", "see the server log", unreachable=DeployFailed)
    assert (
        error.exit_code == 4
        and "within 30 s" in error.message
        and error.hint == "raise --timeout on a slow machine; see the server log"
    )

    foreign = ForeignAnswer("Triton", "http://127.0.0.1:1/v2/health/ready", 200, "an HTML page (b'<html>')", "Triton's HTTP API")
    error = pack_error(foreign, "deploying tiny v1", refused=EnvironmentProblem)
    assert error.exit_code == 5 and error.line() == (
        "deploying tiny v1: http://127.0.0.1:1/v2/health/ready answered HTTP 200 with an HTML page (b'<html>'): "
        "this does not look like Triton's HTTP API; check --url: another server answers there"
    )

    with pytest.raises(DeployFailed, match="^unloading tiny: Triton answered HTTP 500"):
        with translated("unloading tiny"):
            raise ApiError("Triton", 500, "busy", "u")
    with pytest.raises(ValueError):  # anything else passes through untouched
        with translated("unloading tiny"):
            raise ValueError("not an HTTP failure")


def test_a_web_page_on_the_recorded_port_is_not_the_launched_tritonserver(tmp_path):
    """`pack status` of a store whose tritonserver is gone and whose port a web server took: not running (no crash).
    The recorded process is alive and matches (this test's own), so only the HTTP answer can tell; the state is
    removed at the end so that nothing ever acts on it."""
    import os

    from packager.serve import processes
    from packager.targets.triton import server

    ident = processes.identity(os.getpid())
    assert ident is not None
    with _server() as url:
        port = int(url.rsplit(":", 1)[1])
        local = server.TritonServer(tmp_path)
        state = {"pid": os.getpid(), "process": ident.record(), "http_port": port, "grpc_port": 1, "metrics_port": 2}
        local.save(state | {"host": "127.0.0.1", "binary": "tritonserver", "log": "log", "repository": str(tmp_path / "repo")})
        try:
            assert local.alive() == ident
            assert local.running() is None and local.current() is None
        finally:
            local.state_file.unlink()


def test_torchserve_paths_of_a_model_named_token_never_hold_slash_token():
    """TorchServe 0.12 takes any management request whose text holds `/token` for its token API (refused with the
    management key; found deploying a model named `tokens`): the name's leading `t` is sent percent-encoded, which
    TorchServe decodes back to the same model."""
    import urllib.parse

    from packager.targets.torchserve.client import ManagementClient

    _Handler.seen.clear()
    with _server() as url:
        client = ManagementClient(url, TOKEN, timeout=5)
        for name in ("tokens", "token_classifier", "tagger"):
            client.describe(name)
    paths = [s["path"] for s in _Handler.seen]
    assert paths == ["/models/%74okens/all", "/models/%74oken_classifier/all", "/models/tagger/all"]
    assert all("/token" not in p for p in paths)
    assert [urllib.parse.unquote(p) for p in paths][0] == "/models/tokens/all"

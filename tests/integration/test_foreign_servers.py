"""A --url that names some other web server (a real HTTP server in a thread, answering HTML pages): every command that
talks to a server says so in one line naming the URL, the HTTP status and the API it expected, with exit 5."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from tests.helpers.cli import one_error_line, run_pack
from tests.helpers.triton import link_build

PAGE = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body>It works!</body></html>"


class _WebPage(http.server.BaseHTTPRequestHandler):
    """A web server's home page for GET, its error page for everything else."""

    def _page(self, status: int) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def do_GET(self) -> None:
        self._page(200)

    def do_POST(self) -> None:
        self._page(405)

    do_PUT = do_DELETE = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize(
    "args, path, status, api",
    [
        (("deploy", "tiny", "--target", "torchserve"), "/models", 200, "TorchServe's management API"),
        (("deploy", "tiny", "--target", "triton"), "/v2/health/ready", 200, "Triton's HTTP API"),
        (("deploy", "tiny"), "/v2/health/ready", 200, "Triton's HTTP API"),  # the default target
        (("status",), "/v2/repository/index", 405, "Triton's HTTP API"),
        (("status", "--target", "torchserve"), "/models", 200, "TorchServe's management API"),
        (("undeploy", "tiny", "--target", "torchserve"), "/models", 200, "TorchServe's management API"),
        (("status", "--target", "fastapi"), "/models", 200, "pack's FastAPI server"),
    ],
)
def test_a_web_page_is_not_a_model_server(web_server, built, tmp_path, args, path, status, api):
    store = tmp_path / "store"
    link_build(built("tiny"), store)
    proc = run_pack(*args, "--store", str(store), "--url", web_server, timeout=120)
    line = one_error_line(5, proc.returncode, proc.stderr)
    assert f"{web_server}{path} answered HTTP {status} with an HTML page (b'<!DOCTYPE html>" in line, line
    assert f"this does not look like {api}" in line and "check --url" in line, line
    assert not (store / ".servers").exists() or not list((store / ".servers").rglob("state.json"))  # nothing launched

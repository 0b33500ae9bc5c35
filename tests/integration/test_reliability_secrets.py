"""Issue 11 (secrets): TorchServe keys go only over https or to loopback unless --insecure-http, and are refused
before anything is sent; the inference API of a --url server is --inference-url, never a guessed port; a launched
TorchServe's key_file.json is mode 0600 from its first byte.

The "servers" here are recording HTTP listeners run by the test (in threads, stopped in `finally`) and one real
TorchServe launched by `pack deploy` (stopped in its fixture's teardown).
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.cli import one_error_line, run_pack, spawn_pack

KEYS = {k: {"key": f"{k}-secret-key-1234"} for k in ("management", "inference", "API")}


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers like an empty TorchServe management API and records every request (path, Authorization)."""

    seen: list[tuple[str, str | None]]

    def _answer(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"models": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _recorder(host: str, port: int = 0) -> Iterator[tuple[int, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key_file.json"
    path.write_text(json.dumps(KEYS))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("command", [("deploy", "tiny"), ("status",), ("undeploy", "tiny")])
def test_plain_http_off_loopback_is_refused_before_any_key_is_sent(tiny_store, key_file, command):
    with _recorder("0.0.0.0") as (port, seen):
        url = f"http://0.0.0.0:{port}"
        args = (*command, "--target", "torchserve", "--store", str(tiny_store), "--token-file", str(key_file))
        proc = run_pack(*args, "--url", url, "--inference-url", url, timeout=120)
        line = one_error_line(2, proc.returncode, proc.stderr)
        assert "refusing to send a token over plain http to 0.0.0.0" in line and "--insecure-http" in line
        assert seen == [], f"pack sent requests before refusing: {seen}"
        assert not any(k["key"] in proc.stdout + proc.stderr for k in KEYS.values())
        # the same with --insecure-http: the user's explicit choice, the key goes
        proc = run_pack("status", *args[len(command) :], "--url", url, "--inference-url", url, "--insecure-http")
        assert proc.returncode == 0, proc.stderr
        assert ("/models?limit=100", f"Bearer {KEYS['management']['key']}") in seen


def _adjacent_free_ports() -> tuple[int, int]:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port - 1))
                b.bind(("127.0.0.1", port))
            return port - 1, port
        except OSError:
            continue
    raise AssertionError("no two adjacent free ports")


def test_url_without_inference_url_never_guesses_the_inference_port(tiny_store, key_file):
    below, management = _adjacent_free_ports()
    with _recorder("127.0.0.1", below) as (_, guessed), _recorder("127.0.0.1", management) as (_, seen):
        url = f"http://127.0.0.1:{management}"
        common = ("--target", "torchserve", "--store", str(tiny_store), "--url", url, "--token-file", str(key_file))
        proc = run_pack("deploy", "tiny", *common, timeout=120)
        line = one_error_line(2, proc.returncode, proc.stderr)
        assert "--inference-url" in line, line
        doc = json.loads(run_pack("status", *common, "--json").stdout)
        assert doc["url"] is None, doc
        assert guessed == [], f"requests went to the guessed port {below}: {guessed}"
        assert seen, "the management API was not asked"
        assert not list(tiny_store.glob(".servers/**/*.mar"))


def test_key_file_is_0600_from_its_first_byte(ts_store):
    key = ts_store / ".servers" / "torchserve" / "key_file.json"
    modes: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                modes.add(stat.S_IMODE(os.stat(key).st_mode))
            except FileNotFoundError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        proc = spawn_pack("deploy", "tiny", "--target", "torchserve", "--store", str(ts_store), "--timeout", "300")
        _, err = proc.communicate(timeout=600)
        time.sleep(0.2)
    finally:
        stop.set()
        watcher.join(10)
    assert proc.returncode == 0, err[-3000:]
    assert modes == {0o600}, f"key_file.json was seen with modes {sorted(oct(m) for m in modes)}"

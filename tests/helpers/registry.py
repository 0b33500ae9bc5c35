"""A real OCI registry on loopback for the model-car tests: Debian's `docker-registry` (CNCF distribution) on a free
port with a throwaway filesystem store, and `skopeo` to read images back. scripts/setup-registry.sh installs both."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

BINARIES = ("docker-registry", "skopeo")


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str, accept: tuple[int, ...] = (200,)) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status in accept)
    except urllib.error.HTTPError as exc:
        return exc.code in accept
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running_registry(folder: Path, seconds: float = 30, users: dict[str, str] | None = None) -> Iterator[str]:
    """Start a registry bound to 127.0.0.1 on a free port; yields `127.0.0.1:PORT`; stops it however the block ends.
    With `users` (name -> password) it takes basic auth from an htpasswd file (bcrypt, as the registry requires) and
    answers 401 to anyone else."""
    port = free_port()
    config = folder / "registry.yml"
    settings: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if users:
        htpasswd = folder / "htpasswd"
        htpasswd.write_text("".join(f"{name}:{_bcrypt(password)}\n" for name, password in users.items()))
        settings["auth"] = {"htpasswd": {"realm": "pack-test", "path": str(htpasswd)}}
    config.write_text(yaml.safe_dump(settings))
    log = open(folder / "registry.log", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + seconds
        while not _answers(f"http://127.0.0.1:{port}/v2/", accept=(200, 401) if users else (200,)):
            assert proc.poll() is None, (folder / "registry.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"the registry did not answer on {port} within {seconds} s"
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _bcrypt(password: str) -> str:
    """A bcrypt hash from the C library's crypt(3) (libxcrypt), at the lowest cost: a test password."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the crypt module: deprecated, still in Python 3.11/3.12
        import crypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout

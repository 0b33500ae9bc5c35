"""The local TorchServe pack runs for a store, on the local-server base (packager/serve/local.py).

Its own parts: Java and the `torchserve` launcher (which starts the Java frontend and exits; the frontend's pid is
in its PID file), config.properties, five loopback ports, the key file TorchServe writes (owner-only: the launch runs
with umask 077; keys are never printed), /ping as its health check, and a TMPDIR short enough for its workers' Unix
sockets. `<store>/.servers/torchserve/` holds config.properties, model-store/ (the .mar files it serves), tmp/ (its
TMPDIR and TEMP: PID file, worker sockets, unpacked models), logs/ (`ts_log.log`, and `launch.log`, the launcher's
output), key_file.json and state.json.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ...errors import EnvironmentProblem
from ...serve.http import HttpError
from ...serve.local import Launch, LocalServer
from ...serve.processes import free_ports, pid_alive
from .client import InferenceClient
from .config import config_properties
from .drain import DRAIN_ENV

logger = logging.getLogger(__name__)

PORT_NAMES = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
UNIX_PATH_MAX = 107  # bytes of a Unix socket path (sun_path is 108 with its NUL)
SOCKET_SUFFIX = "/.ts.sock.65535"  # a worker's socket in TMPDIR
TOKEN_EXPIRATION_MIN = 7 * 24 * 60  # keys of a launched server stay valid a week (TorchServe's default is 60 minutes)


def find_java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def find_torchserve() -> str | None:
    beside = Path(sys.executable).parent / "torchserve"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("torchserve")


def _programs() -> tuple[str, str]:
    """(java, torchserve): the programs a launch needs; EnvironmentProblem naming the one that is missing."""
    java = find_java()
    if not java:
        raise EnvironmentProblem(
            "Java was not found (TorchServe's frontend is a Java program)",
            "install a JDK 11+ (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME; "
            "scripts/setup-torchserve.sh does it",
        )
    torchserve = find_torchserve()
    if not torchserve:
        raise EnvironmentProblem(
            "the torchserve command is not installed", "pip install 'torchserve==0.12.0' (or run scripts/setup.sh)"
        )
    return java, torchserve


def read_tokens(key_file: Path) -> dict[str, str]:
    """{"management": key, "inference": key} from a TorchServe key_file.json (the keys are never printed)."""
    try:
        doc = json.loads(Path(key_file).read_text())
    except FileNotFoundError:
        raise EnvironmentProblem(
            f"TorchServe key file {key_file} does not exist", "pass the key_file.json of the server with --token-file"
        ) from None
    except (OSError, ValueError) as exc:
        raise EnvironmentProblem(
            f"cannot read TorchServe key file {key_file}: {type(exc).__name__}", "pass the key_file.json the server wrote"
        ) from None
    out = {}
    for kind in ("management", "inference"):
        entry = doc.get(kind)
        if isinstance(entry, dict) and entry.get("key"):
            out[kind] = str(entry["key"])
    if len(out) != 2:
        raise EnvironmentProblem(
            f"{key_file} has no management and inference keys", "pass the key_file.json TorchServe wrote at start"
        )
    return out


class TorchServeServer(LocalServer):
    """The TorchServe pack launched for one store."""

    kind = "torchserve"
    title = "TorchServe"
    log_name = "logs/ts_log.log"
    launch_log_name = "logs/launch.log"  # the output of `torchserve --start`
    stop_grace = 30.0

    def __init__(self, store: Path):
        super().__init__(store)
        self.config_file = self.root / "config.properties"
        self.model_store = self.root / "model-store"
        self.tmp = self.root / "tmp"
        self.logs = self.root / "logs"
        self.key_file = self.root / "key_file.json"
        self.drain_dir = self.root / "drain"  # drain files its workers read (drain.py)
        self.pid_file = self.tmp / ".model_server.pid"

    def tokens(self) -> dict[str, str]:
        return read_tokens(self.key_file)

    def start(self, timeout: float) -> dict[str, Any]:
        """Reuse the running server, or launch one on free loopback ports and wait for /ping."""
        return self.ensure(self.plan, timeout)[0]

    def plan(self) -> Launch:
        """Write config.properties and say how to run `torchserve --start` with it."""
        java, torchserve = _programs()
        for folder in (self.root, self.model_store, self.tmp, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_pid()
        self.key_file.unlink(missing_ok=True)
        host = "127.0.0.1"
        ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES), host), strict=True))
        self.config_file.write_text(
            config_properties(
                str(self.model_store),
                host=host,
                ports=ports,
                extra={"token_expiration_min": TOKEN_EXPIRATION_MIN},
                comment="TorchServe launched by `pack deploy` for this store; pack rewrites this file at each launch.",
            )
        )
        tmp = str(self.short_tmp())
        urls = {f"{name}_url": f"http://{host}:{ports[name]}" for name in ("inference", "management", "metrics")}
        return Launch(
            [torchserve, "--start", "--ts-config", str(self.config_file), "--model-store", str(self.model_store), "--ncs"],
            host,
            ports,
            urls["inference_url"],
            "pip install 'torchserve==0.12.0' (or run scripts/setup.sh)",
            env={
                "TMPDIR": tmp,
                "TEMP": tmp,
                "LOG_LOCATION": str(self.logs),
                "METRICS_LOCATION": str(self.logs),
                DRAIN_ENV: str(self.drain_dir),
                "PATH": os.pathsep.join([str(Path(torchserve).parent), str(Path(java).parent), os.environ.get("PATH", "")]),
            },
            record={
                **urls,
                "key_file": str(self.key_file),
                "model_store": str(self.model_store),
                "logs": str(self.logs),
                "config": str(self.config_file),
                "torchserve": torchserve,
            },
            detaches=True,
            umask=0o077,  # key_file.json (and everything else it writes) is owner-only from its first byte
        )

    def server_pid(self) -> int | None:
        """The frontend's pid, from the PID file the launcher writes."""
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def healthy(self, state: dict[str, Any]) -> bool:
        if not self.key_file.exists():
            return False
        try:
            client = InferenceClient(state["inference_url"], self.tokens()["inference"], timeout=5)
            if client.ping(timeout=5).lower() != "healthy":
                return False
        except (HttpError, EnvironmentProblem):
            return False
        os.chmod(self.key_file, 0o600)
        return True

    def forget(self) -> None:
        super().forget()
        for path in (self.key_file, self.pid_file):
            path.unlink(missing_ok=True)

    def _remove_stale_pid(self) -> None:
        """Remove the PID file a dead server left; refuse when the server it names still runs from here."""
        if not self.pid_file.exists():
            return
        old = self.server_pid() or 0
        if pid_alive(old) and self._ours(old):
            raise EnvironmentProblem(
                f"a TorchServe (pid {old}) already runs from {self.root} without pack's state file",
                f"stop it with `pack stop --store {self.root.parents[1]}` or kill {old}",
            )
        self.pid_file.unlink()

    def _ours(self, pid: int) -> bool:
        """The process runs with this server's TMPDIR: a TorchServe started from here (only ever refused, not signalled)."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return any(b"TMPDIR=" + str(t).encode() + b"\0" in environ for t in (self.tmp, self.private_path("tmp")) if t)

    def short_tmp(self) -> Path:
        """The TMPDIR the server runs with: `tmp/`, or, when its worker sockets (`$TMPDIR/.ts.sock.NNNNN`) would pass the
        107-byte limit of a Unix socket path (a deep or non-ASCII store path), a private link to it (see the base)."""
        return self.private_link(
            "tmp",
            self.tmp,
            lambda path: len(path.encode()) + len(SOCKET_SUFFIX) <= UNIX_PATH_MAX,
            (
                f"TorchServe's worker sockets cannot live in {self.tmp} nor in a private folder under /tmp (Unix socket "
                f"paths are at most {UNIX_PATH_MAX} bytes)",
                "use a shorter --store path, or set TMPDIR to a short folder",
            ),
        )

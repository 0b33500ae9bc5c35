"""Launch, find and stop the local TorchServe that pack runs for a model store.

Everything of one server lives in `<store>/.servers/torchserve/`: config.properties, model-store/ (the .mar files it
serves), tmp/ (its TMPDIR and TEMP: PID file, worker sockets, unpacked models), logs/, key_file.json (mode 0600,
written by TorchServe in its start folder) and state.json (pid, start time and executable of the frontend, ports, URLs).
Addresses are loopback only. `stop` signals only the recorded frontend, while it is still the process pack started, and
its own descendants (the workers); a stale state is removed and nothing is signalled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ...errors import EnvironmentProblem
from ...serve.http import HttpError
from ...serve.processes import (
    ProcessIdentity,
    descendants,
    end_tree,
    free_ports,
    identity,
    pid_alive,
    read_state,
    with_environment,
)
from .client import InferenceClient
from .config import config_properties

logger = logging.getLogger(__name__)

PORT_NAMES = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
UNIX_PATH_MAX = 107  # bytes of a Unix socket path (sun_path is 108 with its NUL)
SOCKET_SUFFIX = "/.ts.sock.65535"  # a worker's socket in TMPDIR
TMP_LINK_FILE = "tmp-link"  # names the short TMPDIR link of a deep store (see LocalServer.short_tmp)
LAUNCH_ENV = "PACK_TORCHSERVE_LAUNCH"  # a fresh random value per launch: finds what a Ctrl-C'd launch started
TOKEN_EXPIRATION_MIN = 7 * 24 * 60  # keys of a launched server stay valid a week (TorchServe's default is 60 minutes)


def server_root(store: Path) -> Path:
    return Path(store) / ".servers" / "torchserve"


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


class LocalServer:
    """The TorchServe pack launched for one store (at most one per store)."""

    def __init__(self, store: Path):
        self.root = server_root(store).resolve()
        self.state_file = self.root / "state.json"
        self.config_file = self.root / "config.properties"
        self.model_store = self.root / "model-store"
        self.tmp = self.root / "tmp"
        self.logs = self.root / "logs"
        self.key_file = self.root / "key_file.json"
        self.launch_log = self.logs / "launch.log"

    # ------------------------------------------------------------ state
    def state(self) -> dict[str, Any] | None:
        return read_state(self.state_file)

    def running(self) -> dict[str, Any] | None:
        """The state of a live server launched here, else None (a stale state file is ignored)."""
        state = self.state()
        ident = self._identity(state)
        if state and ident is not None and ident.current():
            return state
        return None

    @staticmethod
    def _identity(state: dict[str, Any] | None) -> ProcessIdentity | None:
        """The frontend's identity as the state recorded it (None without one: such a pid is never signalled)."""
        ident = ProcessIdentity.from_record((state or {}).get("process"))
        return ident if ident is not None and ident.pid == (state or {}).get("pid") else None

    def _ours(self, pid: int) -> bool:
        """The process runs with this server's TMPDIR: a TorchServe started from here (only ever refused, not signalled)."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return any(b"TMPDIR=" + str(t).encode() + b"\0" in environ for t in (self.tmp, self.tmp_link()))

    def tokens(self) -> dict[str, str]:
        return read_tokens(self.key_file)

    def log_path(self) -> Path:
        return self.logs / "ts_log.log"

    # ------------------------------------------------------------ start
    def start(self, timeout: float) -> dict[str, Any]:
        """Reuse the running server, or launch one on free loopback ports and wait for /ping."""
        state = self.running()
        if state:
            return state
        java, torchserve = _programs()
        for folder in (self.root, self.model_store, self.tmp, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_pid()
        self.key_file.unlink(missing_ok=True)
        host = "127.0.0.1"
        ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES), host), strict=True))
        launch = uuid.uuid4().hex
        try:
            started = self._launch(java, torchserve, host, ports, timeout, launch)
            pid = self._wait_pid(started, timeout)
            state = self._write_state(pid, host, ports, torchserve)
        except BaseException:  # Ctrl-C or a failure before the state is written: end what this launch started
            self._end_launch(launch)
            raise
        try:
            self._wait_healthy(state, started, timeout)
        except EnvironmentProblem:
            self.stop()
            raise
        logger.info(f"TorchServe is healthy after {time.monotonic() - started:.1f} s (pid {pid})")
        return state

    def _remove_stale_pid(self) -> None:
        """Remove the PID file a dead server left; refuse when the server it names still runs from here."""
        stale_pid = self.tmp / ".model_server.pid"
        if not stale_pid.exists():
            return
        try:
            old = int(stale_pid.read_text().strip() or 0)
        except ValueError:
            old = 0
        if pid_alive(old) and self._ours(old):
            raise EnvironmentProblem(
                f"a TorchServe (pid {old}) already runs from {self.root} without pack's state file",
                f"stop it with `pack stop --store {self.root.parents[1]}` or kill {old}",
            )
        stale_pid.unlink()

    def _end_launch(self, launch: str) -> None:
        for ident in with_environment(f"{LAUNCH_ENV}={launch}"):
            end_tree(ident, 10)
        self._forget()

    def _launch(self, java: str, torchserve: str, host: str, ports: dict[str, int], timeout: float, launch: str) -> float:
        """Write config.properties and run `torchserve --start`; returns the monotonic time the launch started."""
        self.config_file.write_text(
            config_properties(
                str(self.model_store),
                host=host,
                ports=ports,
                extra={"token_expiration_min": TOKEN_EXPIRATION_MIN},
                comment="TorchServe launched by `pack deploy` for this store; pack rewrites this file at each launch.",
            )
        )
        env = {
            **os.environ,
            "TMPDIR": str(self.short_tmp()),
            "TEMP": str(self.short_tmp()),
            "LOG_LOCATION": str(self.logs),
            "METRICS_LOCATION": str(self.logs),
            LAUNCH_ENV: launch,
            "PATH": f"{Path(torchserve).parent}{os.pathsep}{Path(java).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        # Only what this launch writes counts when looking for "Address already in use".
        self._log_marks = {path: (path.stat().st_size if path.exists() else 0) for path in (self.launch_log, self.log_path())}
        logger.info(
            f"starting TorchServe on {host} (inference {ports['inference']}, management {ports['management']}); "
            f"logs in {self.logs}"
        )
        started = time.monotonic()
        with open(self.launch_log, "ab") as out:
            try:
                proc = subprocess.run(
                    [
                        torchserve,
                        "--start",
                        "--ts-config",
                        str(self.config_file),
                        "--model-store",
                        str(self.model_store),
                        "--ncs",
                    ],
                    cwd=self.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=max(30.0, timeout),
                    umask=0o077,  # key_file.json (and everything else it writes) is owner-only from its first byte
                )
            except subprocess.TimeoutExpired:
                raise EnvironmentProblem(
                    f"`torchserve --start` did not return within {timeout:.0f} s", f"see {self.launch_log}"
                ) from None
        if proc.returncode != 0:
            raise EnvironmentProblem(f"`torchserve --start` failed with exit code {proc.returncode}", f"see {self.launch_log}")
        return started

    def _write_state(self, pid: int, host: str, ports: dict[str, int], torchserve: str) -> dict[str, Any]:
        ident = identity(pid)
        if ident is None:
            raise EnvironmentProblem(
                f"TorchServe (pid {pid}) exited right after its start; see its log {self.log_path()}", f"and {self.launch_log}"
            )
        state = {
            "pid": pid,
            "process": ident.record(),
            "host": host,
            "ports": ports,
            "inference_url": f"http://{host}:{ports['inference']}",
            "management_url": f"http://{host}:{ports['management']}",
            "metrics_url": f"http://{host}:{ports['metrics']}",
            "key_file": str(self.key_file),
            "model_store": str(self.model_store),
            "logs": str(self.logs),
            "config": str(self.config_file),
            "torchserve": torchserve,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp_state = self.state_file.with_suffix(".tmp")
        tmp_state.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp_state, self.state_file)
        return state

    def _wait_pid(self, started: float, timeout: float) -> int:
        pid_file = self.tmp / ".model_server.pid"
        while time.monotonic() - started < timeout:
            if pid_file.exists():
                try:
                    return int(pid_file.read_text().strip())
                except ValueError:
                    pass
            time.sleep(0.1)
        raise EnvironmentProblem(f"TorchServe wrote no PID file within {timeout:.0f} s", f"see {self.launch_log}")

    def _port_problem(self) -> str | None:
        for path in (self.launch_log, self.log_path()):
            try:
                with open(path, "rb") as fh:
                    fh.seek(getattr(self, "_log_marks", {}).get(path, 0))
                    text = fh.read().decode("utf-8", "replace")
            except OSError:
                continue
            if "Address already in use" in text or "BindException" in text:
                return str(path)
        return None

    def _wait_healthy(self, state: dict[str, Any], started: float, timeout: float) -> None:
        while True:
            elapsed = time.monotonic() - started
            taken = self._port_problem()
            if taken:
                raise EnvironmentProblem(
                    f"TorchServe could not bind its ports (a port is already in use; see {taken})",
                    "run the command again (pack picks new free ports) or stop what holds the port",
                )
            if not pid_alive(state["pid"]):
                raise EnvironmentProblem(
                    f"TorchServe exited during start-up; see its log {self.log_path()}", f"and {self.launch_log}"
                )
            if self.key_file.exists():
                try:
                    client = InferenceClient(state["inference_url"], self.tokens()["inference"], timeout=5)
                    if client.ping(timeout=5).lower() == "healthy":
                        os.chmod(self.key_file, 0o600)
                        return
                except (HttpError, EnvironmentProblem):
                    pass
            if elapsed > timeout:
                raise EnvironmentProblem(
                    f"TorchServe did not become healthy within {timeout:.0f} s; see its log {self.log_path()}",
                    "raise --timeout on a slow machine",
                )
            time.sleep(0.25)

    # ------------------------------------------------------------ stop
    def processes(self) -> list[int]:
        """Pids of this server: the frontend pack started (while it is still that process) and its descendants."""
        ident = self._identity(self.running())
        return sorted([ident.pid, *(d.pid for d in descendants(ident.pid))]) if ident is not None else []

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Stop the frontend pack started and its descendants (its workers); nothing else is signalled. A state whose
        pid is gone or belongs to another process now is stale: it is removed and the result says so."""
        state = self.state()
        ident = self._identity(state)
        if state is None or ident is None or not ident.current():
            self._forget()
            stale = state is not None and identity(state.get("pid")) is not None
            return {"stopped": False, "pids": [], "stale": stale}
        pids = [ident.pid, *(d.pid for d in descendants(ident.pid))]
        left = end_tree(ident, timeout)
        if left:
            raise EnvironmentProblem(
                f"TorchServe processes {left} did not stop", f"kill them by pid (kill -9 {' '.join(map(str, left))})"
            )
        self._forget()
        logger.info(f"stopped TorchServe (pids {', '.join(map(str, pids))})")
        return {"stopped": True, "pids": pids}

    def _forget(self) -> None:
        link = self.tmp_link()
        for path in (self.state_file, self.key_file, self.tmp / ".model_server.pid", self.root / TMP_LINK_FILE):
            path.unlink(missing_ok=True)
        if link is not None and link.is_symlink() and link.parent.name.startswith("pack-ts-"):
            link.unlink()  # the link pack made, never what it points to
            with contextlib.suppress(OSError):
                link.parent.rmdir()

    # ------------------------------------------------------------ a TMPDIR short enough for worker sockets
    def short_tmp(self) -> Path:
        """The TMPDIR the server runs with: `tmp/`, or, when its worker sockets (`$TMPDIR/.ts.sock.NNNNN`) would pass the
        107-byte limit of a Unix socket path (a deep or non-ASCII store path), a symlink to it from a fresh private
        folder with a short name (recorded in `tmp_link`, removed at stop)."""
        if len(str(self.tmp).encode()) + len(SOCKET_SUFFIX) <= UNIX_PATH_MAX:
            return self.tmp
        link = self.tmp_link()
        if link is not None and link.is_symlink():
            return link
        link = Path(tempfile.mkdtemp(prefix="pack-ts-", dir=_short_temp_root())) / "tmp"  # mode 0700, a name of its own
        link.symlink_to(self.tmp, target_is_directory=True)
        (self.root / TMP_LINK_FILE).write_text(str(link))
        if len(str(link).encode()) + len(SOCKET_SUFFIX) > UNIX_PATH_MAX:
            raise EnvironmentProblem(
                f"TorchServe's worker sockets cannot live in {self.tmp} nor in {link.parent} (Unix socket paths are at "
                f"most {UNIX_PATH_MAX} bytes)",
                "use a shorter --store path, or set TMPDIR to a short folder",
            )
        return link

    def tmp_link(self) -> Path | None:
        try:
            return Path((self.root / TMP_LINK_FILE).read_text().strip() or "-")
        except OSError:
            return None


def _short_temp_root() -> str | None:
    """Where the short private folder goes: the system's /tmp when it is a writable folder (TMPDIR may itself be the
    long path, as under a test runner or a CI workspace), else Python's temporary folder."""
    return "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK | os.X_OK) else None

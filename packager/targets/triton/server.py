"""Launch, find and stop the local tritonserver that pack runs for a store.

State lives in `<store>/.servers/triton/`: `state.json` (pid, start time and executable, ports, binary, backends),
`server.log`, and the
server's own model repository `repository/`. The server listens on 127.0.0.1 only, on free ports, in explicit
model-control mode (models are loaded and unloaded through the repository API).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import EnvironmentProblem, UsageError
from ...serve.http import ForeignAnswer
from ...serve.processes import ProcessIdentity, end_child, end_tree, free_ports, identity
from .client import TritonHTTP

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def triton_home() -> Path:
    return Path(os.environ.get("PACK_TRITON_HOME") or PROJECT_ROOT / ".triton")


def state_dir(store: Path) -> Path:
    return Path(store) / ".servers" / "triton"


@dataclass
class ServerState:
    pid: int
    http_port: int
    grpc_port: int
    metrics_port: int
    host: str
    binary: str
    log: str
    repository: str
    backends: list[str] = field(default_factory=list)
    repository_link: str = ""  # a plain path tritonserver reads the repository through (a store path with spaces)
    started: float = 0.0
    deployments: dict[str, Any] = field(default_factory=dict)  # name -> {version, models, backend}
    process: dict[str, Any] = field(default_factory=dict)  # the identity of the launched process (processes.py)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def save(self, store: Path) -> None:
        folder = state_dir(store)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(folder / "state.json")

    @classmethod
    def load(cls, store: Path) -> ServerState | None:
        path = state_dir(store) / "state.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return None

    def identity(self) -> ProcessIdentity | None:
        """The launched process as recorded; None for a state without a usable identity (never signalled)."""
        ident = ProcessIdentity.from_record(self.process)
        return ident if ident is not None and ident.pid == self.pid else None

    def alive(self) -> bool:
        """The recorded pid is alive and still the process pack launched (same start time and executable)."""
        ident = self.identity()
        return ident is not None and ident.current()


def find_binary(explicit: str | None) -> Path:
    """--tritonserver PATH, else PACK_TRITONSERVER, else `tritonserver` on PATH, else the one setup-triton.sh installs."""
    candidates: list[tuple[str, str | None]] = []
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EnvironmentProblem(
                f"--tritonserver {explicit}: not an executable file", "give the path of a tritonserver binary"
            )
        return path.resolve()
    env = os.environ.get("PACK_TRITONSERVER")
    candidates.append(("PACK_TRITONSERVER", env))
    candidates.append(("PATH", shutil.which("tritonserver")))
    candidates.append(("pack's [triton] setup", str(triton_home() / "bin" / "tritonserver")))
    for _, candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate).resolve()
    raise EnvironmentProblem(
        "no tritonserver found (not on PATH, no PACK_TRITONSERVER, nothing in " + str(triton_home()) + ")",
        "run `bash scripts/setup-triton.sh` (installs a CPU tritonserver into .triton/), pass --tritonserver PATH, "
        "or --url of a running server",
    )


def backend_directory(binary: Path) -> Path:
    """Where the binary loads backends from: the wrapper's --backend-directory, else <prefix>/backends."""
    try:
        head = binary.read_bytes()[:4096]
    except OSError:
        head = b""
    if head.startswith(b"#!"):
        for token in head.decode(errors="replace").split():
            if token.startswith("--backend-directory="):
                return Path(token.split("=", 1)[1].strip("\"'"))
    for candidate in (binary.parent.parent / "backends", Path("/opt/tritonserver/backends")):
        if candidate.is_dir():
            return candidate
    return binary.parent.parent / "backends"


def available_backends(binary: Path) -> list[str]:
    folder = backend_directory(binary)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("libtriton_*.so")))


PLAIN = re.compile(r"[A-Za-z0-9._/+=@%:,-]+")  # what the python backend's stub takes in a path (no spaces, ASCII)


def _plain_path(repository: Path) -> Path:
    """`repository`, or when its path has characters Triton's python-backend stub cannot take (it fails with
    `stol` on a space and hangs the load), a symlink to it from a fresh private folder with a plain name."""
    if PLAIN.fullmatch(str(repository)):
        return repository
    folder = Path(tempfile.mkdtemp(prefix="pack-triton-"))  # mode 0700, a name no one else can take
    link = folder / "repository"
    link.symlink_to(repository, target_is_directory=True)
    if not PLAIN.fullmatch(str(link)):
        raise EnvironmentProblem(
            f"tritonserver's python backend cannot read a model repository at {repository} (spaces or non-ASCII "
            f"characters), and the temporary folder {folder} has them too",
            "use --store at a path of plain ASCII characters, or set TMPDIR to one",
        )
    return link


def _drop_link(state: ServerState) -> None:
    """Remove the private folder of the repository link (only the link pack made, never what it points to)."""
    link = Path(state.repository_link) if state.repository_link else None
    if link is not None and link.is_symlink() and link.name == "repository" and link.parent.name.startswith("pack-triton-"):
        link.unlink()
        with contextlib.suppress(OSError):
            link.parent.rmdir()


def free_port(host: str) -> int:
    return free_ports(1, host)[0]


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _port_error(log_text: str) -> bool:
    lowered = log_text.lower()
    return "address already in use" in lowered or "failed to start" in lowered and "port" in lowered


def launch(store: Path, binary: Path, host: str, timeout: float, ports: tuple[int, int, int] | None = None) -> ServerState:
    folder = state_dir(store)
    repository = folder / "repository"
    repository.mkdir(parents=True, exist_ok=True)
    log_path = folder / "server.log"
    http, grpc, metrics = ports or (free_port(host), free_port(host), free_port(host))
    served = _plain_path(repository.resolve())
    cmd = [
        str(binary),
        f"--model-repository={served}",
        "--model-control-mode=explicit",
        "--http-address",
        host,
        "--grpc-address",
        host,
        "--metrics-address",
        host,
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--allow-metrics=true",
        "--exit-timeout-secs=10",
        "--log-verbose=0",
    ]
    logger.info(f"starting {binary} on {host}:{http} (log {log_path})")
    t0 = time.perf_counter()
    with open(log_path, "ab") as fh:
        fh.write(f"\n=== pack: {' '.join(cmd)}\n".encode())
        fh.flush()
        try:
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(folder)
            )
        except OSError as exc:
            raise EnvironmentProblem(
                f"cannot run {binary}: {exc.strerror or exc}", "pass --tritonserver PATH of a working binary"
            ) from None
    state = ServerState(
        pid=proc.pid,
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
        host=host,
        binary=str(binary),
        log=str(log_path),
        repository=str(repository.resolve()),
        repository_link=str(served) if served != repository.resolve() else "",
        backends=available_backends(binary),
        started=time.time(),
    )
    client = TritonHTTP(state.url, timeout=5)
    try:
        return _wait_ready(store, proc, state, client, timeout, t0)
    except BaseException:  # never ready, exited, or Ctrl-C: no server is left running without a state file
        end_child(proc, 5)
        _drop_link(state)
        raise


def _wait_ready(
    store: Path, proc: subprocess.Popen[bytes], state: ServerState, client: TritonHTTP, timeout: float, t0: float
) -> ServerState:
    http, grpc, metrics, host, log_path = state.http_port, state.grpc_port, state.metrics_port, state.host, Path(state.log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = _log_tail(log_path)
            if _port_error(tail):
                raise EnvironmentProblem(
                    f"tritonserver could not bind its ports {http}/{grpc}/{metrics} on {host}: address already in use",
                    "run again (pack picks new free ports), or stop what holds them",
                )
            last = (tail.strip().splitlines() or ["(empty log)"])[-1][:300]
            raise EnvironmentProblem(f"tritonserver exited with code {code} while starting: {last}", f"see {log_path}")
        ident = identity(proc.pid)  # read once ready: a wrapper script has exec'd the server by then
        if ident is not None and client.ready():
            state.process = ident.record()
            state.save(store)
            logger.info(
                f"tritonserver ready in {time.perf_counter() - t0:.2f} s "
                f"(pid {proc.pid}, backends: {', '.join(state.backends) or 'unknown'})"
            )
            return state
        time.sleep(0.1)
    raise EnvironmentProblem(f"tritonserver did not become ready within {timeout:.0f} s", f"see {log_path}; raise --timeout")


def running(store: Path) -> ServerState | None:
    """The server pack launched for this store, if it is alive and answers."""
    state = ServerState.load(store)
    if state is None:
        return None
    try:
        if not state.alive() or not TritonHTTP(state.url, timeout=3).live():
            return None
    except ForeignAnswer:  # another server holds the port it recorded: not the one pack launched
        return None
    return state


def ensure(store: Path, binary_opt: str | None, host: str, timeout: float) -> tuple[ServerState, bool]:
    """(state, launched_now): reuse the store's live server, or start one."""
    state = running(store)
    if state is not None:
        return state, False
    stale = ServerState.load(store)
    old = stale.identity() if stale is not None else None
    if old is not None and old.current():
        logger.warning(f"a tritonserver (pid {old.pid}) from an earlier run does not answer; stopping it")
        end_tree(old, 10)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(f"pack launches tritonserver on loopback only, not {host}", "use --url for a server on another address")
    binary = find_binary(binary_opt)
    state = launch(store, binary, "127.0.0.1", timeout)
    if stale is not None:
        state.deployments = {}
        state.save(store)
    return state, True


def stop(store: Path) -> dict[str, Any]:
    """Stop the tritonserver pack launched for this store and its own child processes. A state whose pid is gone or
    now names another process is stale: it is removed and nothing is signalled."""
    state = ServerState.load(store)
    if state is None:
        return {"target": "triton", "stopped": False, "summary": f"no Triton server launched by pack for {store}"}
    ident = state.identity()
    was_alive = ident is not None and ident.current()
    if ident is not None and was_alive:
        left = end_tree(ident, 15)
        if left:
            raise EnvironmentProblem(f"tritonserver pid {state.pid} did not exit", f"kill it by hand (kill -9 {state.pid})")
    (state_dir(store) / "state.json").unlink(missing_ok=True)
    _drop_link(state)
    summary = f"stopped tritonserver (pid {state.pid}, {state.url})" if was_alive else _stale(state)
    logger.info(summary)
    return {"target": "triton", "stopped": was_alive, "pid": state.pid, "url": state.url, "log": state.log, "summary": summary}


def _stale(state: ServerState) -> str:
    if identity(state.pid) is None:
        return f"tritonserver pid {state.pid} was not running; state cleared"
    return (
        f"stale state: pid {state.pid} is no longer the tritonserver pack started (another process has it now); "
        "nothing was signalled; state cleared"
    )

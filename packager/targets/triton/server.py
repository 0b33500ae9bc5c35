"""The local tritonserver pack runs for a store, on the local-server base (packager/serve/local.py).

Its own parts: the binary and its backends, the command line (explicit model-control mode: models are loaded and
unloaded through the repository API; 127.0.0.1 only, on free ports), the readiness check, the check that a recorded
server is still the one on its port (a web server that took the port is not it), and the model repository
`repository/`, read through a plain private link when the store's path has characters the python backend's stub
cannot take. `<store>/.servers/triton/` holds `state.json` (the base's fields, the ports by name, binary, backends,
repository, the deployments pack made), `server.log` and `repository/`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ...errors import EnvironmentProblem
from ...serve.http import ForeignAnswer
from ...serve.local import Launch, LocalServer, require_loopback
from ...serve.processes import free_ports
from .client import TritonHTTP

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PLAIN = re.compile(r"[A-Za-z0-9._/+=@%:,-]+")  # what the python backend's stub takes in a path (no spaces, ASCII)


def triton_home() -> Path:
    return Path(os.environ.get("PACK_TRITON_HOME") or PROJECT_ROOT / ".triton")


@dataclass
class ServerState:
    """What Triton's code reads of a recorded state (the file itself is the base's)."""

    pid: int
    http_port: int
    grpc_port: int
    metrics_port: int
    host: str
    binary: str
    log: str
    repository: str
    backends: list[str] = field(default_factory=list)
    deployments: dict[str, Any] = field(default_factory=dict)  # name -> {version, models, backend, serving_model}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @classmethod
    def of(cls, state: dict[str, Any]) -> ServerState | None:
        """The typed view of a state, None when the state lacks one of its fields."""
        try:
            return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})
        except TypeError:
            return None


class TritonServer(LocalServer):
    """The tritonserver pack launched for one store."""

    kind = "triton"
    title = "tritonserver"
    stop_grace = 15.0

    def current(self) -> ServerState | None:
        """The live server launched for this store, if it answers."""
        state = self.running()
        return ServerState.of(state) if state is not None else None

    @property
    def repository(self) -> Path:
        return self.root / "repository"

    def start(self, binary_opt: str | None, host: str, timeout: float) -> tuple[ServerState, bool]:
        """(state, launched now): reuse the store's live server, or start one (loopback only)."""

        def plan() -> Launch:
            require_loopback(host, self.title)
            return self.plan(find_binary(binary_opt))

        state, launched = self.ensure(plan, timeout)
        typed = ServerState.of(state)
        if typed is None:
            raise EnvironmentProblem(
                f"the state of the running tritonserver ({self.state_file}) lacks fields this pack needs",
                f"stop it (`pack stop --target triton --store {self.store}`) and deploy again",
            )
        if launched:
            logger.debug(f"tritonserver backends: {', '.join(typed.backends) or 'unknown'}")
        return typed, launched

    def plan(self, binary: Path, ports: tuple[int, int, int] | None = None) -> Launch:
        """The command line of a server on 127.0.0.1 (on `ports`: http, grpc, metrics; free ones when None)."""
        host = "127.0.0.1"
        self.repository.mkdir(parents=True, exist_ok=True)
        http, grpc, metrics = ports or free_ports(3, host)
        repository = self.repository.resolve()
        served = self.private_link(
            "repository",
            repository,
            lambda path: PLAIN.fullmatch(path) is not None,
            (
                f"tritonserver's python backend cannot read a model repository at {repository} (spaces or non-ASCII "
                "characters), and no private folder with a plain path could be made for it",
                "use --store at a path of plain ASCII characters",
            ),
        )
        command = [str(binary), f"--model-repository={served}", "--model-control-mode=explicit"]
        for option in ("--http-address", "--grpc-address", "--metrics-address"):
            command += [option, host]
        command += ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
        command += ["--allow-metrics=true", "--exit-timeout-secs=10", "--log-verbose=0"]
        return Launch(
            command,
            host,
            {"http": http, "grpc": grpc, "metrics": metrics},
            f"http://{host}:{http}",
            "pass --tritonserver PATH of a working binary",
            record={
                "http_port": http,
                "grpc_port": grpc,
                "metrics_port": metrics,
                "binary": str(binary),
                "repository": str(repository),
                "backends": available_backends(binary),
                "deployments": {},
            },
        )

    def healthy(self, state: dict[str, Any]) -> bool:
        return TritonHTTP(state["url"], timeout=5).ready()

    def answers(self, state: dict[str, Any]) -> bool:
        typed = ServerState.of(state)
        try:
            return typed is not None and TritonHTTP(typed.url, timeout=3).live()
        except ForeignAnswer:  # another server holds the port it recorded: not the one pack launched
            return False

    def bind_failed(self, log_text: str) -> bool:
        lowered = log_text.lower()
        return super().bind_failed(log_text) or ("failed to start" in lowered and "port" in lowered)

    def record_deployment(self, name: str, entry: dict[str, Any] | None) -> None:
        """Record (or, with None, forget) a deployment of this server in its state."""
        state = self.state()
        if state is None:
            return
        deployments = dict(state.get("deployments") or {})
        if entry is None:
            deployments.pop(name, None)
        else:
            deployments[name] = entry
        self.save({**state, "deployments": deployments})


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

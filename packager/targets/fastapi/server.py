"""Launch, find and stop the local FastAPI server (uvicorn running handlers/pack_fastapi.py) that pack runs for a store.

Everything of one server lives in `<store>/.servers/fastapi/`: state.json (pid, start time and executable of the uvicorn
process, host, port, workers, the served set), models.json (the set the app loads at start), models/<name>/<version>-<format>/
(pack.json, the export, labels), runtime/ (the serving runtime's files, copied at each launch), metrics/ (prometheus_client's
multi-process files, emptied at each launch) and server.log. The server binds 127.0.0.1. `stop` signals only the recorded
uvicorn process, while it is still the process pack started, and its own descendants (the workers).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ...errors import EnvironmentProblem
from ...serve.http import HttpError
from ...serve.processes import ProcessIdentity, descendants, end_child, end_tree, free_ports, identity, read_state
from .client import FastAPIClient

logger = logging.getLogger(__name__)

APP = "pack_fastapi:create_app"


def server_root(store: Path) -> Path:
    return Path(store) / ".servers" / "fastapi"


def port_free(host: str, port: int) -> bool:
    """Nothing listens on host:port now (a bind succeeds; with SO_REUSEADDR, as uvicorn binds, so the closed
    connections of a server just stopped do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class LocalServer:
    """The uvicorn pack launched for one store (at most one per store)."""

    def __init__(self, store: Path):
        self.root = server_root(store).resolve()
        self.state_file = self.root / "state.json"
        self.models_file = self.root / "models.json"
        self.models_dir = self.root / "models"
        self.runtime = self.root / "runtime"
        self.metrics_dir = self.root / "metrics"
        self.log_path = self.root / "server.log"

    # ------------------------------------------------------------ state
    def state(self) -> dict[str, Any] | None:
        return read_state(self.state_file)

    @staticmethod
    def _identity(state: dict[str, Any] | None) -> ProcessIdentity | None:
        ident = ProcessIdentity.from_record((state or {}).get("process"))
        return ident if ident is not None and ident.pid == (state or {}).get("pid") else None

    def running(self) -> dict[str, Any] | None:
        """The state of a live server launched here (its recorded process is still the one pack started), else None."""
        state = self.state()
        ident = self._identity(state)
        return state if state and ident is not None and ident.current() else None

    def served(self) -> list[dict[str, Any]]:
        """The set in models.json (what the server loads at its next start), [] when there is none."""
        try:
            doc = json.loads(self.models_file.read_text())
            return list(doc.get("models") or [])
        except (OSError, ValueError, AttributeError):
            return []

    def write_served(self, entries: list[dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.models_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"models": entries}, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.models_file)

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def processes(self) -> list[int]:
        """The uvicorn process pack started (while it is still that process) and its descendants (the workers)."""
        ident = self._identity(self.running())
        return sorted([ident.pid, *(d.pid for d in descendants(ident.pid))]) if ident is not None else []

    # ------------------------------------------------------------ start
    def start(self, port: int | None, workers: int, device: str, timeout: float) -> dict[str, Any]:
        """Launch uvicorn with the set in models.json on 127.0.0.1:`port` (a free one when None) and wait until
        /health answers 200 (every worker loads every model before it takes a request)."""
        try:
            import fastapi  # noqa: F401
            import prometheus_client  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError as exc:
            raise EnvironmentProblem(f"the fastapi target needs {exc.name}", "pip install 'pack-models[fastapi]'") from None
        host = "127.0.0.1"
        if port is None:
            port = free_ports(1, host)[0]
        elif not port_free(host, port):
            raise EnvironmentProblem(
                f"port {port} on {host} is in use by another process", "pass another --port, or stop what holds it"
            )
        self._lay_runtime()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.metrics_dir.mkdir(parents=True)
        env = {
            **os.environ,
            "PACK_FASTAPI_MODELS": str(self.models_file),
            "PACK_FASTAPI_DEVICE": device,
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            "PYTHONPATH": str(self.runtime),
        }
        cmd = [sys.executable, "-m", "uvicorn", APP, "--factory", "--app-dir", str(self.runtime), "--host", host]
        cmd += ["--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
        logger.info(f"starting uvicorn ({workers} worker(s)) on {host}:{port}; log {self.log_path}")
        t0 = time.monotonic()
        with open(self.log_path, "ab") as out:
            out.write(f"\n=== pack: {' '.join(cmd)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                env=env,
                start_new_session=True,
            )
        try:
            return self._wait_healthy(proc, host, port, workers, device, timeout, t0)
        except BaseException:  # not healthy, exited, or Ctrl-C: no server is left without a state file
            end_child(proc, 5)
            raise

    def _lay_runtime(self) -> None:
        """The serving runtime's files the app imports (the app, every task's entry handler and what they import)."""
        from ...serve.tasks import list_tasks, read_runtime, shipped_files

        names = sorted({n for entry in ["pack_fastapi.py", *(t.handler for t in list_tasks())] for n in shipped_files(entry)})
        shutil.rmtree(self.runtime, ignore_errors=True)
        self.runtime.mkdir(parents=True)
        for name in names:
            (self.runtime / name).write_bytes(read_runtime(name))

    def _wait_healthy(
        self, proc: subprocess.Popen[bytes], host: str, port: int, workers: int, device: str, timeout: float, t0: float
    ) -> dict[str, Any]:
        client = FastAPIClient(f"http://{host}:{port}", timeout=5)
        while time.monotonic() - t0 < timeout:
            code = proc.poll()
            if code is not None:
                tail = _log_tail(self.log_path)
                if "address already in use" in tail.lower():
                    raise EnvironmentProblem(
                        f"uvicorn could not bind {host}:{port}: address already in use",
                        "pass another --port, or stop what holds it",
                    )
                last = (tail.strip().splitlines() or ["(empty log)"])[-1][:300]
                raise EnvironmentProblem(
                    f"the FastAPI server exited with code {code} while starting: {last}", f"see {self.log_path}"
                )
            ident = identity(proc.pid)
            try:
                healthy = ident is not None and client.healthy()
            except HttpError:
                healthy = False
            if healthy and ident is not None:
                state = {
                    "pid": proc.pid,
                    "process": ident.record(),
                    "host": host,
                    "port": port,
                    "url": f"http://{host}:{port}",
                    "workers": workers,
                    "device": device,
                    "log": str(self.log_path),
                    "models": self.served(),
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                self._save(state)
                logger.info(f"the FastAPI server is healthy after {time.monotonic() - t0:.1f} s (pid {proc.pid})")
                return state
            time.sleep(0.2)
        raise EnvironmentProblem(
            f"the FastAPI server did not become healthy within {timeout:.0f} s", f"see {self.log_path}; raise --timeout"
        )

    # ------------------------------------------------------------ stop
    def stop(self, timeout: float = 20.0) -> dict[str, Any]:
        """Stop the uvicorn pack started and its workers; nothing else is signalled. A state whose pid is gone or now
        names another process is stale: it is removed and the result says so."""
        state = self.state()
        ident = self._identity(state)
        if state is None or ident is None or not ident.current():
            self.state_file.unlink(missing_ok=True)
            stale = state is not None and identity(state.get("pid")) is not None
            return {"stopped": False, "pids": [], "stale": stale}
        pids = [ident.pid, *(d.pid for d in descendants(ident.pid))]
        left = end_tree(ident, timeout)
        if left:
            raise EnvironmentProblem(
                f"FastAPI server processes {left} did not stop", f"kill them by pid (kill -9 {' '.join(map(str, left))})"
            )
        self.state_file.unlink(missing_ok=True)
        logger.info(f"stopped the FastAPI server (pids {', '.join(map(str, pids))})")
        return {"stopped": True, "pids": pids, "port": state.get("port")}

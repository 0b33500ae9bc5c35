"""The one base of every server pack launches on this machine for a store (tritonserver, TorchServe, uvicorn, ...).

Everything of one server lives in `<store>/.servers/<kind>/`: `state.json`, the server's log, and whatever the server
keeps of its own. The base does, once for every server:

* the state file: read, and written atomically twice: `starting` right after the server's process exists (pid,
  identity, ports, URL, log, the launch marker, the launching pack), `ready` once it answers; whether the process it
  records is still the one pack started (start time and executable, or while starting, start time and marker: a pid
  reused by another process is never signalled). A `starting` server whose pack is gone (killed) is adopted once it
  answers, else stopped by the next launch;
* launch: the server's command run detached (a session of its own, so a Ctrl-C at the terminal reaches pack, not the
  server; stdin closed; output appended to its log; a fresh launch marker in its environment), waited for until it
  answers its health check. A port already taken, an exit while starting or no answer in time is one
  EnvironmentProblem; a launch that fails or is interrupted ends every process it started and leaves no state;
* stop: SIGTERM to the recorded process, SIGKILL after a grace period, to it and its own descendants only (each
  checked again right before its signal), and one summary (stopped, stale state, or nothing running);
* private links (packager/serve/links.py), removed when the server stops.

A server subclasses `LocalServer` with its own parts only: `kind` and `title`, a plan (its folders, config files,
ports, command line, environment and what its state records: a `Launch`, passed to `ensure` or `launch`) and
`healthy()`; where it has them,
`server_pid()` for a launcher that exits once the server runs, `answers()` for a check beyond the process identity,
`forget()` for files of its own, `bind_failed()` for how its log says a port is taken.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import EnvironmentProblem, UsageError
from .links import PrivateLinks
from .processes import ProcessIdentity, descendants, end_child, end_tree, identity, with_environment

logger = logging.getLogger(__name__)

LAUNCH_ENV = "PACK_SERVER_LAUNCH"  # a fresh random value per launch: finds what an interrupted launch started
LOOPBACK = ("127.0.0.1", "localhost", "::1")
STARTING, READY = "starting", "ready"  # a state's `phase`: recorded before the server can take work, then once it answers


def servers_root(store: Path) -> Path:
    """Where the servers of a store keep their state (`<store>/.servers/`; its `.lock` is the store's deploy lock)."""
    return Path(store) / ".servers"


def require_loopback(host: str, title: str) -> None:
    """pack launches servers on loopback only: UsageError for any other address."""
    if host not in LOOPBACK:
        raise UsageError(f"pack launches {title} on loopback only, not {host}", "use --url for a server on another address")


def read_state(path: Path) -> dict[str, Any] | None:
    """A state file (a JSON object), or None when it is missing or unreadable."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


@dataclass
class Launch:
    """One launch of a server, as the server plans it (the plan `LocalServer.ensure` and `launch` are given)."""

    command: list[str]
    host: str
    ports: dict[str, int]  # name -> port: recorded, and named when one is taken
    url: str  # the endpoint the server is reached at (recorded as the state's `url`)
    fix: str  # what to do when the command cannot be run at all
    env: dict[str, str] = field(default_factory=dict)  # set over this process's environment
    record: dict[str, Any] = field(default_factory=dict)  # the server's own fields of its state
    detaches: bool = False  # the command starts the server and exits; the server's pid comes from `server_pid`
    umask: int = -1  # e.g. 0o077: files the server writes (a key file) are owner-only from their first byte


class LocalServer(PrivateLinks):
    """The server of one kind that pack launched for one store (at most one per store and kind)."""

    kind: ClassVar[str]  # its folder under <store>/.servers/, and `target` in a stop's result
    title: ClassVar[str]  # how messages name it ("tritonserver", "TorchServe", "FastAPI server")
    log_name: ClassVar[str] = "server.log"  # the server's own log, in its folder: where messages send the reader
    launch_log_name: ClassVar[str] = ""  # where a launch's command writes its output, when not to the server's log
    stop_grace: ClassVar[float] = 20.0  # seconds between SIGTERM and SIGKILL at stop
    poll_s: ClassVar[float] = 0.1

    def __init__(self, store: Path):
        self.store = Path(store)
        self.root = (servers_root(self.store) / self.kind).resolve()
        self.state_file = self.root / "state.json"
        self.log_path = self.root / self.log_name
        self.launch_log = self.root / (self.launch_log_name or self.log_name)

    # ------------------------------------------------------------ the server's own parts
    def healthy(self, state: dict[str, Any]) -> bool:
        """The server described by `state` (not saved yet) answers its health check."""
        raise NotImplementedError

    def server_pid(self) -> int | None:
        """For a launcher that exits once the server runs (`Launch.detaches`): the server's pid, once known."""
        return None

    def answers(self, state: dict[str, Any]) -> bool:
        """A recorded live process is this server (beyond its identity: e.g. no other server holds its port)."""
        return True

    def bind_failed(self, log_text: str) -> bool:
        """What the server writes when a port it was given is taken."""
        lowered = log_text.lower()
        return "address already in use" in lowered or "bindexception" in lowered

    def forget(self) -> None:
        """Remove what a server leaves once it is stopped: its state and its private links (a server adds its own)."""
        self.state_file.unlink(missing_ok=True)
        self.forget_links()

    # ------------------------------------------------------------ state
    def state(self) -> dict[str, Any] | None:
        return read_state(self.state_file)

    def save(self, state: dict[str, Any]) -> None:
        """Write the state file atomically (a temporary file of this process beside it, then a rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    @staticmethod
    def recorded(state: dict[str, Any] | None) -> ProcessIdentity | None:
        """The launched process as the state recorded it; None without a usable identity (such a pid is never
        signalled)."""
        ident = ProcessIdentity.from_record((state or {}).get("process"))
        return ident if ident is not None and ident.pid == (state or {}).get("pid") else None

    def owned(self, state: dict[str, Any] | None) -> ProcessIdentity | None:
        """The live process `state` records while it is the one pack started: its identity, or for a server recorded
        while `starting`, its pid and start time with that launch's marker (a wrapper may have exec'd the server)."""
        ident = self.recorded(state)
        if state is None or ident is None:
            return None
        if ident.current():
            return ident
        marker = state.get("marker")
        return ident.launched(f"{LAUNCH_ENV}={marker}") if state.get("phase") == STARTING and marker else None

    def alive(self) -> ProcessIdentity | None:
        """The recorded process while it is still the one pack started (whether it answers or not)."""
        return self.owned(self.state())

    def running(self) -> dict[str, Any] | None:
        """The state of the live server launched here, else None (a stale state is ignored). A server recorded while
        starting by a pack that is gone (killed during the wait) is adopted once it answers: its state is completed."""
        state = self.state()
        ident = self.owned(state)
        if state is None or ident is None or not self.answers(state):
            return None
        if state.get("phase") != STARTING:
            return state
        if _launching(state) or not self.healthy(state):
            return None  # a launch still in progress, or one that never answered
        adopted = {**state, "pid": ident.pid, "process": ident.record(), "phase": READY}
        adopted.pop("launcher", None)
        self.save(adopted)
        logger.info(f"adopted the {self.title} (pid {ident.pid}) that an interrupted pack launched for this store")
        return adopted

    def processes(self) -> list[int]:
        """The process pack started (while it is still that process) and its descendants (workers, stubs)."""
        ident = self.alive()
        return sorted([ident.pid, *(d.pid for d in descendants(ident.pid))]) if ident is not None else []

    # ------------------------------------------------------------ start
    def ensure(self, plan: Callable[[], Launch], timeout: float) -> tuple[dict[str, Any], bool]:
        """(state, launched now): the server running for this store, else a launch of `plan()` once it answers. A
        process pack started earlier that is alive but does not answer is stopped first."""
        state = self.running()
        if state is not None:
            return state, False
        state = self.state()
        if state is not None and state.get("phase") == STARTING and _launching(state):
            raise EnvironmentProblem(
                f"another pack (pid {state['launcher']['pid']}) is starting the {self.title} of store {self.store}",
                "wait for it to finish, then run the command again",
            )
        mute = self.alive()
        if mute is not None:
            logger.warning(f"a {self.title} (pid {mute.pid}) from an earlier run does not answer; stopping it")
            end_tree(mute, 10)
        self._end_marked(state)
        return self.launch(plan, timeout), True

    def _end_marked(self, state: dict[str, Any] | None) -> list[int]:
        """End every process of the launch a `starting` state records (found by its marker: before its server's pid
        was known, e.g. TorchServe's), and return their pids."""
        marker = (state or {}).get("marker") if (state or {}).get("phase") == STARTING else None
        found = with_environment(f"{LAUNCH_ENV}={marker}") if marker else []
        for ident in found:
            end_tree(ident, 10)
        return [ident.pid for ident in found]

    def launch(self, plan: Callable[[], Launch], timeout: float) -> dict[str, Any]:
        """Plan, run and wait for a new server; its state once it answers. On any failure or Ctrl-C after the plan,
        every process this launch started is ended and nothing of it is left (state, private links). A plan that
        refuses (a port in use, a server already running from here) leaves what it found untouched."""
        launch = plan()
        marker = uuid.uuid4().hex
        child: subprocess.Popen[bytes] | None = None
        try:
            self.launch_log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.launch_log, "ab") as out:
                out.write(f"\n=== pack: {' '.join(launch.command)}\n".encode())
            marks = {path: (path.stat().st_size if path.exists() else 0) for path in {self.launch_log, self.log_path}}
            started = time.monotonic()
            child = self._run(launch, marker, timeout)
            self.save(self._state(launch, None if launch.detaches else identity(child.pid), marker, STARTING))
            return self._wait_ready(launch, child, marks, started, timeout, marker)
        except BaseException:
            if child is not None and child.returncode is None:
                end_child(child, 5)
            for ident in with_environment(f"{LAUNCH_ENV}={marker}"):
                end_tree(ident, 10)
            self.forget()
            raise

    def _run(self, launch: Launch, marker: str, timeout: float) -> subprocess.Popen[bytes]:
        """Start the command, detached; a launcher that detaches itself is waited for."""
        ports = ", ".join(f"{name} {port}" for name, port in launch.ports.items())
        logger.info(f"starting {self.title} on {launch.host} ({ports}); log {self.log_path}")
        env = {**os.environ, **launch.env, LAUNCH_ENV: marker}
        with open(self.launch_log, "ab") as out:
            try:
                child = subprocess.Popen(
                    launch.command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.root,
                    env=env,
                    start_new_session=True,
                    umask=launch.umask,
                )
            except OSError as exc:
                raise EnvironmentProblem(f"cannot run {launch.command[0]}: {exc.strerror or exc}", launch.fix) from None
        if launch.detaches:
            try:
                code = child.wait(timeout=max(30.0, timeout))
            except subprocess.TimeoutExpired:
                raise EnvironmentProblem(
                    f"`{' '.join(launch.command[:2])}` did not return within {max(30.0, timeout):.0f} s",
                    f"see {self.launch_log}",
                ) from None
            if code != 0:
                raise EnvironmentProblem(
                    f"`{' '.join(launch.command[:2])}` failed with exit code {code}", f"see {self.launch_log}"
                )
        return child

    def _wait_ready(
        self,
        launch: Launch,
        child: subprocess.Popen[bytes],
        marks: dict[Path, int],
        started: float,
        timeout: float,
        marker: str,
    ) -> dict[str, Any]:
        pid = None if launch.detaches else child.pid
        while True:
            self._check_start(launch, None if launch.detaches else child.poll(), marks)
            pid = pid or self.server_pid()
            ident = identity(pid)  # read once it answers: a wrapper script has exec'd the server by then
            if launch.detaches and pid and ident is None:  # (a child that exits is caught by its exit code)
                raise EnvironmentProblem(
                    f"{self.title} (pid {pid}) exited while starting", f"see its log {self.log_path} and {self.launch_log}"
                )
            if ident is not None and (self.state() or {}).get("pid") != ident.pid:  # a launcher's server, once known
                self.save(self._state(launch, ident, marker, STARTING))
            state = self._state(launch, ident, marker, READY) if ident is not None else None
            if state is not None and self.healthy(state):
                self.save(state)
                logger.info(f"{self.title} is ready after {time.monotonic() - started:.1f} s (pid {state['pid']})")
                return state
            if time.monotonic() - started > timeout:
                raise EnvironmentProblem(
                    f"{self.title} did not become ready within {timeout:.0f} s; see its log {self.log_path}",
                    "raise --timeout on a slow machine",
                )
            time.sleep(self.poll_s)

    def _check_start(self, launch: Launch, code: int | None, marks: dict[Path, int]) -> None:
        """EnvironmentProblem when the server said a port is taken, or exited (`code`) while starting."""
        taken = self._bind_problem(marks)
        if taken is not None:
            raise EnvironmentProblem(
                f"{self.title} could not bind its ports ({', '.join(map(str, launch.ports.values()))}) on {launch.host}: "
                f"address already in use (see {taken})",
                "stop what holds the port, or run again (pack picks new free ports where none was given)",
            )
        if code is not None:
            last = (self.log_tail().strip().splitlines() or ["(empty log)"])[-1][:300]
            raise EnvironmentProblem(f"{self.title} exited with code {code} while starting: {last}", f"see {self.log_path}")

    def _state(self, launch: Launch, ident: ProcessIdentity | None, marker: str, phase: str) -> dict[str, Any]:
        """What the state file records of a launch; while `starting`, also the pack that launches it (`launcher`)."""
        launcher = identity(os.getpid()) if phase == STARTING else None
        return {
            "pid": ident.pid if ident else None,
            "process": ident.record() if ident else None,
            "host": launch.host,
            "ports": launch.ports,
            "url": launch.url,
            "log": str(self.log_path),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "marker": marker,
            "phase": phase,
            **({"launcher": launcher.record()} if launcher else {}),
            **launch.record,
        }

    def _bind_problem(self, marks: dict[Path, int]) -> Path | None:
        """The log in which this launch's server said a port is taken (only what this launch wrote counts)."""
        for path, mark in marks.items():
            try:
                with open(path, "rb") as fh:
                    fh.seek(mark)
                    text = fh.read().decode("utf-8", "replace")
            except OSError:
                continue
            if self.bind_failed(text):
                return path
        return None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log ("" when it has none)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------ stop
    def stop(self) -> dict[str, Any]:
        """Stop the process pack started and its descendants; nothing else is signalled. A state whose pid is gone or
        now names another process is stale: it is removed, and the summary says so."""
        state = self.state()
        ident = self.owned(state)
        pids: list[int] = []
        if ident is not None:
            pids = [ident.pid, *(d.pid for d in descendants(ident.pid))]
            left = end_tree(ident, self.stop_grace)
            if left:
                raise EnvironmentProblem(
                    f"{self.title} processes {left} did not stop", f"kill them by pid (kill -9 {' '.join(map(str, left))})"
                )
        pids += [pid for pid in self._end_marked(state) if pid not in pids]
        self.forget()
        result = self._summary(state, pids)
        logger.info(result["summary"])
        return result

    def _summary(self, state: dict[str, Any] | None, pids: list[int]) -> dict[str, Any]:
        pid = (state or {}).get("pid")
        url = (state or {}).get("url")
        stale = state is not None and not pids and identity(pid if isinstance(pid, int) else None) is not None
        if pids:
            summary = f"stopped the {self.title} of store {self.store} (pid {pid}" + (f", {url})" if url else ")")
        elif stale:
            summary = (
                f"stale state for store {self.store}: its pid {pid} is no longer the {self.title} pack started (another "
                "process has it now); nothing was signalled; state cleared"
            )
        elif state is not None:
            summary = f"the {self.title} of store {self.store} (pid {pid}) was not running; state cleared"
        else:
            summary = f"no {self.title} launched by pack is running for store {self.store}"
        return {
            "target": self.kind,
            "stopped": bool(pids),
            "pid": pid,
            "pids": pids,
            "stale": stale,
            "url": url,
            "log": str(self.log_path),
            "summary": summary,
        }


def _launching(state: dict[str, Any]) -> bool:
    """The pack that recorded a `starting` state is still running (its launch is in progress, not interrupted)."""
    launcher = ProcessIdentity.from_record(state.get("launcher"))
    return launcher is not None and launcher.current()

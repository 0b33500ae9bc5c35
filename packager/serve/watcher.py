"""The watcher: a small process pack starts beside a server it launched, which heals that server's models with no
command run. Every few seconds it runs `pack status`'s health probe (each deployed model sent its build's sample);
when a model answers wrong or not at all it runs `pack status --repair` (the target's own reload), under the store's
server lock, so it never races a deploy or an undeploy. A repair that keeps failing backs off (per model: 5 s, 10 s,
20 s, ... up to 5 minutes); the watcher exits when the server it watches is gone.

It is a local server of its own kind (packager/serve/local.py: state file, process identity, detached launch, a stop
that signals only what pack started), in the server's folder: `<store>/.servers/<kind>/watcher/` holds `state.json`,
`watcher.log` (one line per repair) and `last.json` (what it saw last: `pack status` shows it). This module knows no
target: the process itself is `python -m packager.targets.watch`, which reaches the target through the registry and
hands `main` the check.

`PACK_WATCH=0` in the environment of the command that launches a server leaves that server without a watcher (recorded
in the watcher's state, so later deploys to the same server start none either).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PackError
from ..report.store import StoreLock
from .health import UNHEALTHY, each_health
from .local import Launch, LocalServer, read_state, servers_root
from .processes import ProcessIdentity, identity

logger = logging.getLogger(__name__)

ENV = "PACK_WATCH"  # "0" (or false, no, off) when a server is launched: no watcher for it
PERIOD_S = 3.0  # between two probes of every model
BACKOFF_S = (5.0, 300.0)  # the first wait after a failed repair, doubled at each failure up to the second
CHECK_TIMEOUT_S = 10.0  # a probe's time limit
REPAIR_TIMEOUT_S = 20.0  # how long a repair waits for the reloaded model to answer right
START_TIMEOUT_S = 30.0

Check = Callable[[bool], dict[str, Any]]  # the target's status (with repair when True): a `pack status` document


def enabled(environ: dict[str, str] | None = None) -> bool:
    """False when PACK_WATCH is 0 (or false, no, off) in the environment."""
    value = (os.environ if environ is None else environ).get(ENV, "1")
    return value.strip().lower() not in ("0", "false", "no", "off")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Watcher(LocalServer):
    """The watcher of the server of kind `server_kind` that pack launched for `store`."""

    kind = "watcher"
    title = "watcher"
    log_name = "watcher.log"
    stop_grace = 10.0

    def __init__(self, store: Path, server_kind: str):
        super().__init__(store)
        self.server_kind = server_kind
        self.root = (servers_root(self.store) / server_kind / "watcher").resolve()
        self.state_file = self.root / "state.json"
        self.log_path = self.launch_log = self.root / self.log_name
        self.last_file = self.root / "last.json"

    def healthy(self, state: dict[str, Any]) -> bool:
        """The process has begun: it wrote `last.json` with its own pid."""
        return bool((read_state(self.last_file) or {}).get("pid") == state["pid"])

    def forget(self) -> None:
        super().forget()
        self.last_file.unlink(missing_ok=True)

    def last(self) -> dict[str, Any]:
        return read_state(self.last_file) or {}

    def note(self, fresh: bool = False, **fields: Any) -> None:
        """Update (`fresh`: begin) `last.json`, atomically (from the watcher process)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.last_file.with_name(f".{self.last_file.name}.{os.getpid()}.tmp")
        doc = {**({} if fresh else self.last()), **fields, "pid": os.getpid()}
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.last_file)

    def watches(self, server: ProcessIdentity) -> bool:
        """The recorded watcher (running or off) is this server's (not one of an earlier server of the store)."""
        return (self.state() or {}).get("server") == server.record()


def start(server: LocalServer, target: str, module: str, launched: bool) -> dict[str, Any] | None:
    """After a deploy to `server` (launched by that deploy when `launched`): make sure its watcher runs, as
    `python -m MODULE` for the target named `target`. PACK_WATCH=0 at the server's launch leaves it without one (and
    says so in the watcher's state); a watcher that cannot start is a warning (the model is deployed)."""
    ident = server.alive()
    if ident is None:
        return None
    watcher = Watcher(server.store, server.kind)
    if not watcher.watches(ident) or launched:  # a server that the recorded watcher (or its absence) is not about
        if watcher.state() is not None:
            watcher.stop()  # a watcher of an earlier server of this store (it exits by itself, but not yet), or "off"
        if not enabled():
            watcher.save({"off": f"{ENV}=0 when the {server.title} was launched", "server": ident.record()})
            return None
    elif (watcher.state() or {}).get("off"):
        return None
    store = str(Path(server.store).resolve())  # the watcher runs in its own folder: never a relative path
    command = [sys.executable, "-m", module, "--target", target, "--store", store]
    command += ["--kind", server.kind, "--server-pid", str(ident.pid), "--server-start", str(ident.start_time)]

    def plan() -> Launch:
        env = _import_path()
        return Launch(command, "127.0.0.1", {}, "", "reinstall pack", env, record={"server": ident.record(), "target": target})

    try:
        return watcher.ensure(plan, START_TIMEOUT_S)[0]
    except PackError as exc:
        logger.warning(f"the watcher did not start ({exc.line()}); `pack status --repair` repairs by hand")
        return None


def _import_path() -> dict[str, str]:
    """PYTHONPATH for the watcher process to import this very pack (a checkout run from its folder, not only an
    installed one): nothing when pack is installed where a fresh interpreter finds it."""
    root = str(Path(__file__).resolve().parents[2])
    if root in {str(Path(p).resolve()) for p in sysconfig.get_paths().values()}:
        return {}
    return {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def stop_with(server: LocalServer) -> dict[str, Any]:
    """`pack stop`: the server's watcher first (so it never repairs a server that is stopping), then the server; the
    server's summary, with the watcher's under `watcher`."""
    watcher = Watcher(server.store, server.kind)
    ended = watcher.stop() if watcher.state() is not None else None
    result = server.stop()
    if ended is None:
        return result
    said = "; its watcher was stopped too" if ended["stopped"] else ""
    return {**result, "watcher": ended, "summary": result["summary"] + said}


def describe(server: LocalServer) -> dict[str, Any]:
    """What `pack status` shows of a server's watcher: running, pid, last check, last repair (or why there is none)."""
    watcher = Watcher(server.store, server.kind)
    state, last = watcher.state() or {}, watcher.last()
    running = watcher.running() is not None
    doc: dict[str, Any] = {"running": running, "pid": state.get("pid") if running else None, "log": str(watcher.log_path)}
    if state.get("off"):
        doc["off"] = state["off"]
    if running:
        doc.update({k: last.get(k) for k in ("last_check", "last_repair", "backing_off")})
    return doc


def status_line(doc: dict[str, Any]) -> str:
    """`pack status`'s line for the watcher."""
    if doc.get("off"):
        return f"watcher: off ({doc['off']})"
    if not doc["running"]:
        return f"watcher: not running (the next `pack deploy` starts it; {ENV}=0 at launch turns it off)"
    repair = doc.get("last_repair")
    said = f"{repair['at']}: {repair['line']}" if repair else "none"
    line = f"watcher: running (pid {doc['pid']}, last check {doc.get('last_check') or 'not yet'}, last repair {said})"
    backing = doc.get("backing_off")
    return line + (f"; backing off: {', '.join(backing)}" if backing else "")


@dataclass
class Backoff:
    """When each unhealthy model may be repaired again: at once the first time, then after 5 s, 10 s, 20 s, ... (up to
    5 minutes) while its repairs keep failing; a model found healthy starts afresh."""

    first: float = BACKOFF_S[0]
    cap: float = BACKOFF_S[1]
    failures: dict[str, int] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)

    def healthy(self, keys: set[str]) -> None:
        """Forget every model that is not in `keys` (the unhealthy ones now)."""
        for key in [k for k in self.failures if k not in keys]:
            self.failures.pop(key)
            self.due.pop(key, None)

    def ready(self, keys: set[str], now: float) -> set[str]:
        """The unhealthy models whose next repair is due."""
        return {k for k in keys if self.due.get(k, 0.0) <= now}

    def failed(self, key: str, now: float) -> float:
        """A repair of `key` failed: the seconds until the next one."""
        self.failures[key] = self.failures.get(key, 0) + 1
        wait = min(self.cap, self.first * 2.0 ** (self.failures[key] - 1))
        self.due[key] = now + wait
        return wait

    def waiting(self, now: float) -> list[str]:
        return [f"{k} (retry in {self.due[k] - now:.0f} s)" for k in sorted(self.due) if self.due[k] > now]


def _line(exc: Exception) -> str:
    return exc.line() if isinstance(exc, PackError) else str(exc)


def _unhealthy(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {key: health for key, health in each_health(doc).items() if health.get("health") == UNHEALTHY}


def _repair_line(key: str, health: dict[str, Any]) -> tuple[bool, str]:
    repair = health.get("repair")
    if health.get("health") != UNHEALTHY and not repair:
        return True, f"{key} answered right again before any repair"
    if repair and repair.get("repaired"):
        return True, f"repaired {key} in {repair['seconds']} s (it was unhealthy: {repair['was']})"
    why = (repair or {}).get("reason") or health.get("reason") or "still failing"
    return False, f"did not repair {key}: {why}"


class Loop:
    """The watcher's rounds, with what it talks to passed in (the check, the lock, the clock): `round` once."""

    def __init__(
        self,
        check: Check,
        watcher: Watcher,
        lock: Callable[[], Any],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.check, self.watcher, self.lock, self.clock = check, watcher, lock, clock
        self.backoff = Backoff()
        self.errors = 0  # rounds in a row whose probe itself failed
        self.deferred = False  # the last repair waited for the lock (said once, not at every round)

    def round(self) -> float:
        """Probe every model; repair the unhealthy ones that are due. Returns the seconds to the next round."""
        try:
            bad = _unhealthy(self.check(False))
        except (PackError, OSError) as exc:  # the server does not answer its API: say so once, then less often
            self.errors += 1
            if self.errors == 1 or self.errors % 20 == 0:
                logger.warning(f"{_now()} probe failed: {_line(exc)}")
            self.watcher.note(last_check=_now(), last_error=str(exc))
            return min(BACKOFF_S[1], PERIOD_S * min(self.errors, 10))
        self.errors = 0
        self.backoff.healthy(set(bad))
        due = self.backoff.ready(set(bad), self.clock())
        if due:
            self._repair(due)
        self.watcher.note(last_check=_now(), backing_off=self.backoff.waiting(self.clock()))
        return PERIOD_S

    def _repair(self, due: set[str]) -> None:
        try:
            with self.lock():  # a deploy or an undeploy under way holds it: repair at a later round
                after = each_health(self.check(True))
        except (PackError, OSError) as exc:
            if not self.deferred:
                logger.info(f"{_now()} repair of {', '.join(sorted(due))} deferred: {_line(exc)}")
            self.deferred = True
            return
        self.deferred = False
        for key in sorted(due):
            healed, line = _repair_line(key, after[key]) if key in after else (True, f"{key} is no longer served")
            if not healed:
                line += f"; next try in {self.backoff.failed(key, self.clock()):.0f} s"
            logger.info(f"{_now()} {line}")
            self.watcher.note(last_repair={"at": _now(), "model": key, "repaired": healed, "line": line})


def run(check: Check, watcher: Watcher, server: ProcessIdentity, sleep: Callable[[float], None] = time.sleep) -> int:
    """Watch until the server is gone; 0 then."""
    loop = Loop(check, watcher, lambda: StoreLock(servers_root(watcher.store), wait=0))
    while server.current():
        try:
            wait = loop.round()
        except Exception:  # a bug in pack: logged with its traceback; the watcher goes on, slower
            logger.exception(f"{_now()} a round of the watcher failed")
            wait = BACKOFF_S[1] / 10
        end = time.monotonic() + wait
        while server.current() and time.monotonic() < end:
            sleep(min(0.5, max(0.0, end - time.monotonic())))
    logger.info(f"{_now()} the {watcher.server_kind} server (pid {server.pid}) is gone; the watcher exits")
    watcher.note(exited=_now())
    if (watcher.state() or {}).get("pid") == os.getpid():
        watcher.state_file.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None, check_for: Callable[[str, Path], Check]) -> int:
    """The watcher process: `--target NAME --store STORE --kind KIND --server-pid PID --server-start TICKS`."""
    parser = argparse.ArgumentParser(prog="pack-watcher")
    for option in ("--target", "--store", "--kind"):
        parser.add_argument(option, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--server-start", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    watcher = Watcher(Path(args.store), args.kind)
    watcher.note(fresh=True, started=_now())  # the launch waits for this
    server = identity(args.server_pid)
    if server is None or server.start_time != args.server_start:
        logger.info(f"{_now()} the server (pid {args.server_pid}) is gone before the watcher began")
        return 0
    logger.info(f"{_now()} watching the {args.kind} server (pid {server.pid}) of {watcher.store} every {PERIOD_S:.0f} s")
    return run(check_for(args.target, watcher.store), watcher, server)

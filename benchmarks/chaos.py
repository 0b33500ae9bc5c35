"""The chaos of benchmarks/soak.py (`--chaos`): kill the model's serving process once, found through /proc as a
descendant of the server the soak deployed (TorchServe's worker of the model, Triton's python-backend stub of it;
nothing else is signalled), run the target's status with repair every few seconds after, and say what the kill cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


class Chaos:
    """Kill the model's serving process once, after `at` requests were sent; then run `repair` every `every` seconds
    (0: never) until the run ends. `find` returns the pid to kill (a descendant of the server deployed here)."""

    def __init__(self, find: Callable[[], int | None], at: int, repair: Callable[[], dict[str, Any]] | None, every: float):
        self.find, self.at, self.repair, self.every = find, at, repair, every
        self.fired = False
        self.killed_at: float | None = None
        self.victim: int | None = None
        self.repairs: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def tick(self, issued: int) -> None:
        """Called with the lock held, each time a request is issued."""
        if not self.fired and issued >= self.at:
            self.fired = True
            self.thread = threading.Thread(target=self._strike, daemon=True)
            self.thread.start()

    def finish(self) -> None:
        """Stop repairing and wait for a repair in flight: the server is stopped next, and a reload racing the stop
        would start a stub after the server's last look at its children."""
        self.done.set()
        if self.thread is not None:
            self.thread.join(timeout=120)

    def _strike(self) -> None:
        import signal

        self.victim = self.find()
        if self.victim is None:
            log("chaos: no serving process found to kill")
            return
        os.kill(self.victim, signal.SIGKILL)
        self.killed_at = time.monotonic()
        log(f"chaos: killed pid {self.victim}")
        while self.repair is not None and self.every > 0 and not self.done.wait(self.every):
            t0 = time.monotonic()
            health = self.repair()
            self.repairs.append({"at_s": round(t0 - self.killed_at, 2), **health})


def chaos_figures(chaos: Chaos, failures: list[float], answered_at: list[float]) -> dict[str, Any]:
    """What the kill cost: the victim, recovery (kill to the first right answer after the last failed attempt), repairs."""
    out: dict[str, Any] = {"chaos": {"killed_pid": chaos.victim, "repairs": chaos.repairs}}
    if chaos.killed_at is None:
        out["chaos"]["recovery_s"] = None
        return out
    last_failure = max([f for f in failures if f >= chaos.killed_at], default=chaos.killed_at)
    first_ok = min([a for a in answered_at if a >= last_failure], default=None)
    out["chaos"]["recovery_s"] = round(first_ok - chaos.killed_at, 2) if first_ok is not None else None
    after = sorted(round(f - chaos.killed_at, 2) for f in failures if f >= chaos.killed_at)
    out["chaos"]["failed_attempts_after_kill"] = len(after)
    out["chaos"]["failures_s_after_kill"] = {"first": after[0], "last": after[-1]} if after else None
    return out


def descendants(root: int) -> list[int]:
    """Live descendants of process `root`, from /proc parent links."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found += kids
        todo += kids
    return found


def serving_process(server_pid: int, target: str, model: str) -> Callable[[], int | None]:
    """A finder of the process to kill: TorchServe's worker of the model, or Triton's python-backend stub of it."""
    markers = [b"model_service_worker"] if target == "torchserve" else [b"triton_python_backend_stub", f"/{model}/".encode()]

    def find() -> int | None:
        for pid in descendants(server_pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if all(m in cmdline for m in markers):
                return pid
        return None

    return find


def make_chaos(args: argparse.Namespace, module: Any, opts: Any, target: str, model: str) -> Chaos | None:
    if not args.chaos:
        return None
    server_pid = module.status(opts).get("pid")
    if not server_pid:
        raise SystemExit(f"soak: --chaos needs the pid of the {target} server deployed here")
    repair_opts = module.Options(store=opts.store, timeout=30.0, repair=True)

    def repair() -> dict[str, Any]:
        doc = module.status(repair_opts)
        health = doc.get("health") or {m["model"]: m.get("health") for m in doc.get("models", [])}
        return dict((health.get(model) or {}).items())

    at = max(1, int(args.requests * args.chaos_at))
    return Chaos(
        serving_process(int(server_pid), target, model), at, repair if args.repair_every > 0 else None, args.repair_every
    )

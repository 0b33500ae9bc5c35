"""Draining a version on TorchServe before it is unregistered (`pack undeploy`, and the switch of a rollout).

TorchServe 0.12 drops the requests queued for a version, or held by its worker, when that version is unregistered
(pytorch/serve#1101), and its management API cannot stop intake. pack's handler runs inside every worker, so pack stops
intake there: it writes a drain file into the drain folder of the server it launched (`PACK_DRAIN_DIR`, set in the
server's environment, which every worker inherits), and the handler answers every request of that version 503 with
`Retry-After` from then on (handlers/pack_torchserve.py). pack then waits (up to --timeout) until TorchServe's queue
for the version is empty, and only then unregisters. The drain file goes once the version is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ...serve.http import ApiError
from .client import ManagementClient

logger = logging.getLogger(__name__)

DRAIN_ENV = "PACK_DRAIN_DIR"  # the handler's name for it too (handlers/pack_torchserve.py)
QUIET_S = 0.2  # the queue is seen empty twice this far apart before the version goes


def drain_file(folder: Path, name: str, version: str) -> Path:
    """The file whose presence makes the handler refuse `name` v`version` (the handler builds the same name)."""
    return folder / f"{name}.v{version}"


@contextlib.contextmanager
def draining(folder: Path | None, name: str, version: str) -> Iterator[None]:
    """While inside: the handler of `name` v`version` answers 503 with Retry-After. No folder (a server pack did not
    launch): nothing to write, and the wait for the queue still runs."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = drain_file(folder, name, version)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("draining\n")
    os.replace(tmp, path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def pending(mgmt: ManagementClient, name: str, version: str) -> int | None:
    """The requests TorchServe holds for the version (its job queue), None when it does not say."""
    try:
        found = mgmt.describe(name, version)
    except ApiError as exc:
        if exc.status == 404:
            return 0
        raise
    status = (found[0] if found else {}).get("jobQueueStatus") or {}
    count = status.get("pendingRequests")
    return int(count) if isinstance(count, int) else None


def wait_empty(mgmt: ManagementClient, name: str, version: str, timeout: float) -> bool:
    """Wait until the version's queue is seen empty twice QUIET_S apart; False when --timeout ran out first."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while True:
        count = pending(mgmt, name, version)
        quiet = quiet + 1 if not count else 0
        if quiet >= 2:
            return True
        if time.monotonic() > deadline:
            logger.warning(f"{name} v{version} still had {count} request(s) queued after {timeout:.0f} s")
            return False
        time.sleep(QUIET_S if quiet else 0.05)


def drain_then(mgmt: ManagementClient, folder: Path | None, name: str, version: str, timeout: float) -> None:
    """Stop intake of `name` v`version`, wait until nothing is queued, then unregister it."""
    with draining(folder, name, version):
        wait_empty(mgmt, name, version, timeout)
        mgmt.unregister(name, version, timeout=timeout)

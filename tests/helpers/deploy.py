"""`pack deploy` in a child process, stopped part-way by the reliability tests of both servers."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.cli import spawn_pack, wait_for_stderr


@dataclass
class Deploying:
    """A running `pack deploy` and the stderr read from it so far."""

    proc: subprocess.Popen[str]
    seen: str

    def finish(self) -> tuple[int, str, str]:
        """Wait for it to exit: (exit code, stdout, all of stderr)."""
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, self.seen + err


def deploy_until(store: Path, target: str, marker: str, *args: str) -> Deploying:
    """Start `pack deploy ... --target TARGET` and return once its stderr shows `marker` (bounded: 120 s). The child
    takes SIGINT as a terminal's Ctrl-C would deliver it, also when the suite runs from a background shell."""
    proc = spawn_pack("deploy", *args, "--target", target, "--store", str(store))
    return Deploying(proc, wait_for_stderr(proc, marker))

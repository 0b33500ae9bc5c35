"""Helpers shared by the reliability tests of both servers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT


def deploy_until(store: Path, target: str, marker: str, *args: str) -> subprocess.Popen:
    """Start `pack deploy ... --target TARGET` and return once its stderr shows `marker` (bounded: 120 s)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "packager.cli", "deploy", *args, "--target", target, "--store", str(store)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if marker in line or not line:
            break
    assert marker in seen, seen
    proc.seen = seen  # type: ignore[attr-defined]
    return proc

"""Shared fixtures: one session store where each built-in model is built at most once, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def session_store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("store")


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def built(session_store):
    """built(name) -> the version folder of a build of `name` in the session store (built once per session)."""

    def get(name: str) -> Path:
        if name not in _BUILT:
            from packager.build import build
            from packager.plan import resolve
            from packager.targets import packagers

            plan = resolve(name, None, {"device": "cpu"})
            _, folder = build(plan, session_store, force=False, log=lambda m: None, iterations=2, packagers=packagers())
            _BUILT[name] = folder
        return _BUILT[name]

    return get


def run_pack(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `pack` command line in a subprocess (as users and CI do)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "packager.cli", *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pack_json(*args: str, **kw) -> dict:
    proc = run_pack(*args, "--json", **kw)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture
def pack():
    return run_pack

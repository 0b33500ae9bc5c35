"""Helpers of the Triton tests: the tritonserver that scripts/setup-triton.sh installs, isolated stores, configs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import ROOT


def triton_home() -> Path:
    return Path(os.environ.get("PACK_TRITON_HOME") or ROOT / ".triton")


def ensure_tritonserver() -> Path:
    """Install the CPU tritonserver (idempotent, fast when present); the tests need a real server, never a mock."""
    binary = triton_home() / "bin" / "tritonserver"
    if not binary.is_file():
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup-triton.sh")], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, "scripts/setup-triton.sh failed:\n" + proc.stderr[-3000:]
    assert binary.is_file(), f"{binary} missing after setup"
    return binary


def link_build(build: Path, store: Path) -> Path:
    """Put a build folder into another store (hard links: cheap), so tests do not share server state."""
    dest = store / build.parent.name / build.name
    if not dest.exists():
        shutil.copytree(build, dest, copy_function=_link)
    return dest


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def read_config(path: Path) -> Any:
    from packager.targets.triton import config as cfg

    return cfg.read(path)


def write_config(config: Any, path: Path) -> None:
    from packager.targets.triton import config as cfg

    path.unlink()  # hard-linked trees: never write through a link
    cfg.write(config, path)

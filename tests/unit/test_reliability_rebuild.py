"""Issue 7, build side, in-process: a wrong input dtype is refused before anything is written, and a failed --force
rebuild leaves the previous good version byte-identical. (Data-dependent control flow and --unsafe-load, which need
whole builds: tests/integration/test_reliability_build.py; docs/reliability.md lists every case.)"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.helpers.cli import invoke


def test_wrong_input_dtype(tmp_path: Path) -> None:
    line = invoke("build", "tiny", "--input", "input:1x3x32x32:int64", "--store", str(tmp_path / "s")).error(2)
    assert "the model failed on example inputs at batch 1 (input [1, 3, 32, 32] int64)" in line
    assert not (tmp_path / "s" / "tiny" / "1").exists()


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_failed_forced_rebuild_keeps_the_previous_good_version(built: Callable[[str], Path], tmp_path: Path) -> None:
    """--force with weights that do not load, and --force with inputs the model rejects: v1 stays byte-identical."""
    store = tmp_path / "s"
    shutil.copytree(built("tiny"), store / "tiny" / "1")
    before = _digests(store / "tiny" / "1")
    (tmp_path / "bad.pt").write_bytes(bytes(range(256)) * 8)  # fixed garbage: tests must not depend on luck
    invoke("build", "tiny", "--force", "--weights", str(tmp_path / "bad.pt"), "--store", str(store)).error(2)
    invoke("build", "tiny", "--force", "--input", "input:1x4x32x32", "--store", str(store)).error(2)
    assert _digests(store / "tiny" / "1") == before
    assert sorted(p.name for p in (store / "tiny").iterdir() if p.name != ".lock") == ["1"]

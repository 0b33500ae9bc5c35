"""One store lock for builds, `pack archive` and Triton repository installs: refused at once, in this process and in
another, and released for the next writer."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from packager.errors import UsageError
from packager.report.store import AtomicVersion, StoreLock
from tests.helpers import ROOT
from tests.helpers.cli import run_pack


def test_store_lock_is_one_lock_for_builds_archives_and_repositories(tmp_path):
    model_dir = tmp_path / "store" / "tiny"
    with StoreLock(model_dir) as lock:
        assert lock.path == model_dir / ".lock" and lock.path.exists()
        with pytest.raises(UsageError) as info:
            with AtomicVersion(tmp_path / "store", "tiny", "1"):
                pass
        assert (
            info.value.exit_code == 2
            and f"another pack process is writing {model_dir} (lock {model_dir / '.lock'})" in info.value.line()
        )
        # another process is refused as well, at once
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); from packager.report.store import StoreLock\n"
            f"try:\n    StoreLock({str(model_dir)!r}).__enter__()\nexcept Exception as e:\n    print(type(e).__name__)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
        assert out == "UsageError"
    with AtomicVersion(tmp_path / "store", "tiny", "1") as tmp:  # released: the next writer gets it
        assert tmp.is_dir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="cannot write"):
        StoreLock(tmp_path / "afile" / "sub").__enter__()


def test_archive_and_repo_wait_for_the_builds_lock(built, tmp_path):
    """`pack archive` takes the model's lock that `pack build` holds; `pack repo` the repository's: both refuse at once."""
    store = tmp_path / "store"
    shutil.copytree(built("tiny"), store / "tiny" / "1")
    with StoreLock(store / "tiny"):
        proc = run_pack("archive", "tiny", "--store", str(store), "--force")
        assert proc.returncode == 2 and "another pack process is writing" in proc.stderr, proc.stderr
    with StoreLock(store / "triton"):
        proc = run_pack("repo", "tiny", "--store", str(store))
        assert proc.returncode == 2 and "another pack process is writing" in proc.stderr, proc.stderr
        assert not (store / "triton" / "tiny").exists()
    assert run_pack("archive", "tiny", "--store", str(store), "--force").returncode == 0
    proc = run_pack("repo", "tiny", "--store", str(store))
    assert proc.returncode == 0, proc.stderr

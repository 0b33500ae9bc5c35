"""Temporary folders a killed pack left (issue 20, item 1; packager/report/store.py): a build's `<model>/.tmp-V-PID`,
a deploy's `.staging-PID`, a tune's `<store>/.scratch/tune-PID` are removed by the next command that owns them once
their pid is gone; those of a live process are left alone."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from packager.report.store import AtomicVersion, drop_scratch, leftover_scratch, remove_leftovers, scratch_store


def _gone_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: the pid names no process now
    return child.pid


def test_only_folders_of_gone_processes_are_removed(tmp_path: Path) -> None:
    dead, live = tmp_path / f".staging-{_gone_pid()}", tmp_path / f".staging-{os.getpid()}"
    other = tmp_path / f"keep-{_gone_pid()}"
    for folder in (dead, live, other):
        folder.mkdir()
    assert remove_leftovers(tmp_path, ".staging-") == [dead]
    assert not dead.exists() and live.is_dir() and other.is_dir()


def test_the_next_build_removes_what_a_killed_build_left(tmp_path: Path) -> None:
    left = tmp_path / "tiny" / f".tmp-1-{_gone_pid()}"
    old = tmp_path / "tiny" / f".old-1-{_gone_pid()}"
    for folder in (left, old):
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"half")
    with AtomicVersion(tmp_path, "tiny", "1") as tmp:
        assert not left.exists() and not old.exists() and tmp.is_dir()


def test_a_scratch_store_is_found_once_its_pack_is_gone(tmp_path: Path) -> None:
    mine = scratch_store(tmp_path, "tune")
    assert mine == tmp_path / ".scratch" / f"tune-{os.getpid()}" and oct(mine.stat().st_mode & 0o777) == "0o700"
    killed = tmp_path / ".scratch" / f"tune-{_gone_pid()}"
    killed.mkdir()
    assert leftover_scratch(tmp_path) == [killed]


def test_a_scratch_folder_goes_only_when_none_of_its_servers_is_recorded(tmp_path: Path) -> None:
    """A killed bench leaves servers of several targets in one folder: `pack stop --target triton` must not delete the
    state of the TorchServe beside it (it would run on, invisible); the last stop removes the folder and `.scratch/`."""
    left = tmp_path / ".scratch" / f"bench-{_gone_pid()}"
    triton, torchserve = (left / "store" / ".servers" / kind for kind in ("triton", "torchserve"))
    for server in (triton, torchserve):
        server.mkdir(parents=True)
        (server / "state.json").write_text("{}")
    (triton / "state.json").unlink()  # stopped
    assert not drop_scratch(left) and (torchserve / "state.json").is_file()
    (torchserve / "state.json").unlink()
    assert drop_scratch(left) and not (tmp_path / ".scratch").exists() and tmp_path.is_dir()


def test_a_killed_pack_not_yet_reaped_is_gone(tmp_path: Path) -> None:
    """`kill -9` of a pack whose parent has not reaped it yet leaves a zombie: its scratch folder is a leftover at once
    (`pack status` right after the kill lists its servers)."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        folder = tmp_path / ".scratch" / f"bench-{child.pid}"
        folder.mkdir(parents=True)
        assert leftover_scratch(tmp_path) == []
        child.kill()
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[-1][:1] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert leftover_scratch(tmp_path) == [folder]  # a zombie now: not reaped until wait()
    finally:
        child.kill()
        child.wait()


def test_a_tune_whose_server_did_not_stop_keeps_its_scratch_folder(tmp_path: Path, monkeypatch, caplog) -> None:
    """The tune's search fails with its server up and the stop fails too: the scratch folder (the server's state file)
    is kept for `pack status` and `pack stop`, and pack says so, instead of deleting the only record of the server."""
    import types

    import packager.report.integrity as integrity
    import packager.targets as targets
    import packager.tune as tune

    def failing_stop(options: object) -> None:
        raise RuntimeError("the server did not answer the stop")

    server = types.SimpleNamespace(
        name="demo",
        Options=lambda store: types.SimpleNamespace(store=store),
        stop=failing_stop,
        bench=types.SimpleNamespace(tensors=False),
        tuning_space=lambda report: ({"workers": [1, 2]}, {"workers": 1}),
    )
    monkeypatch.setattr(
        integrity, "intact_build", lambda store, model, version: (tmp_path, types.SimpleNamespace(name="tiny", version="1"))
    )
    monkeypatch.setattr(targets, "get_target", lambda name: server)
    monkeypatch.setattr(targets, "require", lambda capability, target: target)
    monkeypatch.setattr(tune, "_request", lambda folder, report, tensors: None)

    def search(space, start, measure, budget, p99):  # type: ignore[no-untyped-def]
        state = next((tmp_path / "store" / ".scratch").glob("tune-*")) / "store" / ".servers" / "demo" / "state.json"
        state.parent.mkdir(parents=True)
        state.write_text("{}")  # the server the first point launched
        raise RuntimeError("the search failed")

    monkeypatch.setattr(tune, "search", search)
    try:
        tune.run_tune(tune.TuneOptions(model="tiny", target="demo", store=tmp_path / "store"))
    except RuntimeError as exc:
        assert "search failed" in str(exc)
    kept = list((tmp_path / "store" / ".scratch").glob("tune-*/store/.servers/demo/state.json"))
    assert kept and "still recorded" in caplog.text

"""Fixtures of both tiers: the session store, with each built-in model built at most once per run (shared by the
pytest-xdist workers), private copies of the tiny build, the tier markers, and the session-wide stop of every process
(servers included) the suite started. The unit tier replaces `built` with a build made without an exporter
(tests/unit/conftest.py).

Plain helpers live in tests/helpers/ and are imported normally; nothing imports this file."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.processes import SESSION_ENV, session_processes, wait_until_empty

TIERS = ("unit", "integration")
HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: `pytest -m unit` sees the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries the marker of its tier's folder (tests/unit -> unit, tests/integration -> integration)."""
    for item in items:
        try:
            tier = item.path.resolve().relative_to(HERE).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(tier)


@pytest.fixture(scope="session", autouse=True)
def stop_everything_the_suite_started(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[None]:
    """Tag every process the suite starts (servers included: they inherit the environment) and, at the end of the
    session, however it ended, stop what is still running: first `pack stop` for every store under the session's
    temporary folder that has a server state file, then SIGTERM and SIGKILL for any tagged process left."""
    token = uuid.uuid4().hex
    previous = os.environ.get(SESSION_ENV)
    os.environ[SESSION_ENV] = token
    try:
        yield
    finally:
        notes = _stop_servers_by_state(tmp_path_factory.getbasetemp())
        notes += _end_processes(token)
        if previous is None:
            os.environ.pop(SESSION_ENV, None)
        else:
            os.environ[SESSION_ENV] = previous
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
        if notes and reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():  # on the terminal now, not in a captured teardown section
                reporter.write("\n")
                for note in notes:
                    reporter.write_line(f"suite cleanup: {note}", yellow=True)


def _stop_servers_by_state(base: Path) -> list[str]:
    servers = ("torchserve", "triton", "fastapi")
    states = [p for p in base.rglob("state.json") if p.parent.parent.name == ".servers" and p.parent.name in servers]
    if not states:
        return []
    from packager.targets import get_target

    notes = []
    for state in states:
        target, store = state.parent.name, state.parents[2]
        try:
            chosen = get_target(target)
            result = chosen.stop(chosen.Options(store=store))
        except Exception as exc:  # noqa: BLE001 - cleanup goes on with the next store
            notes.append(f"pack stop --target {target} --store {store} failed: {type(exc).__name__}: {exc}")
            continue
        if result.get("stopped"):
            notes.append(f"stopped the {target} server a test left running in {store}")
    return notes


def _end_processes(token: str) -> list[str]:
    notes = []
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        pids = session_processes(token)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        notes.append(f"sent {signal.Signals(sig).name} to {len(pids)} process(es) the suite left running: {pids}")
        wait_until_empty(lambda: session_processes(token), seconds=wait)
    return notes


@pytest.fixture(scope="session")
def session_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every process of this run sees: under pytest-xdist, the parent of the workers' own temporary folders;
    else the session's temporary folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _build_once(name: str, shared: Path) -> Path:
    """The version folder of `name` in the run's shared store, built in-process by whichever process asks first
    (2 timed iterations); the others wait on its lock and take what it built."""
    import fcntl

    from packager.build.pipeline import build
    from packager.build.plan import resolve
    from packager.targets import packagers

    store = shared / "built-store"
    store.mkdir(exist_ok=True)
    with open(shared / f"built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder = store / name / "1"
        if not folder.is_dir():  # committed atomically: a folder is a whole build
            _, folder = build(resolve(name, None, {"device": "cpu"}), store, force=False, iterations=2, packagers=packagers())
        return folder


@pytest.fixture(scope="session")
def built(session_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """built(name) -> the version folder of a build of `name` in the session store. Each model is built once per run,
    in-process, and shared by the pytest-xdist workers: each worker's session store holds its own copy, which servers
    this session launches may serve. Tests must not change it: copy it first (`tiny_store`)."""
    shared = _shared_root(tmp_path_factory)
    folders: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in folders:
            source = _build_once(name, shared)
            folders[name] = session_store / name / source.name
            if source != folders[name]:
                shutil.copytree(source, folders[name])
        return folders[name]

    return get


@pytest.fixture
def tiny_store(built: Callable[[str], Path], tmp_path: Path) -> Path:
    """A private store holding a copy of the session's tiny build (`<store>/tiny/1`), free to change."""
    store = tmp_path / "store"
    shutil.copytree(built("tiny"), store / "tiny" / "1")
    return store


@pytest.fixture
def tiny_build(tiny_store: Path) -> Path:
    """The version folder of `tiny_store`'s copy of the tiny build."""
    return tiny_store / "tiny" / "1"


@pytest.fixture
def ts_store(built: Callable[[str], Path], tmp_path: Path) -> Iterator[Path]:
    """A private store with a copy of the tiny build for a TorchServe test; the TorchServe it launches is stopped after."""
    from tests.helpers.cli import run_pack
    from tests.helpers.torchserve import copy_build

    if not shutil.which("java"):
        pytest.skip("java is not installed (run scripts/setup-torchserve.sh)")
    store = copy_build(built("tiny"), tmp_path / "store")
    yield store
    run_pack("stop", "--target", "torchserve", "--store", str(store))

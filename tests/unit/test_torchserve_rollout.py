"""Rolling out a version registered on TorchServe whose build changed since (packager/targets/torchserve/rollout.py):
what counts as changed, the one case refused before anything changes, and the undo of a failed switch (the old
archive registered again). The rollout on a real TorchServe is tested in
tests/integration/test_reliability_torchserve.py."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast

import pytest

from packager.errors import DeployFailed
from packager.report.build_report import BuildReport
from packager.report.formats import served
from packager.serve.http import ApiError
from packager.targets.torchserve.config import settings_from
from packager.targets.torchserve.rollout import Rollout, changed, refuse_default_with_others
from tests.helpers.cli import invoke


@pytest.fixture
def registered(tiny_store: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The build folder and a copy of its archive as a model store holds it once registered."""
    invoke("archive", "tiny", "--store", str(tiny_store), "--force")
    build = tiny_store / "tiny" / "1"
    (tmp_path / "model-store").mkdir()
    archive = tmp_path / "model-store" / "tiny.v1.mar"
    shutil.copyfile(build / "torchserve" / "tiny.mar", archive)
    return build, archive


def is_changed(build: Path, archive: Path, report: BuildReport) -> bool:
    s = served(report)
    return changed(archive, build, report, s.format, s.file)


def test_unchanged_build_is_reused(registered):
    build, archive = registered
    assert not is_changed(build, archive, BuildReport.load(build))


def test_rebuilt_model_file_is_changed(registered):
    build, archive = registered
    report = BuildReport.load(build)
    report.sha256[served(report).file] = "0" * 64  # what `pack build --force` records for new weights
    assert is_changed(build, archive, report)


def test_archive_without_digests_is_left_to_the_smoke_test(registered, tmp_path):
    build, _ = registered
    report = BuildReport.load(build)
    report.sha256[served(report).file] = "0" * 64
    assert not is_changed(build, tmp_path / "missing.mar", report)  # nothing to compare with: no rollout on a guess
    (tmp_path / "broken.mar").write_bytes(b"not a zip")
    assert not is_changed(build, tmp_path / "broken.mar", report)


def test_default_beside_other_versions_is_refused_before_anything_changes():
    with pytest.raises(DeployFailed) as caught:
        refuse_default_with_others("tiny", "1", "1", ["1", "2"])
    assert "keeps serving" in caught.value.message and "cannot replace it while it is the default" in caught.value.message
    assert caught.value.hint is not None and "pack deploy tiny --version 2 --target torchserve" in caught.value.hint
    refuse_default_with_others("tiny", "1", "1", ["1"])  # the only version: replaced
    refuse_default_with_others("tiny", "1", "2", ["1", "2"])  # not the default: replaced


class FakeManagement:
    """TorchServe's management API as the rollout sees it; `fail` names the calls that fail (with their arguments)."""

    def __init__(self, fail: set[tuple[str, str]]):
        self.registered: dict[str, set[str]] = {"tiny": {"1"}, "tiny-pack-next": {"1"}}
        self.default: dict[str, str] = {"tiny": "1"}
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def _call(self, what: str, name: str) -> None:
        self.calls.append((what, name))
        if (what, name) in self.fail:
            raise ApiError("TorchServe", 500, f"{what} {name} failed", "http://127.0.0.1:1")

    def versions(self, name: str) -> list[dict[str, Any]]:
        return [{"modelVersion": v} for v in sorted(self.registered.get(name, ()))]

    def describe(self, name: str, version: str | None = None) -> list[dict[str, Any]]:
        return [{"modelVersion": version, "jobQueueStatus": {"pendingRequests": 0}}]

    def register(self, url: str, name: str, *args: Any) -> str:
        self._call("register", name)
        self.registered.setdefault(name, set()).add("1")
        return "ok"

    def scale(self, name: str, version: str, workers: int, timeout: float) -> str:
        self._call("scale", name)
        return "ok"

    def set_default(self, name: str, version: str) -> str:
        self._call("set_default", name)
        self.default[name] = version
        return "ok"

    def unregister(self, name: str, version: str, timeout: float = 60.0) -> str:
        self._call("unregister", name)
        if version not in self.registered.get(name, set()):
            raise ApiError("TorchServe", 404, "not found", "http://127.0.0.1:1")
        self.registered[name].discard(version)
        return "ok"


def rollout(tmp_path: Path, mgmt: FakeManagement, tiny_report: BuildReport) -> Rollout:
    store = tmp_path / "model-store"
    store.mkdir()
    (store / "tiny.v1.mar").write_bytes(b"old archive")
    (store / "tiny.v1.next.mar").write_bytes(b"new archive")
    settings = settings_from(tiny_report, None)
    return Rollout(cast(Any, mgmt), store, "tiny", "1", settings, 5.0, tmp_path / "drain", True)


@pytest.fixture
def tiny_report(tiny_store: Path) -> BuildReport:
    return BuildReport.load(tiny_store / "tiny" / "1")


def test_switch_replaces_the_old_and_leaves_only_the_new_archive(tmp_path, tiny_report):
    mgmt = FakeManagement(set())
    r = rollout(tmp_path, mgmt, tiny_report)
    r.switch()
    assert (tmp_path / "model-store" / "tiny.v1.mar").read_bytes() == b"new archive"
    assert sorted(p.name for p in (tmp_path / "model-store").iterdir()) == ["tiny.v1.mar"]  # no temporary archive, no kept copy
    assert mgmt.registered == {"tiny": {"1"}, "tiny-pack-next": set()} and mgmt.default == {"tiny": "1"}
    assert mgmt.calls.index(("unregister", "tiny")) < mgmt.calls.index(("register", "tiny"))


def test_failed_switch_registers_the_old_archive_again(tmp_path, tiny_report):
    mgmt = FakeManagement({("scale", "tiny")})  # the new archive registers under the real name but its workers fail
    r = rollout(tmp_path, mgmt, tiny_report)
    with pytest.raises(ApiError):
        r.switch()
    mgmt.fail = set()  # the old archive's workers start
    assert r.undo() == []
    assert (tmp_path / "model-store" / "tiny.v1.mar").read_bytes() == b"old archive"
    assert sorted(p.name for p in (tmp_path / "model-store").iterdir()) == ["tiny.v1.mar"]
    assert mgmt.registered["tiny"] == {"1"} and mgmt.registered["tiny-pack-next"] == set()
    assert mgmt.calls.count(("register", "tiny")) == 2 and mgmt.default == {"tiny": "1"}


def test_failure_before_the_switch_leaves_the_old_untouched(tmp_path, tiny_report):
    mgmt = FakeManagement(set())
    r = rollout(tmp_path, mgmt, tiny_report)
    assert r.undo() == []  # e.g. the smoke test of the temporary name failed
    assert ("unregister", "tiny") not in mgmt.calls and ("register", "tiny") not in mgmt.calls
    assert mgmt.registered["tiny"] == {"1"} and mgmt.registered["tiny-pack-next"] == set()
    assert (tmp_path / "model-store" / "tiny.v1.mar").read_bytes() == b"old archive"


def test_old_archive_is_kept_when_it_cannot_be_registered_again(tmp_path, tiny_report):
    mgmt = FakeManagement({("scale", "tiny")})
    r = rollout(tmp_path, mgmt, tiny_report)
    with pytest.raises(ApiError):
        r.switch()
    problems = r.undo()  # registering the old one fails too
    assert len(problems) == 1 and "could not register the previous tiny v1 again" in problems[0]
    assert (tmp_path / "model-store" / ".tiny.v1.mar.previous").read_bytes() == b"old archive"

"""A version registered on TorchServe whose build changed since: the deploy refuses it (exit 4) with the command that
replaces it, and lets an unchanged one through (packager/targets/torchserve/rollout.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from packager.errors import DeployFailed
from packager.report.build_report import BuildReport
from packager.report.formats import served
from packager.targets.torchserve.rollout import refuse_if_changed
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


def check(build: Path, archive: Path, report: BuildReport) -> None:
    s = served(report)
    refuse_if_changed(archive, build, report, s.format, s.file)


def test_unchanged_build_is_reused(registered):
    build, archive = registered
    check(build, archive, BuildReport.load(build))  # no error: the registered version serves these files


def test_rebuilt_model_file_is_refused_with_the_replacing_command(registered):
    build, archive = registered
    report = BuildReport.load(build)
    report.sha256[served(report).file] = "0" * 64  # what `pack build --force` records for new weights
    with pytest.raises(DeployFailed) as caught:
        check(build, archive, report)
    assert "changed since it was registered" in caught.value.message
    assert "keeps serving" in caught.value.message
    assert caught.value.hint is not None
    assert "pack undeploy tiny --version 1 --target torchserve && pack deploy tiny --version 1" in caught.value.hint


def test_archive_without_digests_is_left_to_the_smoke_test(registered, tmp_path):
    build, _ = registered
    report = BuildReport.load(build)
    report.sha256[served(report).file] = "0" * 64
    check(build, tmp_path / "missing.mar", report)  # nothing to compare with: no refusal on a guess
    (tmp_path / "broken.mar").write_bytes(b"not a zip")
    check(build, tmp_path / "broken.mar", report)

"""Serve only what was verified: deploy (kserve storage here; both servers in
tests/integration/test_reliability_trust.py), archive and repo check every digest of a build against report.json
before they use it; a bad or unreadable report.json, a deleted sample and a link inside a build are one line, never an
internal error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from packager.report.build_report import BuildReport
from tests.helpers.cli import invoke

KSERVE = ("deploy", "--target", "kserve")
USERS = [KSERVE, ("archive", "--force"), ("repo", "--force")]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _run(command: tuple[str, ...], store: Path, *extra: str) -> tuple[int, str]:
    result = invoke(command[0], "tiny", *command[1:], "--store", str(store), *extra)
    return result.returncode, result.stderr


@pytest.mark.parametrize("command", USERS, ids=lambda c: c[0])
def test_a_changed_file_is_refused_naming_it(command: tuple[str, ...], tiny_store: Path) -> None:
    build = tiny_store / "tiny" / "1"
    before = (build / "report.json").read_bytes()
    mar = sorted(build.rglob("*.mar"))
    mar_bytes = mar[0].read_bytes() if mar else b""
    _flip(build / "model.onnx")
    result = invoke(command[0], "tiny", *command[1:], "--store", str(tiny_store))
    line = result.error(3)
    assert "model.onnx: sha256 differs from the report" in line, line
    assert (build / "report.json").read_bytes() == before  # no new digest recorded
    if mar:
        assert mar[0].read_bytes() == mar_bytes  # the archive was not re-packed
    assert not (tiny_store / "tiny" / "1" / "kserve").exists() or command != KSERVE


@pytest.mark.parametrize("command", USERS, ids=lambda c: c[0])
def test_a_deleted_sample_says_sample_missing(command: tuple[str, ...], tiny_store: Path) -> None:
    sample = next((tiny_store / "tiny" / "1" / "samples").glob("input.*.npy"))
    sample.unlink()
    line = invoke(command[0], "tiny", *command[1:], "--store", str(tiny_store)).error(3)
    assert f"{sample.name}: sample missing" in line and "cannot write" not in line, line


def test_verify_says_sample_missing(tiny_build: Path) -> None:
    (tiny_build / "samples" / "output.logits.npy").unlink()
    assert "output.logits.npy: sample missing" in invoke("verify", str(tiny_build)).error(3)


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_link_inside_a_build_is_refused_by_verify_and_deploy(kind: str, tiny_store: Path, tmp_path: Path) -> None:
    build = tiny_store / "tiny" / "1"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "extra.bin").write_bytes(b"x")
    if kind == "folder":
        os.symlink(outside, build / "linked")
    else:
        moved = outside / "labels.txt"
        (build / "labels.txt").rename(moved)
        os.symlink(moved, build / "labels.txt")
    assert "is a symbolic link" in invoke("verify", str(build)).error(3)
    assert "is a symbolic link" in invoke(*KSERVE[:1], "tiny", *KSERVE[1:], "--store", str(tiny_store)).error(3)


BAD_REPORTS = {
    "not json": b"{not json",
    "a list": b"[1, 2]",
    "not utf-8": b"\xff\xfe{}",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "empty": b"",
    "wrong types": json.dumps({"pack_report": 2, "name": 5, "version": [1]}).encode(),
}


@pytest.mark.parametrize("label", list(BAD_REPORTS))
@pytest.mark.parametrize("command", ["deploy", "archive", "repo", "inspect", "verify"])
def test_an_invalid_report_is_exit_3_for_every_command(command: str, label: str, tiny_store: Path) -> None:
    build = tiny_store / "tiny" / "1"
    (build / "report.json").write_bytes(BAD_REPORTS[label])
    if command in ("inspect", "verify"):
        result = invoke(command, str(build))
    else:
        extra = ["--target", "kserve"] if command == "deploy" else ["--force"]
        result = invoke(command, "tiny", *extra, "--store", str(tiny_store))
    assert "report.json" in result.error(3)


def test_an_unreadable_report_is_exit_2(tiny_build: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.read_text

    def refuse(self: Path, *args: object, **kw: object) -> str:
        if self.name == "report.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", refuse)
    line = invoke("verify", str(tiny_build)).error(2)
    assert "cannot read" in line and "report.json" in line, line
    with pytest.raises(Exception, match="cannot read"):
        BuildReport.load(tiny_build)


def test_archive_records_only_the_digests_of_what_it_wrote(tiny_store: Path) -> None:
    """A file changed after `pack archive` checked the build keeps its old digest in report.json (verify then names
    it), instead of the new digest being recorded as if pack had verified it."""
    build = tiny_store / "tiny" / "1"
    report = BuildReport.load(build)
    before = dict(report.sha256)
    _flip(build / "model.onnx")
    (build / "torchserve" / "config.properties").write_text("changed\n")
    report.save(build, rewritten=["torchserve/config.properties"])
    after = BuildReport.load(build).sha256
    assert after["model.onnx"] == before["model.onnx"]
    assert after["torchserve/config.properties"] != before["torchserve/config.properties"]
    assert "model.onnx: sha256 differs" in invoke("verify", str(build)).error(3)


def test_archive_refuses_an_export_the_report_has_no_digest_for(tiny_store: Path) -> None:
    build = tiny_store / "tiny" / "1"
    data = json.loads((build / "report.json").read_text())
    del data["sha256"]["model.onnx"]
    (build / "report.json").write_text(json.dumps(data))
    line = invoke("archive", "tiny", "--force", "--format", "onnx", "--store", str(tiny_store)).error(3)
    assert "model.onnx: the onnx export has no digest in the report" in line, line

"""Documents nested deeper than safeio.MAX_DEPTH (64) are refused when read, with bounded recursion: a KServe
manifest, a spec, a report.json. (Before: a 2 KB manifest nested 990 deep made `pack check-manifest` exit 1 with a
RecursionError; a report nested 900 deep was refused with a 2,000-character line repeating it.)"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from packager.errors import PackError, UsageError, ValidationFailed
from packager.safeio import MAX_DEPTH, load_json, load_yaml, too_deep
from tests.helpers.cli import invoke


def block_yaml(depth: int) -> str:
    """`spec: {a: {a: ... 1 ...}}` in block style, `depth` mappings deep: the manifest of the issue."""
    lines = ["apiVersion: serving.kserve.io/v1beta1", "kind: InferenceService", "metadata: {name: m}", "spec:"]
    lines += ["  " * (i + 1) + "a:" for i in range(depth - 2)]
    lines.append("  " * depth + "1")
    return "\n".join(lines) + "\n"


def nested(depth: int) -> object:
    value: object = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


@pytest.mark.parametrize("text", [block_yaml(990), "[" * 990 + "]" * 990, "{a: " * 990 + "1" + "}" * 990])
def test_a_deep_manifest_is_one_line_exit_3(tmp_path: Path, text: str) -> None:
    (tmp_path / "deep.yaml").write_text(text)
    line = invoke("check-manifest", str(tmp_path / "deep.yaml")).error(3)
    assert "is not valid YAML at line" in line and f"nested more than {MAX_DEPTH} levels deep" in line, line


def test_a_manifest_just_within_the_depth_is_checked(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(block_yaml(MAX_DEPTH))
    line = invoke("check-manifest", str(tmp_path / "ok.yaml")).error(3)
    assert "nested" not in line and "spec" in line, line  # the schema's own finding, not the depth


def test_check_manifest_refuses_a_fifo_instead_of_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    assert "is not a regular file" in invoke("check-manifest", str(tmp_path / "pipe.yaml")).error(2)


@pytest.mark.parametrize("reader", [lambda t: load_json(t, "doc.json"), lambda t: load_yaml(t, "doc.yaml")])
def test_the_readers_take_64_levels_and_refuse_65(reader: Callable[[str], object]) -> None:
    assert reader(json.dumps(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
    with pytest.raises(ValidationFailed, match="nested more than 64 levels deep"):
        reader(json.dumps(nested(MAX_DEPTH + 1)))


def test_the_error_type_is_the_callers() -> None:
    with pytest.raises(UsageError):
        load_yaml("[" * 100 + "]" * 100, "pack.yaml", UsageError)
    with pytest.raises(PackError):
        load_json("[" * 100_000 + "]" * 100_000, "report.json")  # json's own RecursionError, caught


def test_too_deep_counts_containers_not_scalars() -> None:
    assert not too_deep(1, 0) and not too_deep([1, 2], 1) and too_deep([[1]], 1)
    assert not too_deep(nested(500), 500) and too_deep(nested(501), 500)  # no recursion however deep


def test_a_deep_report_is_exit_3_for_verify_and_inspect(built: Callable[[str], Path], tmp_path: Path) -> None:
    build = tmp_path / "1"
    shutil.copytree(built("tiny"), build)
    report = json.loads((build / "report.json").read_text())
    report["export"] = {"onnx": nested(900)}
    (build / "report.json").write_text(json.dumps(report))
    for command in ("verify", "inspect"):
        line = invoke(command, str(build)).error(3)
        assert "report.json: is nested more than 64 levels deep" in line and len(line) < 400, line

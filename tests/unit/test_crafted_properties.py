"""Property-based mutations (hypothesis) of what pack reads but may not have written: a .mar's MANIFEST.json,
model-config.yaml and pack.json, a Triton config.pbtxt, and report.json. Whatever the mutation, the readers (called
in-process) either accept the file or raise one of pack's own errors with an exit code other than 1; YAML alias bombs
are refused with bounded memory. Examples are few (`max_examples` 25 to 40) to keep the unit tier fast."""

from __future__ import annotations

import json
import shutil
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packager.cli.verify import check_build
from packager.errors import EXIT_INTERNAL, PackError
from packager.report.build_report import BuildReport
from packager.targets.torchserve.marcheck import MANIFEST, check_mar, inspect_mar, read_manifest
from packager.targets.triton.check import check_repository

SETTINGS = settings(
    max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12
)
NASTY = st.lists(st.sampled_from([*"&*:[]{}!|>-'\"#%@`,?\t\n \x00\x85\ufeff", "\\u0000", "0x", "1e999"]), max_size=8).map("".join)


def never_internal(call: Callable[[], object]) -> None:
    """Run a reader: it may refuse the input, but only with pack's own error and never the internal-error exit code."""
    try:
        call()
    except PackError as exc:
        assert exc.exit_code != EXIT_INTERNAL, exc.line()


def mutate(draw: Callable[..., Any], value: Any, depth: int = 0) -> Any:
    """`value` with one change somewhere inside: a key deleted, added or replaced by any JSON value, a type swapped."""
    if isinstance(value, dict) and value and depth < 4 and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate(draw, value[key], depth + 1)}
    if isinstance(value, list) and value and depth < 4 and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate(draw, value[i], depth + 1), *value[i + 1 :]]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "delete" and isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value)))
        return {k: v for k, v in value.items() if k != key}
    if action == "add" and isinstance(value, dict):
        return {**value, draw(st.text(max_size=10)): draw(JSON)}
    return draw(JSON)


def splice(draw: Callable[..., Any], data: bytes) -> bytes:
    """`data` with a few bytes replaced at some position (raw corruption, not always valid UTF-8)."""
    start = draw(st.integers(0, len(data)))
    end = draw(st.integers(start, min(len(data), start + 8)))
    filler = draw(st.binary(max_size=8) | NASTY.map(lambda t: t.encode()))
    return data[:start] + filler + data[end:]


# --- .mar ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mar_members(built: Callable[[str], Path]) -> dict[str, bytes]:
    with zipfile.ZipFile(built("tiny") / "torchserve" / "tiny.mar") as zf:
        keep = (MANIFEST, "model-config.yaml", "pack.json", "labels.txt")
        members = {n: zf.read(n) for n in keep}
    members["model.onnx"] = b"placeholder"  # the readers check that the files the manifest names exist
    members["pack_classifier.py"] = b"# placeholder"
    return members


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("properties")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _read_mar(folder: Path, members: dict[str, bytes]) -> None:
    path = folder / "crafted.mar"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    never_internal(lambda: check_mar(path))
    never_internal(lambda: inspect_mar(path))
    never_internal(lambda: read_manifest(path))


@SETTINGS
@given(data=st.data())
def test_mutated_manifests_never_give_an_internal_error(mar_members: dict[str, bytes], scratch: Path, data: Any) -> None:
    manifest = json.loads(mar_members[MANIFEST])
    if data.draw(st.booleans()):
        text = json.dumps(mutate(data.draw, manifest)).encode()
    else:
        text = splice(data.draw, mar_members[MANIFEST])
    _read_mar(scratch, {**mar_members, MANIFEST: text})


@SETTINGS
@given(data=st.data())
def test_mutated_model_configs_and_pack_json_never_give_an_internal_error(
    mar_members: dict[str, bytes], scratch: Path, data: Any
) -> None:
    import yaml

    member = data.draw(st.sampled_from(["model-config.yaml", "pack.json"]))
    original = mar_members[member]
    if data.draw(st.booleans()):
        parsed = yaml.safe_load(original) if member.endswith(".yaml") else json.loads(original)
        changed = mutate(data.draw, parsed)
        text = (yaml.safe_dump(changed) if member.endswith(".yaml") else json.dumps(changed)).encode()
    else:
        text = splice(data.draw, original)
    _read_mar(scratch, {**mar_members, member: text})


@settings(max_examples=25, deadline=None, database=None)
@given(width=st.integers(2, 9), depth=st.integers(1, 12), where=st.sampled_from(["model-config.yaml", "spec"]))
def test_yaml_alias_bombs_are_refused_with_bounded_memory(width: int, depth: int, where: str) -> None:
    from packager.safeio import load_yaml

    lines = ['l0: &l0 ["xxxxxxxx", "xxxxxxxx"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth + 1)]
    text = "\n".join(lines) + "\n"
    tracemalloc.start()
    try:
        with pytest.raises(PackError) as caught:
            load_yaml(text, where)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.exit_code != EXIT_INTERNAL and "aliases" in caught.value.message
    assert peak < 8 * 1024 * 1024, peak


# --- config.pbtxt -------------------------------------------------------------------------------------------------

INT_FIELDS = ("max_batch_size", "count", "dims", "max_queue_delay_microseconds", "preferred_batch_size")


@pytest.fixture(scope="module")
def triton_entry(built: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A checked onnxruntime repository entry of the tiny build, and its config.pbtxt."""
    from packager.report.build_report import BuildReport as Report
    from packager.targets.triton.repository import RepoOptions, generate

    build = built("tiny")
    repo = tmp_path_factory.mktemp("pbtxt-repo")
    generate(build, Report.load(build), RepoOptions(backend="onnxruntime", fmt="onnx", gpu=False), repo)
    config = (repo / "tiny" / "config.pbtxt").read_bytes()
    assert check_repository(repo)["ok"]
    return repo, config


@SETTINGS
@given(data=st.data())
def test_mutated_triton_configs_never_give_an_internal_error(triton_entry: tuple[Path, bytes], data: Any) -> None:
    repo, original = triton_entry
    how = data.draw(st.sampled_from(["splice", "number", "text"]))
    if how == "splice":
        text = splice(data.draw, original)
    elif how == "number":  # a numeric field set to any integer (ranges)
        field = data.draw(st.sampled_from(INT_FIELDS))
        value = data.draw(st.integers(-(2**70), 2**70))
        text = original.replace(f"{field}: ".encode(), f"{field}: {value}  # ".encode(), 1)
    else:
        text = original + data.draw(NASTY).encode()
    path = repo / "tiny" / "config.pbtxt"
    try:
        path.write_bytes(text)
        never_internal(lambda: check_repository(repo))
    finally:
        path.write_bytes(original)


# --- report.json --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_build(built: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    folder = tmp_path_factory.mktemp("report-build") / "1"
    shutil.copytree(built("tiny"), folder)
    return folder, (folder / "report.json").read_bytes()


@SETTINGS
@given(data=st.data())
def test_mutated_reports_never_give_an_internal_error(report_build: tuple[Path, bytes], data: Any) -> None:
    folder, original = report_build
    if data.draw(st.booleans()):
        text = json.dumps(mutate(data.draw, json.loads(original))).encode()
    else:
        text = splice(data.draw, original)
    path = folder / "report.json"
    try:
        path.write_bytes(text)
        never_internal(lambda: BuildReport.load(folder))
        never_internal(lambda: check_build(folder))
    finally:
        path.write_bytes(original)

"""Crafted files given to pack's readers: .mar archives (verify, inspect), Triton repositories (check-repo) and YAML.
Decompression and alias bombs are refused with bounded memory; every malformed structure is exit 3 naming the member
and the field; links are refused; config.pbtxt values out of range are errors. (Property-based mutations of the same
readers: test_crafted_properties.py.)"""

from __future__ import annotations

import json
import os
import shutil
import tracemalloc
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests.helpers.cli import invoke
from tests.helpers.triton import link_build, read_config, write_config

MANIFEST = "MAR-INF/MANIFEST.json"


def rewrite_mar(src: Path, dest: Path, members: Mapping[str, bytes | None]) -> Path:
    """A copy of `src` with some members replaced (bytes) or removed (None)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename not in members:
                zout.writestr(info, zin.read(info.filename))
        for name, data in members.items():
            if data is not None:
                zout.writestr(name, data)
    return dest


def peak_of(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def mar(tiny_build: Path) -> Path:
    return tiny_build / "torchserve" / "tiny.mar"


def test_a_manifest_bomb_is_refused_with_bounded_memory(mar: Path, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.mar"
    rewrite_mar(mar, bomb, {MANIFEST: None})
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as zf, zf.open(MANIFEST, "w", force_zip64=True) as fh:
        block = b" " * (1 << 20)
        for _ in range(64):  # 64 MiB of spaces: about 64 KB compressed
            fh.write(block)
    assert bomb.stat().st_size < 1 << 20
    results: dict[str, str] = {}

    def run() -> None:
        results["verify"] = invoke("verify", str(bomb)).error(3)
        results["inspect"] = invoke("inspect", str(bomb)).error(3)

    peak = peak_of(run)
    assert peak < 40 * 1024 * 1024, f"peak {peak:,d} bytes"
    assert "MANIFEST.json: inflates to 67,108,864 bytes" in results["verify"], results
    assert "inflates to" in results["inspect"], results


MALFORMED = [
    ({MANIFEST: b"[1, 2, 3]"}, "MAR-INF/MANIFEST.json: (top level) is a JSON list, not an object"),
    ({MANIFEST: b'{"model": "tiny"}'}, "MAR-INF/MANIFEST.json: model is str, not an object"),
    ({MANIFEST: b'{"model": {"modelName": ["x"]}}'}, "MAR-INF/MANIFEST.json: model.modelName is list, not a string"),
    ({MANIFEST: b'{"model": {"modelName": "tiny", "handler": 5}}'}, "model.handler is int, not a string"),
    ({MANIFEST: b"{not json"}, "MAR-INF/MANIFEST.json: is not valid JSON"),
    ({MANIFEST: b"\xff\xfe"}, "MAR-INF/MANIFEST.json: is not valid JSON"),
    ({MANIFEST: b"[" * 50_000}, "MAR-INF/MANIFEST.json: is not valid JSON"),
    ({"model-config.yaml": b"batchSize: [1\n"}, "model-config.yaml: invalid YAML at line"),
    ({"model-config.yaml": b"- a list\n"}, "model-config.yaml: is a YAML list, not a mapping"),
    ({"model-config.yaml": b"a: &x [1, 2]\nb: *x\n"}, "anchors and aliases are not accepted"),
    ({"pack.json": b"{broken"}, "pack.json: is not valid JSON"),
    ({"pack.json": b'"a string"'}, "pack.json: is a JSON str, not an object"),
]


@pytest.mark.parametrize("members, expected", MALFORMED, ids=[e for _, e in MALFORMED])
def test_a_malformed_archive_is_exit_3_naming_the_member_and_field(
    mar: Path, tmp_path: Path, members: dict[str, bytes], expected: str
) -> None:
    crafted = rewrite_mar(mar, tmp_path / "crafted.mar", members)
    line = invoke("verify", str(crafted)).error(3)
    assert expected in line, line
    assert expected in invoke("inspect", str(crafted)).error(3)


def test_a_good_archive_still_passes(mar: Path) -> None:
    assert "not verified: structure, and every member" in invoke("verify", str(mar)).error(6)  # no report: never "verified"
    assert invoke("inspect", str(mar), "--json").json()["manifest"]["model"]["modelName"] == "tiny"


@pytest.fixture(scope="module")
def repo_store(built: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("crafted-repo")
    link_build(built("tiny"), store)
    return store


def _repo(store: Path) -> Path:
    shutil.rmtree(store / "triton", ignore_errors=True)
    doc = invoke("repo", "tiny", "--store", str(store), "--backend", "onnxruntime", "--json").json()
    assert doc["check"]["ok"], doc
    return Path(doc["repository"])


RANGES = [
    ("instances", lambda c: setattr(c.instance_group[0], "count", 10**6), "instance_group[0].count: config.pbtxt says 1000000"),
    ("negative instances", lambda c: setattr(c.instance_group[0], "count", -5), "instance_group[0].count: config.pbtxt says -5"),
    ("max batch", lambda c: setattr(c, "max_batch_size", 1_000_000_000), "max_batch_size: config.pbtxt says 1000000000"),
    ("negative max batch", lambda c: setattr(c, "max_batch_size", -1), "max_batch_size: config.pbtxt says -1, it must be 0"),
    ("zero dim", lambda c: c.output[0].dims.__setitem__(0, 0), "output logits.dims: config.pbtxt says 0"),
    ("huge dim", lambda c: c.output[0].dims.__setitem__(0, 1 << 40), "output logits.dims: config.pbtxt says 1099511627776"),
    ("negative dim", lambda c: c.output[0].dims.__setitem__(0, -7), "output logits.dims: config.pbtxt says -7"),
    (
        "delay",
        lambda c: setattr(c.dynamic_batching, "max_queue_delay_microseconds", 10**15),
        "dynamic_batching.max_queue_delay_microseconds: config.pbtxt says 1000000000000000",
    ),
    (
        "preferred",
        lambda c: c.dynamic_batching.preferred_batch_size.__setitem__(0, -3),
        "dynamic_batching.preferred_batch_size: config.pbtxt says -3",
    ),
]


@pytest.mark.parametrize("label, change, expected", RANGES, ids=[r[0] for r in RANGES])
def test_check_repo_checks_value_ranges(repo_store: Path, label: str, change: Callable[..., object], expected: str) -> None:
    repo = _repo(repo_store)
    path = repo / "tiny" / "config.pbtxt"
    config = read_config(path)
    change(config)
    write_config(config, path)
    line = invoke("check-repo", str(repo)).error(3)
    assert expected in line, line


def test_a_non_utf8_config_is_exit_3(repo_store: Path) -> None:
    repo = _repo(repo_store)
    path = repo / "tiny" / "config.pbtxt"
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data.replace(b'name: "tiny"', b'name: "t\xffny"'))
    line = invoke("check-repo", str(repo)).error(3)
    assert "config.pbtxt" in line and "not a text file" in line, line


@pytest.mark.parametrize("where", ["entry", "file"])
def test_check_repo_refuses_links(repo_store: Path, tmp_path: Path, where: str) -> None:
    repo = _repo(repo_store)
    if where == "entry":
        shutil.copytree(repo / "tiny", tmp_path / "elsewhere")
        os.symlink(tmp_path / "elsewhere", repo / "linked")
    else:
        model = repo / "tiny" / "1" / "model.onnx"
        shutil.copyfile(model, tmp_path / "model.onnx")
        model.unlink()
        os.symlink(tmp_path / "model.onnx", model)
    assert "is a symbolic link" in invoke("check-repo", str(repo)).error(3)


def test_json_output_of_a_crafted_yaml_config_is_plain(mar: Path, tmp_path: Path) -> None:
    crafted = rewrite_mar(mar, tmp_path / "dated.mar", {"model-config.yaml": b"when: 2001-12-14\nbatchSize: 1\n"})
    doc = invoke("inspect", str(crafted), "--json").json()
    assert json.dumps(doc["model_config"], default=str)

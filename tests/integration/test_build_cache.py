"""The build cache through the real command line (issue 25, item 1; packager/build/cache.py): an unchanged rebuild is
restored from the cache with every digest checked and says so; a fresh store reuses a shared cache (--cache DIR); a
changed input, a tampered cache entry and --no-cache build in full. Which inputs make the key is tested in the unit
tier (tests/unit/test_cache_key.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import pack_json, run_pack
from tests.helpers.keys import ec_pair

BUILD = ("build", "tiny", "--iterations", "0", "--formats", "torchscript,onnx")


def test_an_unchanged_rebuild_is_restored_and_a_changed_one_is_not(tmp_path: Path) -> None:
    store, shared = tmp_path / "store", tmp_path / "shared"
    first = pack_json(*BUILD, "--store", str(store), "--cache", str(shared))
    assert first["cache"]["status"] == "miss" and len(first["cache"]["key"]) == 64
    assert (shared / first["cache"]["key"] / "model.onnx").is_file()

    again = pack_json(*BUILD, "--store", str(store), "--cache", str(shared), "--force")
    assert again["cache"] == {"status": "hit", "key": first["cache"]["key"]}
    assert again["sha256"] == first["sha256"]  # the same gated files
    assert again["build_seconds"] < first["build_seconds"]
    assert run_pack("verify", str(store / "tiny" / "1")).returncode == 0

    elsewhere = tmp_path / "fresh"  # a fresh store (a CI job's workspace) with the shared cache, signed this time
    key = ec_pair(tmp_path, "release")
    signed = pack_json(*BUILD, "--store", str(elsewhere), "--cache", str(shared), "--sign-key", str(key.private))
    assert signed["cache"]["status"] == "hit" and (elsewhere / "tiny" / "1" / "model.sig").is_file()
    check = run_pack("verify", str(elsewhere / "tiny" / "1"), "--signature", "--public-key", str(key.public))
    assert check.returncode == 0, check.stderr
    assert not list(shared.rglob("model.sig"))  # the cache keeps builds, never a build's signature

    changed = pack_json(*BUILD, "--store", str(store), "--cache", str(shared), "--force", "--seed", "7")
    assert changed["cache"]["status"] == "miss" and changed["cache"]["key"] != first["cache"]["key"]

    off = pack_json(*BUILD, "--store", str(store), "--cache", str(shared), "--force", "--no-cache")
    assert off["cache"] == {"status": "off", "key": None}


def test_a_tampered_cache_entry_is_dropped_and_the_build_runs_in_full(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = pack_json(*BUILD, "--store", str(store))  # the default cache: <store>/.cache
    entry = store / ".cache" / first["cache"]["key"]
    onnx = entry / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.unlink()  # a new file: the build's hard link keeps the good bytes
    onnx.write_bytes(bytes(data))
    proc = run_pack(*BUILD, "--store", str(store), "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["cache"]["status"] == "miss" and "is not usable (" in proc.stderr
    assert f"{entry / 'model.onnx'}: sha256 differs from the report" in proc.stderr
    assert doc["sha256"]["model.onnx"] == first["sha256"]["model.onnx"]  # rebuilt, the same bytes
    assert run_pack("verify", str(store / "tiny" / "1")).returncode == 0

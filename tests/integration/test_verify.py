"""`pack verify` through the real command line, as a release pipeline runs it: exit 0 and one JSON document when the
build is intact, exit 3 and one error line when a byte changed. (Everything verify checks: tests/unit/test_verify_inspect.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import one_error_line, run_pack


def test_verify_parity_json_on_an_intact_build(tiny_build: Path) -> None:
    proc = run_pack("verify", str(tiny_build), "--parity", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] and doc["kind"] == "build"
    assert {f: doc["parity"][f]["passed"] for f in doc["parity"]} == {"torchscript": True, "onnx": True, "pt2": True}


def test_a_changed_byte_is_exit_3_with_one_line(tiny_build: Path) -> None:
    path = tiny_build / "model.pt"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    proc = run_pack("verify", str(tiny_build))
    line = one_error_line(3, proc.returncode, proc.stderr)
    assert "model.pt: sha256 differs" in line and "do not ship this folder" in line
    assert "model.pt: sha256 differs" in proc.stdout and "verification failed (build)" in proc.stdout

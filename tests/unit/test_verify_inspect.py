"""pack verify and pack inspect in-process, on copies of the tiny build and on hand-made archives: digests,
structure, zip slip, parity. (The command line's exit codes and JSON: tests/integration/test_verify.py.)"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from tests.helpers.cli import Invocation, invoke
from tests.helpers.reports import rerecord


def _fails_naming(result: Invocation, needle: str) -> Invocation:
    line = result.error(3)
    assert needle in line, line
    return result


def test_verify_passes_on_a_fresh_build_with_parity(tiny_build: Path) -> None:
    doc = invoke("verify", str(tiny_build), "--parity", "--json").json()
    assert doc["passed"] and doc["kind"] == "build" and doc["files_checked"] >= 5
    assert {f: doc["parity"][f]["passed"] for f in doc["parity"]} == {"onnx": True}  # every export of the build


def test_verify_catches_a_flipped_byte(tiny_build: Path) -> None:
    path = tiny_build / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    _fails_naming(invoke("verify", str(tiny_build)), "model.onnx: sha256 differs")


def test_verify_catches_a_missing_and_an_unlisted_file(tiny_build: Path) -> None:
    (tiny_build / "labels.txt").unlink()
    (tiny_build / "extra.bin").write_bytes(b"x")
    result = _fails_naming(invoke("verify", str(tiny_build)), "labels.txt: missing")
    assert "extra.bin: not listed in the report" in result.stdout


def test_verify_parity_catches_changed_recorded_outputs(tiny_build: Path) -> None:
    """Digests updated to match, but the recorded eager outputs no longer match what the exports compute."""
    out = tiny_build / "samples/output.logits.npy"
    np.save(out, np.load(out) + 1.0)
    rerecord(tiny_build, "samples/output.logits.npy")
    assert invoke("verify", str(tiny_build)).returncode == 0  # digests (and provenance) alone agree
    _fails_naming(invoke("verify", str(tiny_build), "--parity"), "output 'logits'")


def test_report_cannot_point_outside_the_folder(tiny_build: Path) -> None:
    report = json.loads((tiny_build / "report.json").read_text())
    report["sha256"]["../../outside.txt"] = "0" * 64
    (tiny_build / "report.json").write_text(json.dumps(report))
    _fails_naming(invoke("verify", str(tiny_build)), "outside the build folder")


def _mar(path: Path, entries: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


MANIFEST = json.dumps({"model": {"modelName": "m", "serializedFile": "model.pt", "handler": "h.py"}})


def test_verify_and_inspect_refuse_zip_slip(tmp_path: Path) -> None:
    evil = _mar(
        tmp_path / "evil.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "model.pt": b"x", "h.py": b"", "../../escape.py": b"boom"}
    )
    _fails_naming(invoke("verify", str(evil)), "leaves the archive's folder")
    assert "unsafe archive entry" in invoke("inspect", str(evil)).error(2)
    absolute = _mar(tmp_path / "abs.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "/etc/passwd": b"x"})
    _fails_naming(invoke("verify", str(absolute)), "absolute path")
    link = tmp_path / "link.mar"
    with zipfile.ZipFile(link, "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", MANIFEST)
        info = zipfile.ZipInfo("model.pt")
        info.create_system = 3
        info.external_attr = (0o120777) << 16
        zf.writestr(info, "/etc/passwd")
    _fails_naming(invoke("verify", str(link)), "symbolic link")
    assert not (tmp_path.parent / "escape.py").exists()


def test_verify_mar_structure(tmp_path: Path) -> None:
    good = _mar(tmp_path / "good.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "model.pt": b"x", "h.py": b""})
    assert "not verified: structure only: no report to check digests against" in invoke("verify", str(good)).error(6)
    missing = _mar(tmp_path / "missing.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "h.py": b""})
    _fails_naming(invoke("verify", str(missing)), "serializedFile 'model.pt'")
    nomanifest = _mar(tmp_path / "nom.mar", {"model.pt": b"x"})
    _fails_naming(invoke("verify", str(nomanifest)), "no MAR-INF/MANIFEST.json")
    truncated = tmp_path / "cut.mar"
    truncated.write_bytes(good.read_bytes()[:40])
    _fails_naming(invoke("verify", str(truncated)), "not a zip archive")


def test_verify_of_a_mar_whose_deflated_member_is_damaged_is_exit_3(tmp_path: Path) -> None:
    """A flipped byte inside a deflated member makes it fail to inflate (zlib's error, not zipfile's): a finding,
    exit 3, never an internal error; pack.json damaged the same way too."""
    text = b"".join(b"line %d of the handler\n" % i for i in range(4000))
    members: dict[str, str | bytes] = {"MAR-INF/MANIFEST.json": MANIFEST, "model.pt": b"x", "h.py": text, "pack.json": b"{}"}
    mar = tmp_path / "deflated.mar"
    with zipfile.ZipFile(mar, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, member in members.items():
            zf.writestr(name, member)
    with zipfile.ZipFile(mar) as zf:
        info = zf.getinfo("h.py")
    data = bytearray(mar.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 2] ^= 0xFF  # in the deflate block header: zlib refuses the stream (a flip further on is a CRC mismatch)
    mar.write_bytes(bytes(data))
    _fails_naming(invoke("verify", str(mar)), "h.py")


def test_inspect_build_and_mar(tiny_build: Path, tmp_path: Path) -> None:
    doc = invoke("inspect", str(tiny_build), "--json").json()
    assert doc["kind"] == "build" and doc["name"] == "tiny" and doc["validation"]["onnx"]["passed"]
    assert doc["files"]["model.onnx"] == (tiny_build / "model.onnx").stat().st_size
    text = invoke("inspect", str(tiny_build)).stdout
    assert "build tiny version 1" in text and "outputs: logits float32 [1, 10]" in text
    good = _mar(tmp_path / "good.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "model.pt": b"x", "h.py": b""})
    doc = invoke("inspect", str(good), "--json").json()
    assert doc["manifest"]["model"]["modelName"] == "m" and {e["name"] for e in doc["entries"]} >= {"model.pt", "h.py"}


def test_verify_nonexistent_and_unknown(tmp_path: Path) -> None:
    assert "neither a build folder" in invoke("verify", str(tmp_path)).error(2)
    assert invoke("verify", str(tmp_path / "nope")).returncode == 2  # click: the path must exist

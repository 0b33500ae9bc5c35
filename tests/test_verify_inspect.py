"""pack verify and pack inspect on build folders and archives: digests, structure, zip slip, parity."""

import json
import shutil
import zipfile

import numpy as np
import pytest

from conftest import run_pack


@pytest.fixture
def build_copy(built, tmp_path):
    folder = tmp_path / "tiny" / "1"
    shutil.copytree(built("tiny"), folder)
    return folder


def _fails_naming(proc, needle):
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    return proc


def test_verify_passes_on_a_fresh_build_with_parity(build_copy):
    proc = run_pack("verify", str(build_copy), "--parity", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] and doc["kind"] == "build" and doc["files_checked"] >= 5
    assert doc["parity"]["onnx"]["passed"] and doc["parity"]["torchscript"]["passed"]


def test_verify_catches_a_flipped_byte(build_copy):
    path = build_copy / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    _fails_naming(run_pack("verify", str(build_copy)), "model.onnx: sha256 differs")


def test_verify_catches_a_missing_and_an_unlisted_file(build_copy):
    (build_copy / "labels.txt").unlink()
    (build_copy / "extra.bin").write_bytes(b"x")
    proc = _fails_naming(run_pack("verify", str(build_copy)), "labels.txt: missing")
    assert "extra.bin: not listed in the report" in proc.stdout


def test_verify_parity_catches_changed_recorded_outputs(build_copy):
    """Digests updated to match, but the recorded eager outputs no longer match what the exports compute."""
    out = build_copy / "samples/output.logits.npy"
    np.save(out, np.load(out) + 1.0)
    report = json.loads((build_copy / "report.json").read_text())
    import hashlib

    report["sha256"]["samples/output.logits.npy"] = hashlib.sha256(out.read_bytes()).hexdigest()
    (build_copy / "report.json").write_text(json.dumps(report))
    assert run_pack("verify", str(build_copy)).returncode == 0  # digests alone agree
    _fails_naming(run_pack("verify", str(build_copy), "--parity"), "output 'logits'")


def test_report_cannot_point_outside_the_folder(build_copy, tmp_path):
    report = json.loads((build_copy / "report.json").read_text())
    report["sha256"]["../../outside.txt"] = "0" * 64
    (build_copy / "report.json").write_text(json.dumps(report))
    _fails_naming(run_pack("verify", str(build_copy)), "outside the build folder")


def _mar(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


MANIFEST = json.dumps({"model": {"modelName": "m", "serializedFile": "model.pt", "handler": "h.py"}})


def test_verify_and_inspect_refuse_zip_slip(tmp_path):
    evil = _mar(tmp_path / "evil.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "model.pt": b"x", "h.py": b"", "../../escape.py": b"boom"})
    _fails_naming(run_pack("verify", str(evil)), "leaves the archive's folder")
    proc = run_pack("inspect", str(evil))
    assert proc.returncode == 2 and "unsafe archive entry" in proc.stderr
    absolute = _mar(tmp_path / "abs.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "/etc/passwd": b"x"})
    _fails_naming(run_pack("verify", str(absolute)), "absolute path")
    link = tmp_path / "link.mar"
    with zipfile.ZipFile(link, "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", MANIFEST)
        info = zipfile.ZipInfo("model.pt")
        info.create_system = 3
        info.external_attr = (0o120777) << 16
        zf.writestr(info, "/etc/passwd")
    _fails_naming(run_pack("verify", str(link)), "symbolic link")
    assert not (tmp_path.parent / "escape.py").exists()


def test_verify_mar_structure(tmp_path):
    good = _mar(tmp_path / "good.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "model.pt": b"x", "h.py": b""})
    assert run_pack("verify", str(good)).returncode == 0
    missing = _mar(tmp_path / "missing.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "h.py": b""})
    _fails_naming(run_pack("verify", str(missing)), "serializedFile 'model.pt'")
    nomanifest = _mar(tmp_path / "nom.mar", {"model.pt": b"x"})
    _fails_naming(run_pack("verify", str(nomanifest)), "no MAR-INF/MANIFEST.json")
    truncated = tmp_path / "cut.mar"
    truncated.write_bytes(good.read_bytes()[:40])
    _fails_naming(run_pack("verify", str(truncated)), "not a zip archive")


def test_inspect_build_and_mar(build_copy, tmp_path):
    doc = json.loads(run_pack("inspect", str(build_copy), "--json").stdout)
    assert doc["kind"] == "build" and doc["name"] == "tiny" and doc["validation"]["onnx"]["passed"]
    assert doc["files"]["model.onnx"] == (build_copy / "model.onnx").stat().st_size
    text = run_pack("inspect", str(build_copy)).stdout
    assert "build tiny version 1" in text and "outputs: logits float32 [1, 10]" in text
    good = _mar(tmp_path / "good.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "model.pt": b"x", "h.py": b""})
    doc = json.loads(run_pack("inspect", str(good), "--json").stdout)
    assert doc["manifest"]["model"]["modelName"] == "m" and {e["name"] for e in doc["entries"]} >= {"model.pt", "h.py"}


def test_verify_nonexistent_and_unknown(tmp_path):
    proc = run_pack("verify", str(tmp_path))
    assert proc.returncode == 2 and "neither a build folder" in proc.stderr

"""The CLI without torch: help, models, unknown names, exit codes for bad usage."""

import json
import subprocess
import sys

from conftest import ROOT, run_pack

PROBE = """
import sys
from packager.cli import main
try:
    main([{args}], standalone_mode=True)
except SystemExit:
    pass
sys.stderr.write("TORCH_IMPORTED=%s\\n" % ("torch" in sys.modules))
"""


def _torch_imported(*args: str) -> bool:
    code = PROBE.format(args=", ".join(repr(a) for a in args))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "TORCH_IMPORTED=" in proc.stderr, proc.stderr
    return "TORCH_IMPORTED=True" in proc.stderr


def test_help_and_models_do_not_import_torch():
    assert not _torch_imported("--help")
    assert not _torch_imported("models")
    assert not _torch_imported("build", "--help")
    # the probe itself works: a build of an unknown model fails early, also without torch
    assert not _torch_imported("build", "no-such-model")


def test_models_lists_builtins_as_table_and_json():
    proc = run_pack("models")
    assert proc.returncode == 0
    for name in ("yolov8n", "resnet18", "resnet50", "mobilenet_v3_small", "tiny"):
        assert name in proc.stdout
    doc = json.loads(run_pack("models", "--json").stdout)
    by_name = {m["name"]: m for m in doc}
    assert by_name["yolov8n"]["task"] == "object-detection"
    assert by_name["yolov8n"]["inputs"][0]["shape"] == [1, 3, 640, 640]
    assert by_name["resnet50"]["outputs"] == ["logits"]


def test_unknown_model_suggests_near_names():
    proc = run_pack("build", "resnet5")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "unknown model 'resnet5'" in lines[0] and "resnet50" in lines[0]
    assert "Traceback" not in proc.stderr


def test_nothing_to_build_is_a_usage_error():
    proc = run_pack("build")
    assert proc.returncode == 2
    assert "nothing to build" in proc.stderr


def test_bad_input_option_and_version():
    proc = run_pack("build", "tiny", "--input", "input:1xAx32")
    assert proc.returncode == 2 and "not numbers joined by x" in proc.stderr
    proc = run_pack("build", "tiny", "--version", "v2")
    assert proc.returncode == 2 and "positive integer" in proc.stderr


def test_deploy_without_build_names_the_fix(tmp_path):
    proc = run_pack("deploy", "tiny", "--store", str(tmp_path))
    assert proc.returncode == 2
    assert "no build of 'tiny'" in proc.stderr and "pack build tiny" in proc.stderr

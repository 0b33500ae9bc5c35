"""The command line's contract, in real subprocesses: what stays torch-free, exit codes with one error line on
stderr, JSON alone on stdout. (Ctrl-C, --debug and a full disk: test_build_errors.py; the commands' logic runs
in-process in tests/unit/test_cli.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT
from tests.helpers.cli import one_error_line, run_pack

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


def test_help_and_models_do_not_import_torch() -> None:
    assert not _torch_imported("--help")
    assert not _torch_imported("models")
    assert not _torch_imported("build", "--help")
    # the probe itself works: a build of an unknown model fails early, also without torch
    assert not _torch_imported("build", "no-such-model")


def test_check_manifest_does_not_import_torch(tmp_path: Path) -> None:
    manifest = tmp_path / "isvc.yaml"
    manifest.write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: m}\n"
        "spec: {predictor: {model: {modelFormat: {name: triton}, runtime: kserve-tritonserver, storageUri: 's3://b/m'}}}\n"
    )
    proc = run_pack("check-manifest", str(manifest))
    assert proc.returncode == 0 and "InferenceService m: valid" in proc.stdout, proc.stderr
    assert not _torch_imported("check-manifest", str(manifest))


def test_json_alone_on_stdout() -> None:
    proc = run_pack("models", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {m["name"] for m in json.loads(proc.stdout)} >= {"tiny", "resnet18"}
    assert proc.stderr == ""


def test_a_usage_error_is_exit_2_and_one_line_on_stderr() -> None:
    proc = run_pack("build", "resnet5", "--json")
    line = one_error_line(2, proc.returncode, proc.stderr)
    assert line.startswith("error: unknown model 'resnet5'") and "resnet50" in line
    assert proc.stdout == ""  # no document for a failed command, even with --json


def test_unknown_option_is_click_usage_exit_2() -> None:
    proc = run_pack("build", "tiny", "--no-such-option")
    line = one_error_line(2, proc.returncode, proc.stderr)
    assert "no such option '--no-such-option'" in line and "build --help" in line, line


def test_the_command_line_imports_no_server_code_or_numerics() -> None:
    """Starting `pack` (every command's module, every target's options) imports no numerics, schema validator or
    target server code: those load when a command needs them, so `pack archive` and `pack --help` start fast."""
    code = (
        "import sys, packager.cli; heavy = ['torch', 'numpy', 'jsonschema', 'model_signing', 'fastapi', 'uvicorn'] +"
        " [m for m in sys.modules if m.startswith('packager.targets.') and m.rsplit('.', 1)[-1] in"
        " ('deploy', 'server', 'manifest', 'repository', 'mar')]; print([m for m in heavy if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_a_command_imports_only_its_own_module() -> None:
    code = (
        "import sys; from packager.cli import main\n"
        "try:\n    main(['archive', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('packager.cli.', 'packager.bench', 'torch'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = done.stdout.strip().splitlines()[-1]
    assert "'packager.cli.serve'" in loaded and "packager.bench" not in loaded and "'torch'" not in loaded, loaded
    assert "'packager.cli.tune'" not in loaded and "'packager.cli.sign'" not in loaded, loaded

"""Triton repositories of a real export, checked offline: a libtorch entry's config against a run of its TorchScript
file (`pack check-repo` finds what only running the file shows). (Every other repository check, on a build made
without an exporter: tests/unit/test_triton_repo.py.)"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.cli import one_error_line, pack_json, run_pack
from tests.helpers.triton import link_build, read_config, write_config


@pytest.fixture(scope="module")
def store(built: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = tmp_path_factory.mktemp("triton-repo-store")
    link_build(built("tiny"), s)
    return s


def test_pytorch_config_checked_by_a_torchscript_run(store: Path) -> None:
    shutil.rmtree(store / "triton", ignore_errors=True)
    doc = pack_json("repo", "tiny", "--store", str(store), "--backend", "pytorch")
    assert doc["check"]["ok"], doc
    repo = Path(doc["repository"])
    config = read_config(repo / "tiny" / "config.pbtxt")
    assert config.platform == "pytorch_libtorch"
    assert [i.name for i in config.input] == ["input__0"] and [o.name for o in config.output] == ["logits__0"]
    assert (repo / "tiny" / "1" / "model.pt").is_file()
    assert run_pack("check-repo", str(repo)).returncode == 0
    # a wrong output dim is only visible by running the TorchScript
    config.output[0].dims[:] = [11]
    write_config(config, repo / "tiny" / "config.pbtxt")
    proc = run_pack("check-repo", str(repo))
    line = one_error_line(3, proc.returncode, proc.stderr)
    assert (
        "model 'tiny' version 1: output 'logits__0' dims: config.pbtxt says [11], a TorchScript run of model.pt has [10]" in line
    )

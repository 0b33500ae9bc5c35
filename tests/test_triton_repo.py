"""Triton repositories, offline: generated configs (onnxruntime, pytorch, python) pass `pack check-repo`, versions are
kept, --force is required to replace, and corrupted configs are caught with the model, the field and both values."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import pack_json, run_pack
from triton_support import link_build, read_config, write_config


@pytest.fixture(scope="module")
def store(built, tmp_path_factory) -> Path:
    s = tmp_path_factory.mktemp("triton-repo-store")
    link_build(built("tiny"), s)
    return s


def fresh_repo(store: Path, *args: str) -> Path:
    shutil.rmtree(store / "triton", ignore_errors=True)
    doc = pack_json("repo", "tiny", "--store", str(store), *args)
    assert doc["check"]["ok"], doc
    return Path(doc["repository"])


def test_onnxruntime_config_from_build_io(store):
    repo = fresh_repo(store, "--backend", "onnxruntime", "--instances", "2", "--max-batch", "16")
    config = read_config(repo / "tiny" / "config.pbtxt")
    from packager.targets.triton import config as cfg

    assert config.backend == "onnxruntime" and config.max_batch_size == 16
    assert [(i.name, cfg.dtype_name(i.data_type), list(i.dims)) for i in config.input] == [("input", "TYPE_FP32", [3, 32, 32])]
    assert [(o.name, cfg.dtype_name(o.data_type), list(o.dims)) for o in config.output] == [("logits", "TYPE_FP32", [10])]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == cfg.pb().ModelInstanceGroup.KIND_CPU
    assert config.version_policy.latest.num_versions == 1
    warm = config.model_warmup[0].inputs["input"]
    data = (repo / "tiny" / "warmup" / warm.input_data_file).read_bytes()
    sample = np.load(store / "tiny" / "1" / "samples" / "input.input.npy")
    assert data == sample[:1].tobytes()
    assert (repo / "tiny" / "1" / "model.onnx").is_file()
    doc = pack_json("check-repo", str(repo))
    assert doc["ok"] and doc["models"][0]["name"] == "tiny" and doc["models"][0]["kind"] == "onnxruntime"


def test_pytorch_config_checked_by_a_torchscript_run(store):
    repo = fresh_repo(store, "--backend", "pytorch")
    config = read_config(repo / "tiny" / "config.pbtxt")
    assert config.platform == "pytorch_libtorch"
    assert [i.name for i in config.input] == ["input__0"] and [o.name for o in config.output] == ["logits__0"]
    assert (repo / "tiny" / "1" / "model.pt").is_file()
    assert run_pack("check-repo", str(repo)).returncode == 0
    # a wrong output dim is only visible by running the TorchScript
    config.output[0].dims[:] = [11]
    write_config(config, repo / "tiny" / "config.pbtxt")
    proc = run_pack("check-repo", str(repo))
    assert proc.returncode == 3
    assert "model 'tiny' version 1: output 'logits__0' dims: config.pbtxt says [11], a TorchScript run of model.pt has [10]" in proc.stderr


def test_python_backend_and_no_batching(store):
    repo = fresh_repo(store, "--backend", "python", "--max-batch", "0")
    config = read_config(repo / "tiny" / "config.pbtxt")
    assert config.backend == "python" and config.max_batch_size == 0
    assert list(config.input[0].dims) == [-1, 3, 32, 32]
    assert not config.HasField("dynamic_batching")
    assert sorted(p.name for p in (repo / "tiny" / "1").iterdir()) == ["model.onnx", "model.py", "pack_runtime.py"]
    assert "class TritonPythonModel" in (repo / "tiny" / "1" / "model.py").read_text()
    assert run_pack("check-repo", str(repo)).returncode == 0


@pytest.mark.parametrize(
    "corruption, expected",
    [
        ("dtype", "model 'tiny' version 1: input 'input' data_type: config.pbtxt says TYPE_FP16, model.onnx has TYPE_FP32"),
        ("dims", "model 'tiny' version 1: input 'input' dims: config.pbtxt says [3, 32, 31], model.onnx has [3, 32, 32]"),
        ("name", "model 'tiny' version 1: input name: config.pbtxt says 'image', model.onnx has no input of that name (its inputs: input)"),
        ("batch", "model 'tiny' version 1: max_batch_size: config.pbtxt says 8, model.onnx input 'input' has no batch axis (first axis fixed at 1"),
        ("file", "model 'tiny' version 1: default_model_filename: config.pbtxt says model.plan"),
        ("warmup", "model_warmup 'pack_sample' input 'input' input_data_file: config.pbtxt says [3, 32, 32] TYPE_FP32 (12288 bytes), input has 100 bytes"),
    ],
)
def test_corrupted_config_is_caught(store, corruption, expected):
    repo = fresh_repo(store, "--backend", "onnxruntime")
    path = repo / "tiny" / "config.pbtxt"
    config = read_config(path)
    from packager.targets.triton import config as cfg

    if corruption == "dtype":
        config.input[0].data_type = cfg.dtype_value("TYPE_FP16")
    elif corruption == "dims":
        config.input[0].dims[:] = [3, 32, 31]
    elif corruption == "name":
        config.input[0].name = "image"
    elif corruption == "batch":  # the model has a fixed batch of 1, the config still batches
        import onnx

        onnx_path = repo / "tiny" / "1" / "model.onnx"
        model = onnx.load(str(onnx_path))
        for value in [*model.graph.input, *model.graph.output]:
            dim = value.type.tensor_type.shape.dim[0]
            dim.ClearField("dim_param")
            dim.dim_value = 1
        onnx_path.unlink()
        onnx.save(model, str(onnx_path))
    elif corruption == "file":
        config.default_model_filename = "model.plan"
    elif corruption == "warmup":
        (repo / "tiny" / "warmup" / "input").unlink()
        (repo / "tiny" / "warmup" / "input").write_bytes(b"\0" * 100)
    write_config(config, path)
    proc = run_pack("check-repo", str(repo))
    assert proc.returncode == 3, proc.stderr
    assert expected in proc.stderr, proc.stderr


def test_unparsable_config_is_caught(store):
    repo = fresh_repo(store, "--backend", "onnxruntime")
    path = repo / "tiny" / "config.pbtxt"
    text = path.read_text()
    path.unlink()
    path.write_text(text.replace("max_batch_size: 8", "max_batch_size: eight"))
    proc = run_pack("check-repo", str(repo))
    assert proc.returncode == 3 and "model 'tiny': config.pbtxt" in proc.stderr and "not a valid Triton ModelConfig" in proc.stderr


def test_versions_kept_and_force_needed(tmp_path, built):
    store = tmp_path / "store"
    link_build(built("tiny"), store)
    proc = run_pack("build", "tiny", "--version", "2", "--store", str(store), "--iterations", "0", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pack_json("repo", "tiny", "--version", "1", "--store", str(store))
    doc = pack_json("repo", "tiny", "--store", str(store))
    assert doc["version"] == "2"
    repo = store / "triton"
    assert sorted(p.name for p in (repo / "tiny").iterdir() if p.is_dir()) == ["1", "2", "warmup"]
    assert not [p for p in repo.iterdir() if p.name.startswith((".tmp-", ".old-", ".staging-"))]
    # same content again: a no-op; different content: refused without --force, the entry untouched
    assert run_pack("repo", "tiny", "--store", str(store)).returncode == 0
    before = (repo / "tiny" / "config.pbtxt").read_bytes()
    proc = run_pack("repo", "tiny", "--store", str(store), "--backend", "python")
    assert proc.returncode == 2 and "tiny/2 with different content" in proc.stderr and "--force" in proc.stderr
    assert (repo / "tiny" / "config.pbtxt").read_bytes() == before
    doc = pack_json("repo", "tiny", "--store", str(store), "--backend", "python", "--force")
    assert doc["backend"] == "python" and (repo / "tiny" / "1").is_dir() and (repo / "tiny" / "2" / "model.py").is_file()
    check = pack_json("check-repo", str(repo))
    assert check["ok"] and check["models"][0]["versions"] == ["1", "2"]


def test_max_batch_needs_a_batch_axis(tmp_path):
    store = tmp_path / "store"
    proc = run_pack(
        "build", "--store", str(store), "--iterations", "0", "--device", "cpu", "--batch-sizes", "1",
        "--spec", str(_fixed_batch_spec(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_pack("repo", "tiny", "--store", str(store), "--max-batch", "4")
    assert proc.returncode == 2 and "--max-batch 4: tiny has no dynamic batch axis" in proc.stderr
    doc = pack_json("repo", "tiny", "--store", str(store))
    assert doc["max_batch_size"] == 0


def _fixed_batch_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "pack.yaml"
    spec.write_text(
        "source: tiny\n"
        "inputs:\n  - {name: input, shape: [1, 3, 32, 32], dtype: float32, dynamic_axes: []}\n"
        "outputs:\n  - {name: logits, dynamic_axes: []}\n"
    )
    return spec


def test_package_writes_a_checked_python_repository(built, tmp_path):
    from packager.targets import triton

    build = link_build(built("tiny"), tmp_path / "store")
    report = json.loads((build / "report.json").read_text())
    section = triton.package(build, report, lambda m: None)
    assert section["backend"] == "python" and section["models"] == ["tiny"]
    for rel in section["files"]:
        assert (build / rel).is_file(), rel
    assert "triton/tiny/1/model.py" in section["files"] and "triton/tiny/config.pbtxt" in section["files"]
    assert pack_json("check-repo", str(build / "triton"))["ok"]


def test_ensemble_wiring_is_checked(built, tmp_path):
    """A detection build gets pre -> model -> post entries and an ensemble; broken wiring is reported."""
    from packager.targets.triton import config as cfg
    from packager.targets.triton.check import check_repository
    from packager.targets.triton.repository import RepoOptions, generate

    build = built("tiny")
    report = json.loads((build / "report.json").read_text())
    report = {**report, "task": "object-detection", "postprocessing": {"format": "yolov8", "conf_threshold": 0.3}}
    repo = tmp_path / "repo"
    section = generate(build, report, RepoOptions(backend="onnxruntime"), repo)
    assert section["models"] == ["tiny_preprocess", "tiny", "tiny_postprocess", "tiny_ensemble"]
    assert check_repository(repo)["ok"], check_repository(repo)["summary"]
    ens_path = repo / "tiny_ensemble" / "config.pbtxt"
    ens = cfg.read(ens_path)
    assert ens.platform == "ensemble" and [s.model_name for s in ens.ensemble_scheduling.step] == ["tiny_preprocess", "tiny", "tiny_postprocess"]
    del ens.ensemble_scheduling.step[2].input_map["meta"]  # post-processing input left unmapped
    ens.output[2].data_type = cfg.dtype_value("TYPE_INT64")  # classes: the post-processing gives INT32
    cfg.write(ens, ens_path)
    result = check_repository(repo)
    messages = "\n".join(p["message"] for p in result["problems"])
    assert not result["ok"]
    assert "model 'tiny_ensemble': ensemble_scheduling.step[2] (tiny_postprocess) input_map: config.pbtxt says no mapping for 'meta', tiny_postprocess needs input 'meta'" in messages
    assert "model 'tiny_ensemble': output 'classes' data_type: config.pbtxt says TYPE_INT64, tiny_postprocess output 'classes' gives TYPE_INT32" in messages

"""Triton repositories, offline and in-process: the config builders (every backend, batching, names, warmup), the
generated entries passing `pack check-repo`, versions kept, --force required to replace, and corrupted configs caught
with the model, the field and both values."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.errors import UsageError, ValidationFailed
from packager.report.build_report import BuildReport
from packager.targets.triton import config as cfg
from packager.targets.triton.repository import (
    RepoOptions,
    io_names,
    model_config,
)
from tests.helpers.cli import invoke
from tests.helpers.reports import SEQUENCE_MODEL as REPORT
from tests.helpers.reports import make_report
from tests.helpers.torchserve import copy_build
from tests.helpers.triton import link_build, read_config, write_config

# ---------------------------------------------------------------------------- config builders, from a report alone


def _fixed(report: dict[str, Any]) -> dict[str, Any]:
    """The report with no dynamic axis anywhere (a model with a fixed batch)."""
    return {
        **report,
        "inputs": [{**t, "dynamic_axes": []} for t in report["inputs"]],
        "outputs": [{**t, "dynamic_axes": []} for t in report["outputs"]],
    }


def test_onnxruntime_config_batches_on_the_batch_axis() -> None:
    config, warmup = model_config(make_report(**REPORT), RepoOptions(backend="onnxruntime", instances=3, gpu=False))
    assert (config.name, config.backend, config.default_model_filename) == ("m", "onnxruntime", "model.onnx")
    assert config.max_batch_size == 8  # the default when every tensor has a batch axis
    assert [(i.name, cfg.dtype_name(i.data_type), list(i.dims)) for i in config.input] == [("ids", "TYPE_INT64", [-1])]
    assert [(o.name, cfg.dtype_name(o.data_type), list(o.dims)) for o in config.output] == [("logits", "TYPE_FP32", [-1, 5])]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000
    assert config.instance_group[0].count == 3 and config.instance_group[0].kind == cfg.pb().ModelInstanceGroup.KIND_CPU
    assert config.version_policy.latest.num_versions == 1
    assert cfg.get_parameter(config, "pack_build") == "m:2"
    assert warmup == {} and not config.model_warmup  # no build folder: no samples to warm up with


def test_backends_name_their_tensors_and_files() -> None:
    torch_cfg, _ = model_config(make_report(**REPORT), RepoOptions(backend="pytorch", gpu=True))
    assert torch_cfg.platform == "pytorch_libtorch" and torch_cfg.default_model_filename == "model.pt"
    assert [i.name for i in torch_cfg.input] == ["ids__0"] and [o.name for o in torch_cfg.output] == ["logits__0"]
    assert torch_cfg.instance_group[0].kind == cfg.pb().ModelInstanceGroup.KIND_GPU
    aoti, _ = model_config(make_report(**REPORT), RepoOptions(backend="torch_aoti", gpu=False))
    assert (aoti.backend, aoti.platform, aoti.default_model_filename) == ("pytorch", "torch_aoti", "model.pt2")
    assert [i.name for i in aoti.input] == ["INPUT__0"] and [o.name for o in aoti.output] == ["OUTPUT__0"]
    assert aoti.max_batch_size == 0 and list(aoti.input[0].dims) == [-1, -1]  # torch_aoti does not batch
    python, _ = model_config(make_report(**REPORT), RepoOptions(backend="python", fmt="pt2", gpu=False))
    assert python.backend == "python"
    assert cfg.get_parameter(python, "pack_format") == "pt2" and cfg.get_parameter(python, "pack_model_file") == "model.pt2"
    assert io_names(make_report(**REPORT), "onnxruntime") == (["ids"], ["logits"])


def test_max_batch_needs_a_batch_axis() -> None:
    fixed = _fixed(REPORT)
    config, _ = model_config(make_report(**fixed), RepoOptions(backend="onnxruntime", gpu=False))
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 16] and not config.HasField("dynamic_batching")
    with pytest.raises(UsageError, match=r"--max-batch 4: m has no dynamic batch axis \(ids, logits fixed\)"):
        model_config(make_report(**fixed), RepoOptions(backend="onnxruntime", max_batch=4, gpu=False))
    with pytest.raises(UsageError, match="torch_aoti platform does not batch yet"):
        model_config(make_report(**REPORT), RepoOptions(backend="torch_aoti", max_batch=4, gpu=False))


def test_warmup_is_the_first_row_of_the_recorded_sample(tmp_path: Path) -> None:
    sample = np.arange(3 * 16, dtype=np.int64).reshape(3, 16)
    (tmp_path / "samples").mkdir()
    np.save(tmp_path / "samples" / "input.ids.npy", sample)
    report = {**REPORT, "samples": {"batch": 1, "inputs": ["samples/input.ids.npy"], "outputs": []}}
    config, files = model_config(make_report(**report), RepoOptions(backend="onnxruntime", gpu=False), tmp_path)
    warm = config.model_warmup[0]
    assert warm.name == "pack_sample" and warm.batch_size == 1
    assert list(warm.inputs["ids"].dims) == [16] and warm.inputs["ids"].input_data_file == "ids"
    assert files == {"ids": sample[:1].tobytes()}


def test_repo_options_are_checked() -> None:
    assert RepoOptions(backend="pytorch_libtorch").backend == "pytorch"
    assert RepoOptions(backend="onnxruntime", fmt="torchscript").fmt == "onnx"  # a native backend loads its own format
    refused: list[tuple[dict[str, Any], str]] = [
        ({"backend": "tensorrt"}, "unknown Triton backend 'tensorrt'"),
        ({"fmt": "tflite"}, "unknown format 'tflite'"),
        ({"instances": 0}, "--workers 0 is out of range"),
        ({"instances": 1_000_000}, "--workers 1000000 is out of range"),
        ({"max_batch": -1}, "--batch-size -1 is out of range"),
        ({"max_batch": 10**9}, "--batch-size 1000000000 is out of range"),
        ({"max_queue_delay_us": 10**12}, "--max-batch-delay 1000000000 is out of range"),
        ({"threads": 2000}, "--threads 2000 is out of range"),
    ]
    for kwargs, message in refused:  # the ranges of the settings, in their own words (packager/serve/settings.py)
        with pytest.raises(UsageError, match=message):
            RepoOptions(**kwargs)


IMAGE_CLASSIFIER = {
    **REPORT,
    "task": "image-classification",
    "labels": "labels.txt",
    "inputs": [{"name": "input", "shape": [1, 3, 8, 8], "dtype": "float32", "dynamic_axes": [0]}],
    "outputs": [{"name": "logits", "shape": [1, 4], "dtype": "float32", "dynamic_axes": [0]}],
}


def test_image_inputs_carry_their_format_and_classifiers_their_labels(tmp_path: Path) -> None:
    """Triton's image clients read the input's format and the classification extension reads label_filename: an image
    task's input is FORMAT_NCHW only where it has 3 dims (Triton refuses a format on more), and label_filename is
    set only when the build folder has the labels."""
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    report = make_report(**IMAGE_CLASSIFIER)
    config, _ = model_config(report, RepoOptions(gpu=False), tmp_path)
    assert cfg.pb().ModelInput.Format.Name(config.input[0].format) == "FORMAT_NCHW" and list(config.input[0].dims) == [3, 8, 8]
    assert config.output[0].label_filename == "labels.txt"
    unbatched, _ = model_config(report, RepoOptions(gpu=False, max_batch=0), tmp_path)
    assert unbatched.input[0].format == cfg.pb().ModelInput.FORMAT_NONE and len(unbatched.input[0].dims) == 4
    no_labels, _ = model_config(report, RepoOptions(gpu=False), tmp_path / "elsewhere")
    assert not no_labels.output[0].label_filename
    generic, _ = model_config(make_report(**{**IMAGE_CLASSIFIER, "task": "generic", "labels": None}), RepoOptions(gpu=False))
    assert generic.input[0].format == cfg.pb().ModelInput.FORMAT_NONE and not generic.output[0].label_filename


def test_config_text_round_trip_and_parse_errors() -> None:
    config, _ = model_config(make_report(**REPORT), RepoOptions(backend="onnxruntime", gpu=False))
    assert cfg.parse(cfg.to_text(config)) == config
    assert cfg.kind_of(config) == "onnxruntime" and cfg.model_filename(config) == "model.onnx"
    assert json.loads(cfg.to_json(config))["max_batch_size"] == 8
    with pytest.raises(ValidationFailed, match="not a valid Triton ModelConfig"):
        cfg.parse("max_batch_size: eight")
    with pytest.raises(ValidationFailed, match="dtype complex64 has no Triton equivalent"):
        cfg.triton_dtype("complex64")


# ------------------------------------------------------------------ repositories of the tiny build, via `pack repo`


@pytest.fixture(scope="module")
def store(built: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = tmp_path_factory.mktemp("triton-repo-store")
    link_build(built("tiny"), s)
    return s


def fresh_repo(store: Path, *args: str) -> Path:
    shutil.rmtree(store / "triton", ignore_errors=True)
    doc = invoke("repo", "tiny", "--store", str(store), "--json", *args).json()
    assert doc["check"]["ok"], doc
    return Path(doc["repository"])


def test_onnxruntime_config_from_build_io(store: Path) -> None:
    repo = fresh_repo(store, "--backend", "onnxruntime", "--instances", "2", "--max-batch", "16")
    config = read_config(repo / "tiny" / "config.pbtxt")
    assert config.backend == "onnxruntime" and config.max_batch_size == 16
    assert [(i.name, cfg.dtype_name(i.data_type), list(i.dims)) for i in config.input] == [("input", "TYPE_FP32", [3, 32, 32])]
    assert [(o.name, cfg.dtype_name(o.data_type), list(o.dims)) for o in config.output] == [("logits", "TYPE_FP32", [10])]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.instance_group[0].count == 2
    warm = config.model_warmup[0].inputs["input"]
    data = (repo / "tiny" / "warmup" / warm.input_data_file).read_bytes()
    sample = np.load(store / "tiny" / "1" / "samples" / "input.input.npy")
    assert data == sample[:1].tobytes()
    assert (repo / "tiny" / "1" / "model.onnx").is_file()
    doc = invoke("check-repo", str(repo), "--json").json()
    assert doc["ok"] and doc["models"][0]["name"] == "tiny" and doc["models"][0]["kind"] == "onnxruntime"


def test_python_backend_and_no_batching(store: Path) -> None:
    repo = fresh_repo(store, "--backend", "python", "--max-batch", "0")
    config = read_config(repo / "tiny" / "config.pbtxt")
    assert config.backend == "python" and config.max_batch_size == 0
    assert list(config.input[0].dims) == [-1, 3, 32, 32]
    assert not config.HasField("dynamic_batching")
    assert sorted(p.name for p in (repo / "tiny" / "1").iterdir()) == [
        "model.onnx",
        "model.py",
        "pack_images.py",
        "pack_runtime.py",
        "pack_signature.py",
    ]
    assert "class TritonPythonModel" in (repo / "tiny" / "1" / "model.py").read_text()
    assert invoke("check-repo", str(repo)).returncode == 0


CORRUPTIONS = [
    ("dtype", "model 'tiny' version 1: input 'input' data_type: config.pbtxt says TYPE_FP16, model.onnx has TYPE_FP32"),
    ("dims", "model 'tiny' version 1: input 'input' dims: config.pbtxt says [3, 32, 31], model.onnx has [3, 32, 32]"),
    (
        "name",
        "model 'tiny' version 1: input name: config.pbtxt says 'image', model.onnx has no input of that name (its inputs: input)",
    ),
    (
        "batch",
        "model 'tiny' version 1: max_batch_size: config.pbtxt says 8, model.onnx input 'input' has no batch axis "
        "(first axis fixed at 1",
    ),
    ("file", "model 'tiny' version 1: default_model_filename: config.pbtxt says model.plan"),
    ("format", "model 'tiny': input input.format: config.pbtxt says FORMAT_NCHW on 3 dims"),
    ("labels", "model 'tiny': output logits.label_filename: config.pbtxt says classes.txt, no such file beside config.pbtxt"),
    (
        "warmup",
        "model_warmup 'pack_sample' input 'input' input_data_file: config.pbtxt says [3, 32, 32] TYPE_FP32 (12288 bytes), "
        "input has 100 bytes",
    ),
]


@pytest.mark.parametrize("corruption, expected", CORRUPTIONS)
def test_corrupted_config_is_caught(store: Path, corruption: str, expected: str) -> None:
    repo = fresh_repo(store, "--backend", "onnxruntime")
    path = repo / "tiny" / "config.pbtxt"
    config = read_config(path)
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
    elif corruption == "format":  # Triton refuses an image format on anything but 3 dims
        config.input[0].format = cfg.pb().ModelInput.FORMAT_NCHW
        config.input[0].dims[:] = [8, 3, 32, 32]
    elif corruption == "labels":
        config.output[0].label_filename = "classes.txt"
    elif corruption == "warmup":
        (repo / "tiny" / "warmup" / "input").unlink()
        (repo / "tiny" / "warmup" / "input").write_bytes(b"\0" * 100)
    write_config(config, path)
    result = invoke("check-repo", str(repo))
    assert result.returncode == 3, result.stderr
    assert expected in result.stderr, result.stderr


def test_unparsable_config_is_caught(store: Path) -> None:
    repo = fresh_repo(store, "--backend", "onnxruntime")
    path = repo / "tiny" / "config.pbtxt"
    text = path.read_text()
    path.unlink()
    path.write_text(text.replace("max_batch_size: 8", "max_batch_size: eight"))
    line = invoke("check-repo", str(repo)).error(3)
    assert "model 'tiny': config.pbtxt" in line and "not a valid Triton ModelConfig" in line


def test_versions_kept_and_force_needed(tmp_path: Path, built: Callable[[str], Path]) -> None:
    store = copy_build(built("tiny"), tmp_path / "store")
    copy_build(built("tiny"), store, version="2")

    def repo_json(*args: str) -> Any:
        return invoke("repo", "tiny", "--store", str(store), "--json", *args).json()

    repo_json("--version", "1")
    assert repo_json()["version"] == "2"  # the latest build by default
    repo = store / "triton"
    assert sorted(p.name for p in (repo / "tiny").iterdir() if p.is_dir()) == ["1", "2", "warmup"]
    assert not [p for p in repo.iterdir() if p.name.startswith((".tmp-", ".old-", ".staging-"))]
    # same content again: a no-op; different content: refused without --force, the entry untouched
    assert invoke("repo", "tiny", "--store", str(store)).returncode == 0
    before = (repo / "tiny" / "config.pbtxt").read_bytes()
    line = invoke("repo", "tiny", "--store", str(store), "--backend", "python").error(2)
    assert "tiny/2 with different content" in line and "--force" in line
    assert (repo / "tiny" / "config.pbtxt").read_bytes() == before
    doc = repo_json("--backend", "python", "--force")
    assert doc["backend"] == "python" and (repo / "tiny" / "1").is_dir() and (repo / "tiny" / "2" / "model.py").is_file()
    check = invoke("check-repo", str(repo), "--json").json()
    assert check["ok"] and check["models"][0]["versions"] == ["1", "2"]


def test_package_writes_a_checked_python_repository(built: Callable[[str], Path], tmp_path: Path) -> None:
    from packager.targets import triton

    build = link_build(built("tiny"), tmp_path / "store")
    report = BuildReport.load(build)
    section = triton.package(build, report)
    assert section["backend"] == "python" and section["models"] == ["tiny"]
    for rel in section["files"]:
        assert (build / rel).is_file(), rel
    assert "triton/tiny/1/model.py" in section["files"] and "triton/tiny/config.pbtxt" in section["files"]
    assert invoke("check-repo", str(build / "triton"), "--json").json()["ok"]


def test_ensemble_wiring_is_checked(built: Callable[[str], Path], tmp_path: Path) -> None:
    """A detection build gets pre -> model -> post entries and an ensemble; broken wiring is reported."""
    from packager.targets.triton.check import check_repository
    from packager.targets.triton.repository import generate

    build = built("tiny")
    report = json.loads((build / "report.json").read_text())
    report = {**report, "task": "object-detection", "postprocessing": {"format": "yolov8", "conf_threshold": 0.3}}
    repo = tmp_path / "repo"
    section = generate(build, make_report(**report), RepoOptions(backend="onnxruntime"), repo)
    assert section["models"] == ["tiny_preprocess", "tiny", "tiny_postprocess", "tiny_ensemble"]
    assert check_repository(repo)["ok"], check_repository(repo)["summary"]
    ens_path = repo / "tiny_ensemble" / "config.pbtxt"
    ens = cfg.read(ens_path)
    steps = [s.model_name for s in ens.ensemble_scheduling.step]
    assert ens.platform == "ensemble" and steps == ["tiny_preprocess", "tiny", "tiny_postprocess"]
    del ens.ensemble_scheduling.step[2].input_map["meta"]  # post-processing input left unmapped
    ens.output[2].data_type = cfg.dtype_value("TYPE_INT64")  # classes: the post-processing gives INT32
    step0 = ens.ensemble_scheduling.step[0]
    step0.input_map["imagez"] = step0.input_map.pop(next(iter(step0.input_map)))  # a key the pre-processing lacks
    step1 = ens.ensemble_scheduling.step[1]
    key = next(iter(step1.output_map))
    step1.output_map[key + "_x"] = step1.output_map.pop(key)  # an output key the model lacks
    cfg.write(ens, ens_path)
    result = check_repository(repo)
    messages = "\n".join(p["message"] for p in result["problems"])
    assert not result["ok"]
    assert (
        "model 'tiny_ensemble': ensemble_scheduling.step[2] (tiny_postprocess) input_map: config.pbtxt says no mapping for "
        "'meta', tiny_postprocess needs input 'meta'" in messages
    )
    assert "step[0] (tiny_preprocess) input_map key: config.pbtxt says 'imagez', tiny_preprocess has no input" in messages
    assert f"step[1] (tiny) output_map key: config.pbtxt says '{key}_x', tiny has no output of that name" in messages
    assert (
        "model 'tiny_ensemble': output 'classes' data_type: config.pbtxt says TYPE_INT64, tiny_postprocess output 'classes' "
        "gives TYPE_INT32" in messages
    )

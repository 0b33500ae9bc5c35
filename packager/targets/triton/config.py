"""Triton `config.pbtxt` as the protobuf `ModelConfig` message that tritonclient ships, read and written with
`google.protobuf.text_format` (never assembled as text)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import EnvironmentProblem, ValidationFailed

CONFIG_FILE = "config.pbtxt"

# numpy dtype name <-> Triton DataType enum name
NUMPY_TO_TRITON = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "object": "TYPE_STRING",
}
TRITON_TO_NUMPY = {v: k for k, v in NUMPY_TO_TRITON.items()}
# ONNX TensorProto element types -> Triton
ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
    16: "TYPE_BF16",
}


@functools.lru_cache(maxsize=1)
def pb() -> ModuleType:
    """tritonclient's `model_config_pb2`, loaded from its file so that tritonclient's grpc extra is not needed."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem("tritonclient is not installed", "pip install 'pack-models[triton]' (tritonclient[http])")
    path = Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        raise EnvironmentProblem(f"tritonclient has no {path.name}", "reinstall tritonclient[http]>=2.40")
    mspec = importlib.util.spec_from_file_location("pack_triton_model_config_pb2", path)
    if mspec is None or mspec.loader is None:  # never for a .py file; says so instead of an AttributeError
        raise EnvironmentProblem(f"tritonclient's {path.name} cannot be imported", "reinstall tritonclient[http]>=2.40")
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    return module


def dtype_name(value: int) -> str:
    return str(pb().DataType.Name(value))


def dtype_value(name: str) -> int:
    return int(pb().DataType.Value(name))


def triton_dtype(numpy_dtype: str) -> str:
    try:
        return NUMPY_TO_TRITON[str(numpy_dtype)]
    except KeyError:
        raise ValidationFailed(f"dtype {numpy_dtype} has no Triton equivalent") from None


def new_config() -> Any:
    return pb().ModelConfig()


def to_text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def write(config: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_text(config))
    tmp.replace(path)


def parse(text: str, where: str = CONFIG_FILE) -> Any:
    from google.protobuf import text_format

    config = new_config()
    try:
        text_format.Parse(text, config)
    except (text_format.ParseError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise ValidationFailed(f"{where}: not a valid Triton ModelConfig: {str(exc)[:200]}") from None
    return config


def read(path: Path) -> Any:
    """A config.pbtxt: a plain file (not a link) of UTF-8 text up to 16 MiB, parsed; ValidationFailed otherwise."""
    from ...safeio import read_file, utf8

    return parse(utf8(read_file(path), str(path)), str(path))


def version_folders(entry: Path) -> list[str]:
    """The version folders of a model entry (ASCII-digit names, as Triton reads them), lowest first."""
    return sorted((p.name for p in entry.iterdir() if p.is_dir() and p.name.isascii() and p.name.isdigit()), key=int)


def to_json(config: Any) -> str:
    """The JSON form Triton's load API takes in `parameters.config`."""
    from google.protobuf import json_format

    return json_format.MessageToJson(config, preserving_proto_field_name=True)


def set_parameter(config: Any, key: str, value: Any) -> None:
    config.parameters[key].string_value = str(value)


def get_parameter(config: Any, key: str, default: str | None = None) -> str | None:
    if key in config.parameters:
        return str(config.parameters[key].string_value)
    return default


def kind_of(config: Any) -> str:
    """onnxruntime | pytorch | torch_aoti | python | ensemble | <other backend or platform>."""
    platform, backend = config.platform, config.backend
    if platform == "ensemble":
        return "ensemble"
    if platform == "torch_aoti":
        return "torch_aoti"
    if backend == "onnxruntime" or platform == "onnxruntime_onnx":
        return "onnxruntime"
    if backend == "pytorch" or platform == "pytorch_libtorch":
        return "pytorch"
    if backend == "python":
        return "python"
    return backend or platform or "unknown"


DEFAULT_FILES = {"onnxruntime": "model.onnx", "pytorch": "model.pt", "torch_aoti": "model.pt2", "python": "model.py"}


def model_filename(config: Any) -> str | None:
    kind = kind_of(config)
    if config.default_model_filename:
        return str(config.default_model_filename)
    return DEFAULT_FILES.get(kind)


def instance_group(config: Any, count: int, gpu: bool) -> None:
    """One instance group of `count` instances, on the GPU or the CPU."""
    group = config.instance_group.add()
    group.count = count
    group.kind = pb().ModelInstanceGroup.KIND_GPU if gpu else pb().ModelInstanceGroup.KIND_CPU

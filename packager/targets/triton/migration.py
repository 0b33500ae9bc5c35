"""A Triton model folder serving TorchScript (`platform: "pytorch_libtorch"`), as a migration source (`pack migrate`).

`config.pbtxt` gives the model's inputs and outputs (names, types, dims; the batch axis when `max_batch_size` > 0)
and its serving settings (dynamic batching's delay, the instance count); the highest version folder holding the model
file is migrated. A TorchScript file loads without running Python code. An `onnxruntime_onnx` folder is in today's
format already and is refused with what to do instead.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from ...errors import UsageError, ValidationFailed
from ..capabilities import Request
from ..migration import Extracted, MigrationSource
from . import config as cfg


def _model_path(folder: Path, conf: Any) -> Path | None:
    name = cfg.model_filename(conf) or "model.pt"
    for version in reversed(cfg.version_folders(folder)):
        candidate = folder / version / name
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def _tensors(entries: Any, batched: bool, where: str, inputs: bool) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        dims = [int(d) for d in entry.dims]
        dtype = cfg.TRITON_TO_NUMPY.get(cfg.dtype_name(entry.data_type))
        if dtype is None or dtype == "object":
            raise UsageError(f"{where}: {entry.name} is {cfg.dtype_name(entry.data_type)}, which pack cannot export")
        item: dict[str, Any] = {"name": entry.name, "dtype": dtype}
        if inputs:
            if any(d < 1 for d in dims):
                raise UsageError(
                    f"{where}: input {entry.name} has a variable dimension ({dims}) and no example size",
                    f"give its example shape with --input {entry.name}:SHAPE",
                )
            item["shape"] = ([1] if batched else []) + dims
            if batched:
                item["dynamic_axes"] = [0]
        out.append(item)
    return out


def read_source(path: Path) -> MigrationSource | None:
    """The facts of a Triton model folder (None for a path that is not a folder with a config.pbtxt)."""
    if not path.is_dir() or not (path / cfg.CONFIG_FILE).is_file():
        return None
    where = str(path / cfg.CONFIG_FILE)
    conf = cfg.read(path / cfg.CONFIG_FILE)
    kind = cfg.kind_of(conf)
    if kind == "onnxruntime":
        raise UsageError(
            f"{path} serves an ONNX file through onnxruntime: it is in today's format already",
            "build the PyTorch model it came from with `pack build`, or keep serving the ONNX file",
        )
    if kind != "pytorch":
        raise UsageError(f"{where} is platform/backend {kind!r}; pack migrates pytorch_libtorch (TorchScript) folders")
    model = _model_path(path, conf)
    if model is None:
        raise ValidationFailed(f"{path} has no version folder with {cfg.model_filename(conf) or 'model.pt'}", "check the folder")
    batched = conf.max_batch_size > 0
    settings: dict[str, Any] = {}
    if batched:
        settings["batch_size"] = int(conf.max_batch_size)
    if conf.HasField("dynamic_batching"):
        settings["max_batch_delay_ms"] = int(conf.dynamic_batching.max_queue_delay_microseconds) // 1000
    counts = [int(g.count) for g in conf.instance_group if g.count > 0]
    if counts:
        settings["workers"] = sum(counts)
    outputs = _tensors(conf.output, batched, where, False)
    h = hashlib.sha256()
    with model.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return MigrationSource(
        path=path,
        sha256=h.hexdigest(),
        reader="triton",
        kind=f"Triton pytorch_libtorch folder (version {model.parent.name})",
        model_name=conf.name or path.name,
        handler="pytorch_libtorch",
        serialized_file=str(model.relative_to(path)),
        inputs=_tensors(conf.input, batched, where, True),
        outputs=[o["name"] for o in outputs],
        settings=settings,
    )


def extract_source(source: MigrationSource, dest: Path) -> Extracted:
    model = dest / "model.pt"
    shutil.copyfile(source.path / source.serialized_file, model, follow_symlinks=False)
    return Extracted(model)


def ask_old(url: str, model: str, request: Request, names: list[str], outputs: list[str]) -> dict[str, Any]:
    """Triton's v2 infer through tritonclient: the request's tensors under the old model's input names."""
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    from ...errors import EnvironmentProblem
    from .smoke import _infer_client

    httpclient, client = _infer_client(url, 120)
    inputs = []
    for name, array in zip(names, request.tensors, strict=True):
        item = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        inputs.append(item)
    try:
        result = client.infer(model, inputs, outputs=[httpclient.InferRequestedOutput(n) for n in outputs])
    except (InferenceServerException, OSError) as exc:
        raise EnvironmentProblem(f"asking {model} at {url}: {exc}", "check --against and that the old server serves it") from None
    finally:
        client.close()
    return {name: result.as_numpy(name) for name in outputs}

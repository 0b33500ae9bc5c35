"""Triton model repository entries generated from a build's real I/O, and their atomic installation.

Layout: `<repo>/<model>/config.pbtxt`, `<repo>/<model>/warmup/<input>` (raw sample data for model_warmup) and
`<repo>/<model>/<version>/model.onnx | model.pt | model.py (+ the model file it runs)`. Other versions already in the
repository are kept. A python-backend model.py is a file of pack's serving runtime (the `handlers` package), copied
with the runtime modules it imports beside it. Builds whose task has Triton steps (packager/serve/tasks.py; YOLO detection)
get the endpoint `<name>_ensemble` (image bytes in, detections out) beside the model: the ensemble of pre-processing,
model and post-processing on a native backend, one python model running all three on the python backend
(detection.py).

This module generates the entries; install.py moves them into a repository atomically (and back on rollback).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UsageError
from ...report.build_report import BuildReport, TensorRecord
from ...report.formats import FILES
from ...report.formats import served as serve_of
from ...report.store import link_or_copy
from ...serve.tasks import IMAGE, TRITON_MODEL, has_image_input, read_runtime, shipped_files, task_for
from ...serve.worker import SIGNED
from . import config as cfg
from .detection import ENSEMBLES, one_instance

BACKENDS = ("python", "onnxruntime", "pytorch", "torch_aoti")
NATIVE_FORMAT = {"onnxruntime": "onnx", "pytorch": "torchscript", "torch_aoti": "aoti"}  # what each native backend loads
DEFAULT_MAX_BATCH = 8
LABELS_FILE = "labels.txt"  # beside config.pbtxt, named by the classifier output's label_filename


@dataclass
class RepoOptions:
    backend: str = "python"
    fmt: str = "onnx"  # python backend: which export model.py runs (onnx | torchscript | pt2 | aoti)
    instances: int = 1
    max_batch: int | None = None  # None: DEFAULT_MAX_BATCH when the build has a batch axis, else 0
    max_queue_delay_us: int = 1000
    gpu: bool | None = None  # None: detect
    threads: int = 0  # onnxruntime intra-op / torch threads per instance (0: the library's default)
    signature: tuple[Path, Path] | None = None  # (model.sig, public key): pack's model.py checks the file it loads

    def __post_init__(self) -> None:
        if self.backend == "pytorch_libtorch":
            self.backend = "pytorch"
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown Triton backend {self.backend!r}", f"use one of {', '.join(BACKENDS)}")
        if self.fmt not in FILES:
            raise UsageError(f"unknown format {self.fmt!r}", f"use one of {', '.join(FILES)}")
        if self.backend in NATIVE_FORMAT:
            self.fmt = NATIVE_FORMAT[self.backend]
            if self.signature is not None:
                raise UsageError(
                    f"--require-signature: Triton's {self.backend} backend loads the file itself, so no signature check "
                    "can run inside the server",
                    "deploy with --backend python (pack's model.py checks the signature before it loads the export)",
                )
        from ...serve.settings import SETTINGS  # the settings' one range, whatever gave the value (a flag, the build, tune)

        SETTINGS["workers"].check(self.instances)
        SETTINGS["batch_size"].check(0 if self.max_batch is None else self.max_batch)
        SETTINGS["max_batch_delay_ms"].check(self.max_queue_delay_us // 1000)
        SETTINGS["threads"].check(self.threads)


def auto_backend(report: BuildReport, fmt: str | None, server_backends: list[str] | None) -> str:
    """`--backend auto`, the backend chosen for speed: the native backend of the served export (onnxruntime for
    ONNX, pytorch for TorchScript, torch_aoti for an AOTInductor package) where the server has it (None: it is not
    known, as on a server at --url: the native one is tried first), else python, which runs any export."""
    native = {f: b for b, f in NATIVE_FORMAT.items()}.get(serve_of(report, fmt).format)
    if native is None or (server_backends is not None and native not in server_backends):
        return "python"
    return native


def has_gpu() -> bool:
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def is_detection(report: BuildReport) -> bool:
    """Whether the build's task serves an endpoint of Triton steps beside the model (YOLO today: detection.py)."""
    return task_for(report).triton is not None


def model_names(report: BuildReport, backend: str) -> list[str]:
    """Repository entries of a build served on `backend`, in load order (composing models before the endpoint)."""
    return task_for(report).model_names(report.name, one_instance=one_instance(backend))


def serving_model(report: BuildReport, backend: str) -> str:
    """The entry a client calls: the detection endpoint for detection models, the model itself otherwise."""
    return model_names(report, backend)[-1]


def triton_version(report: BuildReport) -> str:
    from ...report.names import check_version

    return check_version(report.version)


def _batchable(report: BuildReport) -> bool:
    """max_batch_size only when every input's batch is its axis 0 (and every output's axis 0 is dynamic)."""
    return report.batchable


def _dims(tensor: TensorRecord, batched: bool) -> list[int]:
    dims = tensor.served_dims()  # -1 where the size is dynamic or depends on the data
    return dims[1:] if batched else dims


def io_names(report: BuildReport, backend: str) -> tuple[list[str], list[str]]:
    """Config names of the inputs and outputs: the build's names; `<name>__<index>` for the libtorch backend; for
    torch_aoti the ordinal names Triton derives from the package's call spec (`INPUT__<i>`, `OUTPUT__<i>`)."""
    inputs = [t.name for t in report.inputs]
    outputs = [t.name for t in report.outputs]
    if backend == "pytorch":
        inputs = [f"{n}__{i}" for i, n in enumerate(inputs)]
        outputs = [f"{n}__{i}" for i, n in enumerate(outputs)]
    if backend == "torch_aoti":
        inputs = [f"INPUT__{i}" for i in range(len(inputs))]
        outputs = [f"OUTPUT__{i}" for i in range(len(outputs))]
    return inputs, outputs


def _max_batch(report: BuildReport, ropts: RepoOptions) -> int:
    """max_batch_size: --max-batch, else DEFAULT_MAX_BATCH for a build with a batch axis (0 for torch_aoti, which does
    not batch); UsageError for a batch size the backend or the build cannot take."""
    batchable = _batchable(report)
    max_batch = (
        ropts.max_batch
        if ropts.max_batch is not None
        else (DEFAULT_MAX_BATCH if batchable and ropts.backend != "torch_aoti" else 0)
    )
    if max_batch > 0 and ropts.backend == "torch_aoti":
        raise UsageError(
            f"--max-batch {max_batch}: Triton's torch_aoti platform does not batch yet (its README)",
            "use --max-batch 0 (the batch axis stays a -1 dim of each request), or another backend",
        )
    if max_batch > 0 and not batchable:
        fixed = [t.name for t in report.inputs if t.batch_axis != 0] + [t.name for t in report.outputs if 0 not in t.dynamic_axes]
        raise UsageError(
            f"--max-batch {max_batch}: {report.name} has no dynamic batch axis ({', '.join(fixed)} fixed)",
            "use --max-batch 0, or rebuild with a dynamic first axis",
        )
    return max_batch


def _set_backend(config: Any, ropts: RepoOptions) -> None:
    """backend / platform and the file it loads (the python backend: the export its model.py runs)."""
    if ropts.backend == "onnxruntime":
        config.backend = "onnxruntime"
        config.default_model_filename = "model.onnx"
    elif ropts.backend == "pytorch":
        config.platform = "pytorch_libtorch"
        config.default_model_filename = "model.pt"
    elif ropts.backend == "torch_aoti":
        config.backend = "pytorch"
        config.platform = "torch_aoti"
        config.default_model_filename = "model.pt2"
    else:
        config.backend = "python"
        cfg.set_parameter(config, "pack_format", ropts.fmt)
        cfg.set_parameter(config, "pack_model_file", FILES[ropts.fmt])
    if ropts.threads:  # the name each backend reads: pack's runner, or Triton's onnxruntime backend
        cfg.set_parameter(config, "pack_threads" if ropts.backend == "python" else "intra_op_thread_count", ropts.threads)


def _add_tensors(collection: Any, tensors: Sequence[TensorRecord], names: list[str], batched: bool) -> None:
    for tensor, cname in zip(tensors, names, strict=True):
        entry = collection.add()
        entry.name = cname
        entry.data_type = cfg.dtype_value(cfg.triton_dtype(tensor.dtype))
        entry.dims.extend(_dims(tensor, batched))


def image_format(report: BuildReport, batched: bool) -> str | None:
    """FORMAT_NCHW or FORMAT_NHWC for the input of an image task (one 4-D float input with 3 channels), as its axes
    are laid out; None otherwise. Triton accepts a format only on 3 dims, so an entry without batching (its dims keep
    the batch axis) carries none."""
    if not batched or task_for(report).sample != IMAGE or not has_image_input(report):
        return None
    tensor = report.inputs[0]
    if not str(tensor.dtype).startswith("float"):
        return None
    return "FORMAT_NCHW" if tensor.shape[1] == 3 else "FORMAT_NHWC" if tensor.shape[3] == 3 else None


def classification_labels(report: BuildReport, build_dir: Path | None) -> Path | None:
    """The build's labels file when Triton's classification extension can use it: an image classifier with one
    output and the labels recorded by the build."""
    if build_dir is None or not report.labels or report.task != "image-classification" or len(report.outputs) != 1:
        return None
    path = build_dir / report.labels
    return path if path.is_file() else None


def _warmup(config: Any, report: BuildReport, in_names: list[str], batched: bool, build_dir: Path | None) -> dict[str, bytes]:
    """A model_warmup from the build's recorded sample (when the build folder has it all); {file name: raw bytes}."""
    warmup_files: dict[str, bytes] = {}
    samples = report.samples.inputs
    if build_dir is None or len(samples) != len(report.inputs) or not all((build_dir / s).is_file() for s in samples):
        return warmup_files
    warmup = config.model_warmup.add()
    warmup.name = "pack_sample"
    warmup.batch_size = 1
    for tensor, cname, rel in zip(report.inputs, in_names, samples, strict=True):
        array = np.load(build_dir / rel)
        one = array[:1] if batched else array
        item = warmup.inputs[cname]
        item.data_type = cfg.dtype_value(cfg.triton_dtype(tensor.dtype))
        item.dims.extend(list(one.shape[1:] if batched else one.shape))
        item.input_data_file = cname
        warmup_files[cname] = np.ascontiguousarray(one).tobytes()
    return warmup_files


def model_config(report: BuildReport, ropts: RepoOptions, build_dir: Path | None = None) -> tuple[Any, dict[str, bytes]]:
    """The ModelConfig of the model itself and its warmup files ({file name: raw bytes})."""
    name = report.name
    max_batch = _max_batch(report, ropts)
    batched = max_batch > 0
    gpu = has_gpu() if ropts.gpu is None else ropts.gpu
    config = cfg.new_config()
    config.name = name
    _set_backend(config, ropts)
    config.max_batch_size = max_batch
    config.version_policy.latest.num_versions = 1
    in_names, out_names = io_names(report, ropts.backend)
    _add_tensors(config.input, report.inputs, in_names, batched)
    _add_tensors(config.output, report.outputs, out_names, batched)
    fmt = image_format(report, batched)
    if fmt is not None:
        config.input[0].format = cfg.pb().ModelInput.Format.Value(fmt)
    if classification_labels(report, build_dir) is not None:
        config.output[0].label_filename = LABELS_FILE
    if batched:
        sizes = sorted({b for b in report.batch_sizes if 1 < b <= max_batch} | {max_batch})
        config.dynamic_batching.preferred_batch_size.extend(sizes)
        config.dynamic_batching.max_queue_delay_microseconds = ropts.max_queue_delay_us
    cfg.instance_group(config, ropts.instances, gpu)
    cfg.set_parameter(config, "pack_build", f"{name}:{report.version}")
    return config, _warmup(config, report, in_names, batched, build_dir)


def _copy_runtime(entry: str, vdir: Path) -> None:
    """The runtime file `entry` as the version's model.py, and the runtime modules it imports beside it (fresh
    copies, never links into the installed package)."""
    for name in shipped_files(entry):
        (vdir / ("model.py" if name == entry else name)).write_bytes(read_runtime(name))


def report_section(section: dict[str, Any], folder: str) -> dict[str, Any]:
    """report.json's `targets.triton`: what generate() wrote into build_dir/<folder>/ (paths relative to the build)."""
    keep = ("backend", "format", "version", "models", "serving_model", "max_batch_size", "settings")
    return {"repository": folder, **{k: section[k] for k in keep}, "files": [f"{folder}/{f}" for f in section["files"]]}


def _sign_parameters(configs: Any, served: str) -> None:
    """Where pack's model.py loads the export, the parameters that make it check the signature first."""
    for config in configs:
        if cfg.get_parameter(config, "pack_format"):
            for key, value in zip(("pack_signature", "pack_public_key", "pack_signed_name"), (*SIGNED, served), strict=True):
                cfg.set_parameter(config, key, value)


def _write_model(served: Path, vdir: Path, kind: str, ropts: RepoOptions) -> None:
    """The served file a model entry loads: as the native backend's file, or beside pack's model.py (with the build's
    signature and the public key when the deploy requires one)."""
    if kind in NATIVE_FORMAT:
        link_or_copy(served, vdir / cfg.DEFAULT_FILES[kind])
        return
    _copy_runtime(TRITON_MODEL, vdir)
    link_or_copy(served, vdir / FILES[ropts.fmt])
    for source, staged in zip(ropts.signature or (), SIGNED, strict=False):
        shutil.copyfile(source, vdir / staged)


def generate(build_dir: Path, report: BuildReport, ropts: RepoOptions, dest: Path) -> dict[str, Any]:
    """Write every repository entry of the build into `dest` (a fresh folder); return a description."""
    version = triton_version(report)
    served = serve_of(report, ropts.fmt).file  # a kept ONNX variant's file, else the export
    detector, warmup = model_config(report, ropts, build_dir)
    configs: dict[str, Any] = {detector.name: detector}
    steps = task_for(report).triton
    if steps is not None:
        configs.update(ENSEMBLES[steps.layout](report, detector, ropts.backend, ropts.instances))
    files: list[str] = []
    if ropts.signature is not None:
        _sign_parameters(configs.values(), served)
    for name in model_names(report, ropts.backend):
        config = configs[name]
        entry = dest / name
        vdir = entry / version
        vdir.mkdir(parents=True, exist_ok=True)
        cfg.write(config, entry / cfg.CONFIG_FILE)
        files.append(f"{name}/{cfg.CONFIG_FILE}")
        kind = cfg.kind_of(config)
        role = cfg.get_parameter(config, "pack_role")
        if name == detector.name or cfg.get_parameter(config, "pack_steps"):  # a model, or the endpoint running it
            _write_model(build_dir / served, vdir, kind, ropts)
            labels = classification_labels(report, build_dir) if name == detector.name else None
            if labels is not None:
                link_or_copy(labels, entry / LABELS_FILE)
                files.append(f"{name}/{LABELS_FILE}")
            if warmup and name == detector.name:
                (entry / "warmup").mkdir(exist_ok=True)
                for fname, data in warmup.items():
                    (entry / "warmup" / fname).write_bytes(data)
                    files.append(f"{name}/warmup/{fname}")
        elif steps is not None and role in ("preprocess", "postprocess"):
            _copy_runtime(getattr(steps, role), vdir)
        files.extend(str(p.relative_to(dest)) for p in sorted(vdir.iterdir()))
    return {
        "backend": ropts.backend,
        "format": ropts.fmt,
        "served_file": served,
        "version": version,
        "models": model_names(report, ropts.backend),
        "serving_model": serving_model(report, ropts.backend),
        "max_batch_size": detector.max_batch_size,
        "instances": ropts.instances,
        "settings": {
            "instances": ropts.instances,
            "max_batch": detector.max_batch_size,
            "max_queue_delay_us": ropts.max_queue_delay_us,
            "threads": ropts.threads,
        },
        "files": files,
    }

"""Offline validation of a Triton model repository: every config.pbtxt, parsed back with protobuf, against its files.

Checked per entry: the config parses and names its folder; the version folders the version policy serves have the
file the backend loads; input/output names, data types and dims against the ONNX graph (onnxruntime, python backend
running ONNX) or a TorchScript run (pytorch, python backend running TorchScript); batch axes against max_batch_size;
model_warmup data files; ensemble wiring (every composing input mapped, every tensor produced, types and shapes
agree). Each problem names the model, the field and both values.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UsageError, ValidationFailed
from . import config as cfg

log = logging.getLogger(__name__).info


@dataclass
class Problem:
    model: str
    field: str
    expected: str  # what the config says
    found: str  # what the model files say
    version: str | None = None
    severity: str = "error"

    def line(self) -> str:
        where = f"model {self.model!r}" + (f" version {self.version}" if self.version else "")
        return f"{where}: {self.field}: config.pbtxt says {self.expected}, {self.found}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "field": self.field,
            "config": self.expected,
            "found": self.found,
            "severity": self.severity,
            "message": self.line(),
        }


@dataclass
class TensorInfo:
    name: str
    dtype: str  # Triton TYPE_*
    shape: list[int]  # full shape, -1 for dynamic


def _fmt(dims: list[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


# --- what the model files say -------------------------------------------------------------------------------


def onnx_io(path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def info(value: Any) -> TensorInfo:
        ttype = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim]
        return TensorInfo(value.name, cfg.ONNX_TO_TRITON.get(ttype.elem_type, f"ONNX type {ttype.elem_type}"), dims)

    inputs = [info(v) for v in model.graph.input if v.name not in initializers]
    outputs = [info(v) for v in model.graph.output]
    return inputs, outputs


def _concrete_inputs(config: Any) -> list[np.ndarray] | None:
    """Zero inputs for one TorchScript run: warmup dims where given, config dims otherwise (-1 -> 1)."""
    warm = {}
    if config.model_warmup:
        warm = {k: list(v.dims) for k, v in config.model_warmup[0].inputs.items()}
    arrays = []
    for entry in config.input:
        dims = warm.get(entry.name) or [1 if d < 0 else d for d in entry.dims]
        shape = [1, *dims] if config.max_batch_size > 0 else dims
        dtype = cfg.TRITON_TO_NUMPY.get(cfg.dtype_name(entry.data_type))
        if dtype is None or dtype == "object":
            return None
        arrays.append(np.zeros(shape, dtype=dtype))
    return arrays


def torchscript_io(path: Path, config: Any) -> tuple[list[str], list[TensorInfo] | None, str | None]:
    """(forward argument names, outputs of one run on zero inputs or None, why the run failed)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")
    args = [a.name for a in module.forward.schema.arguments][1:]
    arrays = _concrete_inputs(config)
    if arrays is None:
        return args, None, "inputs of string type cannot be synthesised"
    try:
        with torch.inference_mode():
            out = module(*[torch.from_numpy(a) for a in arrays])
    except Exception as exc:  # noqa: BLE001 - reported as a problem
        return args, None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
    flat: list[Any] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        else:
            flat.append(v)

    walk(out)
    outputs = []
    for i, t in enumerate(flat):
        dtype = cfg.NUMPY_TO_TRITON.get(str(t.detach().numpy().dtype) if hasattr(t, "detach") else "object", "TYPE_INVALID")
        outputs.append(TensorInfo(f"#{i}", dtype, list(t.shape)))
    return args, outputs, None


def program_io(path: Path, config: Any, fmt: str) -> tuple[int, list[TensorInfo] | None, str | None]:
    """(input count from the file's call spec, outputs of one run on zero inputs or None, why the run failed) for an
    ExportedProgram (pt2) or an AOTInductor package (aoti)."""
    import torch
    from torch.utils import _pytree

    from ...export.capture import captured

    with captured():
        if fmt == "aoti":
            module = torch._inductor.aoti_load_package(str(path))
            count = _pytree.treespec_loads(module.loader.get_call_spec()[0]).num_leaves
        else:
            module = torch.export.load(str(path)).module()
            count = len([n for n in module.graph.nodes if n.op == "placeholder"])
    arrays = _concrete_inputs(config)
    if arrays is None:
        return count, None, "inputs of string type cannot be synthesised"
    try:
        with captured(), torch.inference_mode():
            out = module(*[torch.from_numpy(a) for a in arrays])
    except Exception as exc:  # noqa: BLE001 - reported as a problem
        return count, None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
    out = out if isinstance(out, (list, tuple)) else [out]
    return (
        count,
        [
            TensorInfo(f"#{i}", cfg.NUMPY_TO_TRITON.get(str(t.detach().numpy().dtype), "TYPE_INVALID"), list(t.shape))
            for i, t in enumerate(out)
        ],
        None,
    )


# --- comparisons ---------------------------------------------------------------------------------------------

RUN_SOURCES = ("a TorchScript run", "a run of")  # shapes from one run: concrete sizes where the config allows any


class EntryChecker:
    def __init__(self, repo: Path, name: str, config: Any):
        self.repo, self.name, self.config = repo, name, config
        self.problems: list[Problem] = []
        self.version: str | None = None

    def add(self, field: str, expected: Any, found: Any, severity: str = "error") -> None:
        self.problems.append(Problem(self.name, field, str(expected), str(found), self.version, severity))

    def full_shape(self, dims: list[int]) -> list[int]:
        return [-1, *dims] if self.config.max_batch_size > 0 else list(dims)

    def compare_tensor(self, kind: str, entry: Any, actual: TensorInfo, source: str, exact_rank: bool = True) -> None:
        field = f"{kind} {entry.name!r}"
        ctype = cfg.dtype_name(entry.data_type)
        if ctype != actual.dtype:
            self.add(f"{field} data_type", ctype, f"{source} has {actual.dtype}")
        dims = list(entry.dims)
        if self.config.max_batch_size > 0:
            if not actual.shape:
                self.add(
                    "max_batch_size", self.config.max_batch_size, f"{source} {kind} {actual.name!r} is a scalar (no batch axis)"
                )
                return
            if actual.shape[0] != -1 and not (source.startswith(RUN_SOURCES) and actual.shape[0] == 1):
                self.add(
                    "max_batch_size",
                    self.config.max_batch_size,
                    f"{source} {kind} {actual.name!r} has no batch axis (first axis fixed at {actual.shape[0]}; use max_batch_size: 0)",
                )
                return
            model_dims = actual.shape[1:]
        else:
            model_dims = actual.shape
        if len(dims) != len(model_dims):
            self.add(f"{field} dims", _fmt(dims), f"{source} has {_fmt(model_dims)} (rank {len(model_dims)}, not {len(dims)})")
            return
        for c, m in zip(dims, model_dims):
            if m == -1 or c == m:
                continue
            if source.startswith(RUN_SOURCES) and c == -1:
                continue  # a run has concrete sizes where the config allows any
            self.add(f"{field} dims", _fmt(dims), f"{source} has {_fmt(model_dims)}")
            return

    def compare_io(
        self, model_inputs: list[TensorInfo], model_outputs: list[TensorInfo], source: str, by_name: bool = True
    ) -> None:
        for kind, entries, actual in (("input", self.config.input, model_inputs), ("output", self.config.output, model_outputs)):
            if by_name:
                known = {t.name: t for t in actual}
                for entry in entries:
                    if entry.name not in known:
                        self.add(
                            f"{kind} name",
                            repr(entry.name),
                            f"{source} has no {kind} of that name (its {kind}s: {', '.join(known) or 'none'})",
                        )
                        continue
                    self.compare_tensor(kind, entry, known[entry.name], source)
                named = {e.name for e in entries}
                for t in actual:
                    if t.name not in named and kind == "input":
                        self.add(f"{kind} name", "no such input", f"{source} needs input {t.name!r}")
            else:
                if len(entries) != len(actual):
                    self.add(f"{kind} count", len(entries), f"{source} has {len(actual)}")
                for entry, t in zip(entries, actual):
                    self.compare_tensor(kind, entry, t, source)

    def check_libtorch_names(self, forward_args: list[str]) -> None:
        pattern = re.compile(r"^.+__(\d+)$")
        for i, entry in enumerate(self.config.input):
            m = pattern.match(entry.name)
            if entry.name in forward_args:
                continue
            if not m:
                self.add(
                    f"input {entry.name!r} name",
                    repr(entry.name),
                    f"model.pt forward() takes {forward_args}; name it after an argument or <name>__<index>",
                )
            elif int(m.group(1)) >= len(forward_args):
                self.add(
                    f"input {entry.name!r} name", repr(entry.name), f"model.pt forward() takes only {len(forward_args)} inputs"
                )
        indices = []
        for entry in self.config.output:
            m = pattern.match(entry.name)
            if not m:
                self.add(
                    f"output {entry.name!r} name", repr(entry.name), "the libtorch backend needs <name>__<index> output names"
                )
            else:
                indices.append(int(m.group(1)))
        if indices and sorted(indices) != list(range(len(indices))):
            self.add("output names", sorted(indices), f"output indices must be 0..{len(indices) - 1}")
        if len(self.config.input) != len(forward_args):
            self.add(
                "input count", len(self.config.input), f"model.pt forward() takes {len(forward_args)} ({', '.join(forward_args)})"
            )

    def check_torchscript(self, path: Path, by_position_names: bool) -> None:
        try:
            args, outputs, why = torchscript_io(path, self.config)
        except Exception as exc:  # noqa: BLE001 - a corrupt file is a finding, not a crash
            self.add(
                "model file", path.name, f"it is not a loadable TorchScript file ({type(exc).__name__}: {str(exc).strip()[:160]})"
            )
            return
        if by_position_names:
            self.check_libtorch_names(args)
        elif len(self.config.input) != len(args):
            self.add("input count", len(self.config.input), f"{path.name} forward() takes {len(args)} ({', '.join(args)})")
        if outputs is None:
            self.add(
                "inputs",
                "the declared inputs",
                f"a TorchScript run of {path.name} on them failed: {why}",
                "warning" if "string" in (why or "") else "error",
            )
            return
        if len(outputs) != len(self.config.output):
            self.add("output count", len(self.config.output), f"a TorchScript run of {path.name} returns {len(outputs)}")
        for entry, t in zip(self.config.output, outputs):
            self.compare_tensor("output", entry, t, f"a TorchScript run of {path.name}")

    def check_program(self, path: Path, fmt: str) -> None:
        """An ExportedProgram or AOTInductor package: input count from its call spec, outputs from one run."""
        try:
            count, outputs, why = program_io(path, self.config, fmt)
        except Exception as exc:  # noqa: BLE001 - a corrupt file is a finding, not a crash
            self.add("model file", path.name, f"it is not a loadable {fmt} file ({type(exc).__name__}: {str(exc).strip()[:160]})")
            return
        if len(self.config.input) != count:
            self.add("input count", len(self.config.input), f"{path.name}'s call spec takes {count}")
        source = f"a run of {path.name}"
        if outputs is None:
            self.add("inputs", "the declared inputs", f"a run of {path.name} on them failed: {why}")
            return
        if len(outputs) != len(self.config.output):
            self.add("output count", len(self.config.output), f"a run of {path.name} returns {len(outputs)}")
        for entry, t in zip(self.config.output, outputs):
            self.compare_tensor("output", entry, t, source)

    def check_aoti_names(self) -> None:
        """Triton's torch_aoti platform addresses tensors by call-spec position (INPUT__i / OUTPUT__i) or by path
        (ARGS[i], KWARGS[name], RESULT[...]); it does not batch (max_batch_size 0)."""
        if self.config.max_batch_size != 0:
            self.add("max_batch_size", 0, f"{self.config.max_batch_size}: Triton's torch_aoti platform does not batch yet")
        for kind, entries, prefix in (("input", self.config.input, "INPUT"), ("output", self.config.output, "OUTPUT")):
            ordinal = re.compile(rf"^{prefix}__(\d+)$")
            path = re.compile(
                r"^(ARGS|KWARGS)\[[^\]\s\"]+\](\[[^\]\s\"]+\])*$" if kind == "input" else r"^RESULT(\[[^\]\s\"]+\])*$"
            )
            indices = []
            for entry in entries:
                m = ordinal.match(entry.name)
                if m:
                    indices.append(int(m.group(1)))
                elif not path.match(entry.name):
                    self.add(
                        f"{kind} {entry.name!r} name", f"{prefix}__<index> or a call-spec path", "torch_aoti cannot address it"
                    )
            if indices and sorted(indices) != list(range(len(indices))):
                self.add(f"{kind} names", f"{prefix}__0..{len(indices) - 1}", sorted(indices))

    def check_warmup(self) -> None:
        inputs = {e.name: e for e in self.config.input}
        for warm in self.config.model_warmup:
            for name, item in warm.inputs.items():
                field = f"model_warmup {warm.name!r} input {name!r}"
                if name not in inputs:
                    self.add(field, "an input of that name", f"the config has no input {name!r}")
                    continue
                if item.data_type != inputs[name].data_type:
                    self.add(
                        f"{field} data_type",
                        cfg.dtype_name(item.data_type),
                        f"the input is {cfg.dtype_name(inputs[name].data_type)}",
                    )
                cdims = list(inputs[name].dims)
                wdims = list(item.dims)
                if len(cdims) != len(wdims) or any(c not in (-1, w) for c, w in zip(cdims, wdims)):
                    self.add(f"{field} dims", _fmt(wdims), f"the input's dims are {_fmt(cdims)}")
                if item.input_data_file:
                    path = self.repo / self.name / "warmup" / item.input_data_file
                    if not path.is_file():
                        self.add(f"{field} input_data_file", item.input_data_file, f"{path} does not exist")
                        continue
                    npdtype = cfg.TRITON_TO_NUMPY.get(cfg.dtype_name(item.data_type))
                    if npdtype and npdtype != "object":
                        want = int(np.prod(wdims, dtype=np.int64)) * np.dtype(npdtype).itemsize
                        if path.stat().st_size != want:
                            self.add(
                                f"{field} input_data_file",
                                f"{_fmt(wdims)} {cfg.dtype_name(item.data_type)} ({want} bytes)",
                                f"{path.name} has {path.stat().st_size} bytes",
                            )


def served_versions(config: Any, versions: list[str]) -> list[str]:
    ordered = sorted(versions, key=int)
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return ordered
    if which == "specific":
        return [v for v in ordered if int(v) in set(policy.specific.versions)]
    n = policy.latest.num_versions if which == "latest" else 1
    return ordered[-max(n, 1) :]


def check_entry(repo: Path, name: str, configs: dict[str, Any]) -> list[Problem]:
    config = configs[name]
    chk = EntryChecker(repo, name, config)
    if config.name and config.name != name:
        chk.add("name", repr(config.name), f"the folder is named {name!r}")
    kind = cfg.kind_of(config)
    if kind not in ("onnxruntime", "pytorch", "torch_aoti", "python", "ensemble"):
        chk.add("backend", kind, "pack checks onnxruntime, pytorch, torch_aoti, python and ensemble models only", "warning")
        return chk.problems
    if config.max_batch_size < 0:
        chk.add("max_batch_size", config.max_batch_size, "it must be 0 or more")
    chk.check_warmup()
    if config.HasField("dynamic_batching") and config.max_batch_size == 0:
        chk.add("dynamic_batching", "dynamic batching", "max_batch_size is 0, so Triton refuses it")
    for size in config.dynamic_batching.preferred_batch_size:
        if size > config.max_batch_size:
            chk.add("dynamic_batching.preferred_batch_size", size, f"max_batch_size is {config.max_batch_size}")
    versions = [p.name for p in (repo / name).iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        chk.add("versions", "at least one version folder", f"{repo / name} has no numeric version folder")
        return chk.problems
    if kind == "ensemble":
        check_ensemble(chk, configs)
        return chk.problems
    served = served_versions(config, versions)
    if not served:
        chk.add(
            "version_policy",
            str(config.version_policy).strip() or "latest 1",
            f"no version folder matches (folders: {', '.join(sorted(versions, key=int))})",
        )
    for version in sorted(versions, key=int):
        chk.version = version
        before = len(chk.problems)
        check_version(chk, repo / name / version, kind)
        if version not in served:  # kept for rollback; not what Triton loads now
            for p in chk.problems[before:]:
                p.severity = "warning"
    return chk.problems


def _check_onnx(chk: EntryChecker, path: Path) -> None:
    try:
        ins, outs = onnx_io(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is a finding, not a crash
        chk.add("model file", path.name, f"it is not a readable ONNX model ({type(exc).__name__}: {str(exc).strip()[:160]})")
        return
    chk.compare_io(ins, outs, path.name)


def check_version(chk: EntryChecker, vdir: Path, kind: str) -> None:
    config = chk.config
    filename = cfg.model_filename(config)
    path = vdir / filename
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in vdir.iterdir())) or "nothing"
        chk.add("default_model_filename" if config.default_model_filename else "model file", filename, f"{vdir} holds {found}")
        return
    if kind == "onnxruntime":
        if path.suffix != ".onnx":
            chk.add("default_model_filename", filename, "the onnxruntime backend loads an .onnx file")
        _check_onnx(chk, path)
    elif kind == "pytorch":
        chk.check_torchscript(path, by_position_names=True)
    elif kind == "torch_aoti":
        chk.check_aoti_names()
        chk.check_program(path, "aoti")
    elif kind == "python":
        source = path.read_text(errors="replace")
        try:
            compile(source, str(path), "exec")
        except SyntaxError as exc:
            chk.add("model.py", "a python backend model", f"it does not compile: line {exc.lineno}: {exc.msg}")
            return
        if "TritonPythonModel" not in source:
            chk.add("model.py", "a python backend model", "it defines no class TritonPythonModel")
        fmt = cfg.get_parameter(config, "pack_format")
        if fmt is None:
            return
        model_file = vdir / (cfg.get_parameter(config, "pack_model_file") or ("model.onnx" if fmt == "onnx" else "model.pt"))
        if not model_file.is_file():
            chk.add("parameters.pack_model_file", model_file.name, f"{vdir} has no such file")
        elif fmt == "onnx":
            _check_onnx(chk, model_file)
        elif fmt == "torchscript":
            chk.check_torchscript(model_file, by_position_names=False)
        elif fmt in ("pt2", "aoti"):
            chk.check_program(model_file, fmt)
        else:
            chk.add("parameters.pack_format", fmt, "model.py runs onnx, torchscript, pt2 or aoti")


def _full(config: Any, dims: list[int]) -> list[int]:
    return [-1, *dims] if config.max_batch_size > 0 else list(dims)


def check_ensemble(chk: EntryChecker, configs: dict[str, Any]) -> None:
    ens = chk.config
    if not ens.HasField("ensemble_scheduling") or not ens.ensemble_scheduling.step:
        chk.add("ensemble_scheduling", "steps", "none are given")
        return
    # tensor name -> (dtype, full shape, producer)
    tensors: dict[str, tuple[int, list[int], str]] = {
        e.name: (e.data_type, _full(ens, e.dims), "the ensemble input") for e in ens.input
    }
    for i, step in enumerate(ens.ensemble_scheduling.step):
        where = f"ensemble_scheduling.step[{i}] ({step.model_name})"
        sub = configs.get(step.model_name)
        if sub is None:
            chk.add(
                f"{where} model_name",
                repr(step.model_name),
                f"the repository has no model of that name (models: {', '.join(sorted(configs))})",
            )
            continue
        if step.model_version not in (-1, 0):
            vdir = chk.repo / step.model_name / str(step.model_version)
            if not vdir.is_dir():
                chk.add(f"{where} model_version", step.model_version, f"{step.model_name} has no such version folder")
        if ens.max_batch_size > sub.max_batch_size:
            chk.add(f"{where} max_batch_size", ens.max_batch_size, f"{step.model_name} has max_batch_size {sub.max_batch_size}")
        sub_inputs = {e.name: e for e in sub.input}
        sub_outputs = {e.name: e for e in sub.output}
        for key, tensor in step.input_map.items():
            if key not in sub_inputs:
                chk.add(
                    f"{where} input_map key",
                    repr(key),
                    f"{step.model_name} has no input of that name (its inputs: {', '.join(sub_inputs)})",
                )
                continue
            if tensor not in tensors:
                chk.add(f"{where} input_map[{key!r}]", repr(tensor), "no ensemble input or earlier step produces that tensor")
                continue
            dtype, shape, producer = tensors[tensor]
            want = sub_inputs[key]
            if dtype != want.data_type:
                chk.add(
                    f"{where} input {key!r} data_type",
                    f"{cfg.dtype_name(want.data_type)} for {step.model_name}",
                    f"{producer} gives {cfg.dtype_name(dtype)}",
                )
            wshape = _full(sub, want.dims)
            if len(shape) != len(wshape) or any(a != b and -1 not in (a, b) for a, b in zip(shape, wshape)):
                chk.add(f"{where} input {key!r} dims", f"{_fmt(wshape)} for {step.model_name}", f"{producer} gives {_fmt(shape)}")
        for missing in set(sub_inputs) - set(step.input_map) - {e.name for e in sub.input if e.optional}:
            chk.add(f"{where} input_map", f"no mapping for {missing!r}", f"{step.model_name} needs input {missing!r}")
        for key, tensor in step.output_map.items():
            if key not in sub_outputs:
                chk.add(
                    f"{where} output_map key",
                    repr(key),
                    f"{step.model_name} has no output of that name (its outputs: {', '.join(sub_outputs)})",
                )
                continue
            out = sub_outputs[key]
            tensors[tensor] = (out.data_type, _full(sub, out.dims), f"{step.model_name} output {key!r}")
    for out in ens.output:
        if out.name not in tensors:
            chk.add(f"output {out.name!r}", "an ensemble output", "no step produces it")
            continue
        dtype, shape, producer = tensors[out.name]
        if dtype != out.data_type:
            chk.add(f"output {out.name!r} data_type", cfg.dtype_name(out.data_type), f"{producer} gives {cfg.dtype_name(dtype)}")
        want = _full(ens, out.dims)
        if len(shape) != len(want) or any(a != b and -1 not in (a, b) for a, b in zip(shape, want)):
            chk.add(f"output {out.name!r} dims", _fmt(want), f"{producer} gives {_fmt(shape)}")


def load_configs(repo: Path) -> tuple[dict[str, Any], list[Problem]]:
    configs: dict[str, Any] = {}
    problems: list[Problem] = []
    for entry in sorted(repo.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        path = entry / cfg.CONFIG_FILE
        if not path.is_file():
            problems.append(Problem(entry.name, "config.pbtxt", "a config.pbtxt", f"{entry} has none", severity="warning"))
            continue
        try:
            configs[entry.name] = cfg.read(path)
        except ValidationFailed as exc:
            problems.append(Problem(entry.name, "config.pbtxt", "valid protobuf text", exc.message))
    return configs, problems


def check_repository(repo: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Check every entry (or `only` these) of a repository; returns the result document (does not raise)."""
    if not repo.is_dir():
        raise UsageError(f"{repo} is not a folder", "give the path of a Triton model repository (e.g. model_store/triton)")
    configs, problems = load_configs(repo)
    names = [n for n in configs if only is None or n in only]
    models = []
    for name in names:
        found = check_entry(repo, name, configs)
        problems.extend(found)
        models.append(
            {
                "name": name,
                "kind": cfg.kind_of(configs[name]),
                "max_batch_size": configs[name].max_batch_size,
                "versions": sorted((p.name for p in (repo / name).iterdir() if p.is_dir() and p.name.isdigit()), key=int),
                "ok": not any(p.severity == "error" for p in found),
            }
        )
    errors = [p for p in problems if p.severity == "error"]
    return {
        "repository": str(repo),
        "ok": not errors,
        "models": models,
        "problems": [p.to_dict() for p in problems],
        "summary": _summary(repo, models, problems),
    }


def _summary(repo: Path, models: list[dict[str, Any]], problems: list[Problem]) -> str:
    errors = [p for p in problems if p.severity == "error"]
    lines = [f"{repo}: {len(models)} model(s), {len(errors)} problem(s)"]
    for m in models:
        lines.append(
            f"  {'ok  ' if m['ok'] else 'FAIL'} {m['name']} ({m['kind']}, max_batch_size {m['max_batch_size']}, versions {', '.join(m['versions']) or '-'})"
        )
    for p in problems:
        lines.append(f"  {p.severity}: {p.line()}")
    return "\n".join(lines)


def raise_on_errors(result: dict[str, Any], report_problems: bool = True) -> None:
    errors = [p for p in result["problems"] if p["severity"] == "error"]
    if report_problems:
        for p in result["problems"]:
            log(f"{p['severity']}: {p['message']}")
    if errors:
        more = f" (and {len(errors) - 1} more problem(s) above)" if len(errors) > 1 else ""
        raise ValidationFailed(f"{errors[0]['message']}{more}", "fix config.pbtxt or regenerate it with `pack repo`")

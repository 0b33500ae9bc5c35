"""The wiring of a Triton ensemble entry, checked offline against the configs of the models it composes: every step
names a model (and version) of the repository, maps every input that model needs from a tensor an ensemble input or
an earlier step produces, with agreeing data types and dims, and every ensemble output is produced by a step."""

from __future__ import annotations

from typing import Any

from . import config as cfg
from .check_model import EntryChecker, fmt_dims

Tensors = dict[str, tuple[int, list[int], str]]  # tensor name -> (data type, full shape, what produces it)


def _full(config: Any, dims: list[int]) -> list[int]:
    return [-1, *dims] if config.max_batch_size > 0 else list(dims)


def _shapes_agree(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def check_ensemble(chk: EntryChecker, configs: dict[str, Any]) -> None:
    ens = chk.config
    if not ens.HasField("ensemble_scheduling") or not ens.ensemble_scheduling.step:
        chk.add("ensemble_scheduling", "steps", "none are given")
        return
    tensors: Tensors = {e.name: (e.data_type, _full(ens, e.dims), "the ensemble input") for e in ens.input}
    for i, step in enumerate(ens.ensemble_scheduling.step):
        _check_step(chk, configs, tensors, f"ensemble_scheduling.step[{i}] ({step.model_name})", step)
    _check_outputs(chk, tensors)


def _check_step(chk: EntryChecker, configs: dict[str, Any], tensors: Tensors, where: str, step: Any) -> None:
    """One step: its model and version exist, its batch size fits, its input and output maps; records what it
    produces in `tensors`."""
    ens = chk.config
    sub = configs.get(step.model_name)
    if sub is None:
        chk.add(
            f"{where} model_name",
            repr(step.model_name),
            f"the repository has no model of that name (models: {', '.join(sorted(configs))})",
        )
        return
    if step.model_version not in (-1, 0):
        vdir = chk.repo / step.model_name / str(step.model_version)
        if not vdir.is_dir():
            chk.add(f"{where} model_version", step.model_version, f"{step.model_name} has no such version folder")
    if ens.max_batch_size > sub.max_batch_size:
        chk.add(f"{where} max_batch_size", ens.max_batch_size, f"{step.model_name} has max_batch_size {sub.max_batch_size}")
    _check_input_map(chk, tensors, where, step, sub)
    _check_output_map(chk, tensors, where, step, sub)


def _check_input_map(chk: EntryChecker, tensors: Tensors, where: str, step: Any, sub: Any) -> None:
    sub_inputs = {e.name: e for e in sub.input}
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
        if not _shapes_agree(shape, wshape):
            chk.add(
                f"{where} input {key!r} dims", f"{fmt_dims(wshape)} for {step.model_name}", f"{producer} gives {fmt_dims(shape)}"
            )
    for missing in set(sub_inputs) - set(step.input_map) - {e.name for e in sub.input if e.optional}:
        chk.add(f"{where} input_map", f"no mapping for {missing!r}", f"{step.model_name} needs input {missing!r}")


def _check_output_map(chk: EntryChecker, tensors: Tensors, where: str, step: Any, sub: Any) -> None:
    sub_outputs = {e.name: e for e in sub.output}
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


def _check_outputs(chk: EntryChecker, tensors: Tensors) -> None:
    """Every ensemble output is produced by a step, with the data type and dims the ensemble declares."""
    ens = chk.config
    for out in ens.output:
        if out.name not in tensors:
            chk.add(f"output {out.name!r}", "an ensemble output", "no step produces it")
            continue
        dtype, shape, producer = tensors[out.name]
        if dtype != out.data_type:
            chk.add(f"output {out.name!r} data_type", cfg.dtype_name(out.data_type), f"{producer} gives {cfg.dtype_name(dtype)}")
        want = _full(ens, out.dims)
        if not _shapes_agree(shape, want):
            chk.add(f"output {out.name!r} dims", fmt_dims(want), f"{producer} gives {fmt_dims(shape)}")

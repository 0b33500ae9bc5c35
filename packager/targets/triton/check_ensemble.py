"""The wiring of a Triton ensemble entry, checked offline against the configs of the models it composes: every step
names a model (and version) of the repository, maps every input that model needs from a tensor an ensemble input or
an earlier step produces, with agreeing data types and dims, and every ensemble output is produced by a step."""

from __future__ import annotations

from collections.abc import Iterator
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


def _mapped(chk: EntryChecker, where: str, kind: str, mapping: Any, entries: Any, model: str) -> Iterator[tuple[str, str, Any]]:
    """(key, tensor, the model's entry) for each key of a step's input_map or output_map the model has; the others
    are problems."""
    named = {e.name: e for e in entries}
    for key, tensor in mapping.items():
        if key in named:
            yield key, tensor, named[key]
        else:
            chk.add(f"{where} {kind}_map key", repr(key), f"{model} has no {kind} of that name (its {kind}s: {', '.join(named)})")


def _check_input_map(chk: EntryChecker, tensors: Tensors, where: str, step: Any, sub: Any) -> None:
    for key, tensor, want in _mapped(chk, where, "input", step.input_map, sub.input, step.model_name):
        if tensor not in tensors:
            chk.add(f"{where} input_map[{key!r}]", repr(tensor), "no ensemble input or earlier step produces that tensor")
            continue
        dtype, shape, producer = tensors[tensor]
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
    for missing in {e.name for e in sub.input} - set(step.input_map) - {e.name for e in sub.input if e.optional}:
        chk.add(f"{where} input_map", f"no mapping for {missing!r}", f"{step.model_name} needs input {missing!r}")


def _check_output_map(chk: EntryChecker, tensors: Tensors, where: str, step: Any, sub: Any) -> None:
    for key, tensor, out in _mapped(chk, where, "output", step.output_map, sub.output, step.model_name):
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

"""One Triton repository entry's config.pbtxt compared with what its model files say (check_io.py): data types,
dims and batch axes of inputs and outputs, names the backend can address, input and output counts, and model_warmup
data. Each difference is a `Problem` naming the model, the field and both values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import config as cfg
from .check_io import TensorInfo, program_io, torchscript_io


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


def fmt_dims(dims: list[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


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
                    f"{source} {kind} {actual.name!r} has no batch axis "
                    f"(first axis fixed at {actual.shape[0]}; use max_batch_size: 0)",
                )
                return
            model_dims = actual.shape[1:]
        else:
            model_dims = actual.shape
        if len(dims) != len(model_dims):
            self.add(
                f"{field} dims", fmt_dims(dims), f"{source} has {fmt_dims(model_dims)} (rank {len(model_dims)}, not {len(dims)})"
            )
            return
        for c, m in zip(dims, model_dims, strict=True):  # same rank: checked above
            if m == -1 or c == m:
                continue
            if source.startswith(RUN_SOURCES) and c == -1:
                continue  # a run has concrete sizes where the config allows any
            self.add(f"{field} dims", fmt_dims(dims), f"{source} has {fmt_dims(model_dims)}")
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
                for entry, t in zip(entries, actual, strict=False):  # a count mismatch is reported above
                    self.compare_tensor(kind, entry, t, source)

    def check_libtorch_names(self, forward_args: list[str]) -> None:
        pattern = re.compile(r"^.+__(\d+)$")
        for entry in self.config.input:
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
        for entry, t in zip(self.config.output, outputs, strict=False):  # a count mismatch is reported above
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
        for entry, t in zip(self.config.output, outputs, strict=False):  # a count mismatch is reported above
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
                if len(cdims) != len(wdims) or any(c not in (-1, w) for c, w in zip(cdims, wdims, strict=True)):
                    self.add(f"{field} dims", fmt_dims(wdims), f"the input's dims are {fmt_dims(cdims)}")
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
                                f"{fmt_dims(wdims)} {cfg.dtype_name(item.data_type)} ({want} bytes)",
                                f"{path.name} has {path.stat().st_size} bytes",
                            )

"""Resolve what to build: a model argument, an optional spec and command-line overrides become one BuildPlan.

Nothing here imports torch; the plan is plain data that the build pipeline and the report share. Every input the user
declares (`--input` or the spec's `inputs:`) passes inputs.check_input.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import UsageError
from ..export import DEFAULT_FORMATS, FORMATS
from ..registry import ModelEntry, OutputSpec, TensorSpec, Tolerance
from ..report.names import check_name, check_version
from ..variants import settings_from as variant_settings
from . import spec as spec_mod
from .inputs import MAX_VALUES, check_dims, check_input, parse_axes, parse_input

DEFAULT_BATCH_SIZES = (1, 4)
DEFAULT_SEED = 0
MAX_SEED = 2**32 - 1
MAX_LABELS_BYTES = 16 << 20


@dataclass
class BuildPlan:
    name: str
    version: str
    source_kind: str  # builtin | python | file
    source: str
    inputs: list[TensorSpec]
    outputs: list[OutputSpec]
    entry: ModelEntry | None = None
    weights: str | None = None
    unsafe_load: bool = False
    batch_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    tolerance: Tolerance = Tolerance()
    seed: int = DEFAULT_SEED
    opset: int | None = None  # None: each ONNX exporter's default (recorded in the report)
    torchscript: str = "auto"
    task: str | None = None  # None: the model family's, else generic
    formats: tuple[str, ...] = DEFAULT_FORMATS
    formats_given: bool = False  # the user named the formats: each must pass (else: each is tried, one must pass)
    tolerance_given: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)
    postprocessing: dict[str, Any] = field(default_factory=dict)
    labels_file: str | None = None
    labels: list[str] | None = None  # read_labels(labels_file), read once while resolving
    device: str = "auto"
    slim: bool = False
    variants: Any = None  # VariantSettings (packager/variants/): the faster ONNX variants to make and judge
    migrated_from: dict[str, str] | None = None  # `pack migrate`: the source it came from ({kind, ref, sha256})

    def output_tolerance(self, index: int) -> Tolerance:
        out = self.outputs[index] if index < len(self.outputs) else None
        atol = out.atol if out is not None and out.atol is not None else self.tolerance.atol
        rtol = out.rtol if out is not None and out.rtol is not None else self.tolerance.rtol
        return Tolerance(atol=atol, rtol=rtol)


def parse_formats(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise FORMATS.unknown(unknown[0] if unknown else text, " in --formats")
    return names


def _tensor_from_spec(item: dict[str, Any]) -> TensorSpec:
    rng = tuple(item["range"]) if "range" in item else None
    axes, names = parse_axes(f"input {item['name']!r}", list(item.get("dynamic_axes", [0])))
    spec = TensorSpec(item["name"], tuple(item["shape"]), item.get("dtype", "float32"), axes, rng)
    return check_input(dataclasses.replace(spec, fill=item.get("fill"), dim_names=names))


def _output_from_spec(item: dict[str, Any]) -> OutputSpec:
    return OutputSpec(item["name"], tuple(item.get("dynamic_axes", [0])), item.get("atol"), item.get("rtol"))


def _classify_source(source: str) -> str:
    if registry.get_entry(source) is not None:
        return "builtin"
    file_part = source.rsplit(":", 1)[0] if ".py:" in source else source
    if file_part.endswith(".py") or ".py:" in source:
        return "python"
    if Path(source).exists() or source.endswith((".pt", ".pth", ".ts", ".pkl", ".bin")):
        return "file"
    return "unknown"


def _pick(overrides: dict[str, Any], spec: dict[str, Any], key: str, default: Any) -> Any:
    """The command line's value for `key` if it gave one, else the spec's, else `default`."""
    value = overrides.get(key)
    if value is not None:
        return value
    return spec.get(key, default)


def _checked_source(source: str) -> str:
    """The kind of a model argument (builtin | python | file); UsageError when it names nothing usable."""
    kind = _classify_source(source)
    if kind == "unknown":
        unknown = registry.MODELS.unknown(source)
        raise UsageError(unknown.message, f"{unknown.hint} (or give path/to/file.py:callable)")
    if kind == "python":
        file_part, _, attr = source.rpartition(":") if ".py:" in source else (source, "", "")
        if not attr:
            raise UsageError(f"{source!r} names a Python file but no callable", f"write it as {source}:build_model")
        if not Path(file_part).is_file():
            raise UsageError(f"model source file not found: {file_part}")
    if kind == "file" and not Path(source).is_file():
        raise UsageError(f"model file not found: {source}")
    return kind


def _model_name(kind: str, source: str, entry: ModelEntry | None, spec: dict[str, Any], overrides: dict[str, Any]) -> str:
    if entry is not None:
        default_name = entry.name
    elif kind == "python":
        default_name = Path(source.rpartition(":")[0]).stem
    else:
        default_name = Path(source).stem
    return check_name(overrides.get("name") or spec.get("name") or default_name)


def _inputs(entry: ModelEntry | None, spec: dict[str, Any], overrides: dict[str, Any]) -> list[TensorSpec]:
    inputs: list[TensorSpec]
    if overrides.get("inputs"):
        inputs = list(overrides["inputs"])
    elif "inputs" in spec:
        inputs = [_tensor_from_spec(i) for i in spec["inputs"]]
    elif entry is not None:
        inputs = list(entry.inputs)
    else:
        inputs = []  # the model's family may know them (checked once the model is loaded)
    if len({i.name for i in inputs}) != len(inputs):
        raise UsageError("input names must be unique")
    check_dims(inputs)
    return inputs


def _outputs(entry: ModelEntry | None, spec: dict[str, Any], inputs: list[TensorSpec]) -> list[OutputSpec]:
    if "outputs" in spec:
        outputs = [_output_from_spec(o) for o in spec["outputs"]]
    elif entry is not None:
        outputs = list(entry.outputs)
    else:
        outputs = []  # named output / output_N once the eager model has run
    if len({o.name for o in outputs} | {i.name for i in inputs}) != len(outputs) + len(inputs):
        raise UsageError("input and output names must all be different")
    return outputs


def _tolerance(entry: ModelEntry | None, spec: dict[str, Any], overrides: dict[str, Any]) -> tuple[Tolerance, bool]:
    """(the tolerance, whether anyone chose it: the built-in entry, the spec or the command line)."""
    tol = entry.tolerance if entry is not None else Tolerance()
    spec_tol = spec.get("tolerance", {})
    tolerance = Tolerance(
        atol=_pick(overrides, spec, "atol", spec_tol.get("atol", tol.atol)),
        rtol=_pick(overrides, spec, "rtol", spec_tol.get("rtol", tol.rtol)),
    )
    given = entry is not None or bool(spec_tol) or overrides.get("atol") is not None or overrides.get("rtol") is not None
    return tolerance, given


def _formats(spec: dict[str, Any], overrides: dict[str, Any]) -> tuple[tuple[str, ...], bool]:
    """(the formats to export, whether the user named them)."""
    value = overrides.get("formats") or spec.get("formats")
    if not value:
        return DEFAULT_FORMATS, False
    return parse_formats(value if isinstance(value, str) else ",".join(value)), True


def _batch_sizes(inputs: list[TensorSpec], given: list[int] | None) -> list[int]:
    batch_sizes = list(given or DEFAULT_BATCH_SIZES)
    if any(b < 1 for b in batch_sizes):
        raise UsageError(f"batch sizes must be at least 1, got {batch_sizes}")
    if len(set(batch_sizes)) != len(batch_sizes):
        raise UsageError(f"batch sizes {batch_sizes} name a size twice", "name each batch size once")
    for spec in inputs:
        axis = spec.batch_axis
        values = math.prod(spec.shape)
        batched = values // spec.shape[axis] * max(batch_sizes) if axis is not None else values
        if batched > MAX_VALUES:
            raise UsageError(
                f"input {spec.name!r} at batch size {max(batch_sizes)} holds more than {MAX_VALUES:,d} values",
                "validate smaller batch sizes (--batch-sizes) or declare a smaller example",
            )
    if not inputs or all(i.batch_axis is not None for i in inputs):
        return batch_sizes
    if not given:
        batch_sizes = [inputs[0].shape[0]]  # a static first axis: the declared shape is the only batch
    if batch_sizes != [inputs[0].shape[0]]:
        static = [i.name for i in inputs if i.batch_axis is None][0]
        raise UsageError(
            f"input {static!r} has no dynamic batch axis, so only batch size {inputs[0].shape[0]} can be validated",
            f"pass --batch-sizes {inputs[0].shape[0]} or add 0 (or batch@AXIS) to its dynamic_axes",
        )
    return batch_sizes


def _version(spec: dict[str, Any], overrides: dict[str, Any]) -> str:
    return check_version(_pick(overrides, spec, "version", "1"))


def _existing_file(path: str | None, what: str) -> str | None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"{what} file not found: {path}")
    return path


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise UsageError(f"seed {value!r} must be an integer from 0 to {MAX_SEED}", "pass --seed N (default 0)")
    return value


def read_labels(path: str) -> list[str]:
    """The class names of a labels file (one a line, blank lines skipped): UTF-8 text of at most MAX_LABELS_BYTES."""
    from ..safeio import read_file, utf8

    where = f"labels file {path}"
    text = utf8(read_file(Path(path), where, MAX_LABELS_BYTES, UsageError), where, UsageError)
    names = [line.strip() for line in text.splitlines()]
    if not any(names):
        raise UsageError(f"{where} holds no label", "write one class name a line, or leave labels out")
    return [name for name in names if name]


def resolve(model: str | None, spec_path: str | None, overrides: dict[str, Any]) -> BuildPlan:
    """Merge (built-in entry) < spec < command line into a BuildPlan; raise UsageError for anything unusable."""
    spec: dict[str, Any] = spec_mod.load(spec_path) if spec_path else {}
    source = model or spec.get("source")
    if not source:
        raise UsageError(
            "nothing to build", "name a model (see `pack models`), a file.py:callable, or pass --spec pack.yaml with a `source:`"
        )
    kind = _checked_source(source)
    entry = registry.get_entry(source) if kind == "builtin" else None
    name = _model_name(kind, source, entry, spec, overrides)
    inputs = _inputs(entry, spec, overrides)
    outputs = _outputs(entry, spec, inputs)
    tolerance, tolerance_given = _tolerance(entry, spec, overrides)
    formats, formats_given = _formats(spec, overrides)
    batch_sizes = _batch_sizes(inputs, _pick(overrides, spec, "batch_sizes", None))
    version = _version(spec, overrides)
    seed = _seed(_pick(overrides, spec, "seed", DEFAULT_SEED))
    labels_file = _existing_file(_pick(overrides, spec, "labels", None), "labels")
    labels = read_labels(labels_file) if labels_file else None
    variants = variant_settings(spec, overrides)
    if variants.calibration is not None and inputs:
        from ..variants.calibration import check_calibration

        check_calibration(Path(variants.calibration), inputs)  # before the export, not after it
    weights = _existing_file(_pick(overrides, spec, "weights", None), "weights")

    return BuildPlan(
        name=name,
        version=version,
        source_kind=kind,
        source=source,
        inputs=inputs,
        outputs=outputs,
        entry=entry,
        weights=weights,
        unsafe_load=bool(overrides.get("unsafe_load")),
        batch_sizes=batch_sizes,
        tolerance=tolerance,
        seed=seed,
        opset=_pick(overrides, spec, "opset", None),
        torchscript=_pick(overrides, spec, "torchscript", "auto"),
        task=spec.get("task", entry.task if entry else None),
        formats=formats,
        formats_given=formats_given,
        tolerance_given=tolerance_given,
        preprocessing={**(entry.preprocessing if entry else {}), **spec.get("preprocessing", {})},
        postprocessing={**(entry.postprocessing if entry else {}), **spec.get("postprocessing", {})},
        labels_file=labels_file,
        labels=labels,
        device=overrides.get("device") or "auto",
        slim=bool(overrides.get("slim")),
        variants=variants,
    )


__all__ = ["BuildPlan", "check_input", "parse_formats", "parse_input", "read_labels", "resolve"]

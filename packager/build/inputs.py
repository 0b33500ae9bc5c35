"""What a declared model input may be (`--input NAME:SHAPE[:DTYPE][:dyn=AXES][:range=LOW,HIGH]` or a spec's
`inputs:` entry): one rule for both, `check_input`, so the cases the gate draws from an input (packager/report/cases.py)
can always be made; `check_dims` holds the rules across inputs.

A dynamic axis is `AXIS` or `NAME@AXIS` (`dyn=0,seq@1`; a spec's `dynamic_axes: [0, "seq@1"]`): axes that share a name
are one dimension in every input (an LSTM's `h0` and `c0` take the batch on axis 1: `dyn=batch@1`). Unnamed, axis 0 is
`batch` and another axis `<input>_dim<axis>`.

- a name of 1 to 64 ASCII letters, digits or `_`, not starting with a digit (a forward() parameter, a file name);
- a dtype of registry.DTYPES; 1 to MAX_AXES axes, each at least 1; at most MAX_VALUES values at the declared shape;
- dynamic axes that exist, each named once; dimension names like input names, `batch` on one axis at most;
- across inputs (`check_dims`): axes of one name have one example size, and one batch example size for all inputs;
- a range of two finite numbers with low < high. Integer dtypes draw from low to high - 1: the bounds must be whole
  numbers and those values must fit the dtype (an integer range always holds at least one integer). Float (and bool)
  ranges must fit the dtype, and their width a float64.

No torch or numpy here: the command line stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Callable
from typing import Any

from ..errors import UsageError
from ..registry import BATCH, DTYPES, TensorSpec

INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # as spec.schema.json says
MAX_AXES = 32
MAX_VALUES = 1 << 28  # values in one example input at the largest validated batch size (1 GiB of float32)
INT_BOUNDS = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1), "int8": (-128, 127), "uint8": (0, 255)}
FLOAT_MAX = {"float16": 65504.0, "float32": 3.4028234663852886e38, "float64": sys.float_info.max}


def parse_input(text: str) -> TensorSpec:
    """`name:1x3x224x224[:dtype][:dyn=0,1][:range=0,1000]` -> TensorSpec (batch axis 0 dynamic unless dyn= says)."""
    parts = text.split(":")
    if len(parts) < 2 or not parts[0]:
        raise UsageError(
            f"--input {text!r} is not NAME:SHAPE[:DTYPE][:dyn=AXES][:range=LOW,HIGH]", "write it like input:1x3x224x224:float32"
        )
    try:
        shape = tuple(int(d) for d in parts[1].lower().split("x"))
    except ValueError:
        raise UsageError(
            f"--input {text!r}: shape {parts[1]!r} is not numbers joined by x", "write it like 1x3x224x224"
        ) from None
    fields: dict[str, str] = {}
    for part in parts[2:]:
        key, eq, value = part.partition("=") if "=" in part else ("dtype", "=", part)
        if key not in ("dtype", "dyn", "range"):
            raise UsageError(f"--input {text!r}: unknown field {key!r}", "use DTYPE, dyn=AXES or range=LOW,HIGH")
        if key in fields:
            raise UsageError(f"--input {text!r}: {key} is given twice", "give each field once")
        fields[key] = value
    axes, names = parse_axes(f"--input {text!r}", fields["dyn"].split(",")) if "dyn" in fields else ((0,), ())
    rng = _numbers(text, "range", fields["range"], _number) if "range" in fields else None
    if rng is not None and len(rng) != 2:
        raise UsageError(
            f"--input {text!r}: 'range={fields['range']}' is not range=numbers LOW,HIGH", "write it like range=0,1000"
        )
    dtype = fields.get("dtype", "float32")
    return check_input(TensorSpec(parts[0], shape, dtype, axes, (rng[0], rng[1]) if rng else None, dim_names=names))


def parse_axes(what: str, items: list[Any]) -> tuple[tuple[int, ...], tuple[tuple[int, str], ...]]:
    """Dynamic axes as written (`0`, `"1"` or `"seq@1"`) -> (axes, declared (axis, name) pairs)."""
    axes: list[int] = []
    names: list[tuple[int, str]] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        name, at, axis = text.rpartition("@")
        try:
            number = int(axis)
        except ValueError:
            raise UsageError(f"{what}: dynamic axis {text!r} is not AXIS or NAME@AXIS", "write it like dyn=0,seq@1") from None
        axes.append(number)
        if at:
            names.append((number, name))
    return tuple(axes), tuple(sorted(names))


def _numbers(text: str, key: str, value: str, kind: Callable[[str], Any]) -> list[Any]:
    try:
        return [kind(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--input {text!r}: '{key}={value}' is not {key}=numbers separated by commas") from None


def _number(text: str) -> int | float:
    try:
        return int(text)  # exactly, however large: float() would round 2**63 - 1
    except ValueError:
        return float(text)


def check_input(spec: TensorSpec) -> TensorSpec:
    """The rules of a declared input, for `--input` and the spec alike; UsageError naming the input and the rule.
    Integral range bounds come back as ints."""
    what = f"input {spec.name!r}"
    if not isinstance(spec.name, str) or not INPUT_NAME.fullmatch(spec.name):
        raise UsageError(
            f"{what}: the name must be 1 to 64 ASCII letters, digits or _, not starting with a digit",
            "name it like its forward() parameter",
        )
    if spec.dtype not in DTYPES:
        raise UsageError(f"{what}: unknown dtype {spec.dtype!r}", f"use one of {', '.join(DTYPES)}")
    if not 1 <= len(spec.shape) <= MAX_AXES:
        raise UsageError(f"{what}: a shape of {len(spec.shape)} axes; an input has 1 to {MAX_AXES}", "write it like 1x3x224x224")
    if any(d < 1 for d in spec.shape):
        raise UsageError(f"{what}: shape {list(spec.shape)}: every dimension must be at least 1", "write it like 1x3x224x224")
    if math.prod(spec.shape) > MAX_VALUES:
        raise UsageError(f"{what}: shape {list(spec.shape)} holds more than {MAX_VALUES:,d} values", "declare a smaller example")
    bad = [a for a in spec.dynamic_axes if a >= len(spec.shape) or a < 0]
    if bad:
        raise UsageError(f"{what}: dynamic axis {bad[0]} is out of range for shape {list(spec.shape)}")
    if len(set(spec.dynamic_axes)) != len(spec.dynamic_axes):
        raise UsageError(f"{what}: dynamic axes {list(spec.dynamic_axes)} name an axis twice", "name each axis once")
    _check_names(what, spec)
    if spec.range is None:
        return spec
    return dataclasses.replace(spec, range=_checked_range(what, spec.dtype, spec.range))


def _check_names(what: str, spec: TensorSpec) -> None:
    for axis, name in spec.dim_names:
        if not isinstance(name, str) or not INPUT_NAME.fullmatch(name):
            raise UsageError(
                f"{what}: dimension name {name!r} must be 1 to 64 ASCII letters, digits or _, not starting with a digit",
                "write it like dyn=batch@1",
            )
        if axis not in spec.dynamic_axes:
            raise UsageError(f"{what}: named axis {axis} is not one of its dynamic axes", "write it like dyn=batch@1")
    batch = [a for a in spec.dynamic_axes if spec.axis_name(a) == BATCH]
    if len(batch) > 1:
        raise UsageError(f"{what}: axes {batch} are all named {BATCH}", "an input has one batch axis; name the others")


def check_dims(specs: list[TensorSpec]) -> None:
    """Axes that share a name have one example size across inputs (they are one dimension)."""
    seen: dict[str, tuple[str, int, int]] = {}
    for spec in specs:
        for axis in spec.dynamic_axes:
            name, size = spec.axis_name(axis), spec.shape[axis]
            first = seen.setdefault(name, (spec.name, axis, size))
            if first[2] != size:
                raise UsageError(
                    f"dimension {name!r} is {first[2]} in input {first[0]!r} (axis {first[1]}) but {size} in input "
                    f"{spec.name!r} (axis {axis})",
                    "give the axes of one dimension the same example size, or name them apart",
                )


def _checked_range(what: str, dtype: str, rng: tuple[float, float]) -> tuple[float, float]:
    """Finite numbers with low < high; for an integer dtype, whole numbers whose values from low to high - 1 the dtype
    holds; for any other dtype, bounds the dtype holds and a width a float64 holds (numpy's uniform needs it). Compared
    exactly: an integer bound may be larger than any float."""
    low, high = rng
    shown = f"{what}: range [{_short(low)}, {_short(high)}]"
    if not all(isinstance(v, int) or math.isfinite(v) for v in rng) or low >= high:
        raise UsageError(f"{shown} must be [low, high] with low < high, both finite", "write it like range=0,1000")
    if all(isinstance(v, int) or v.is_integer() for v in rng):
        low, high = int(low), int(high)
    if dtype in INT_BOUNDS:
        least, most = INT_BOUNDS[dtype]
        if not isinstance(low, int) or not isinstance(high, int):
            raise UsageError(f"{shown}: an {dtype} input's range must be whole numbers", "write it like range=0,1000")
        if low < least or high - 1 > most:
            raise UsageError(
                f"{shown}: values from {_short(low)} to {_short(high - 1)} do not fit {dtype} ({least} to {most})",
                "use a wider dtype or a narrower range (HIGH itself is never drawn)",
            )
        return low, high
    most_float = FLOAT_MAX.get(dtype, sys.float_info.max)
    if max(abs(low), abs(high)) > most_float:
        raise UsageError(f"{shown} does not fit {dtype} (at most {most_float:g})", "use a wider dtype or a narrower range")
    if not math.isfinite(float(high) - float(low)):
        raise UsageError(f"{shown} is wider than a float64 holds", "write a narrower range")
    return low, high


def _short(value: float) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"


__all__ = [
    "FLOAT_MAX",
    "INPUT_NAME",
    "INT_BOUNDS",
    "MAX_AXES",
    "MAX_VALUES",
    "check_dims",
    "check_input",
    "parse_axes",
    "parse_input",
]

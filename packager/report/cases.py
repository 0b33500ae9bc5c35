"""The gate's validation cases: seeded inputs at every batch size, and at a second size of every other dynamic axis.

Inputs come from numpy's PCG64 seeded with (seed, batch), so they are the same on every machine and torch version.
Floats are standard normal (uniform in `range` when given); integers are uniform in `range` (default [0, 10)).
Integer or bool inputs whose name says what their values mean are filled by that meaning unless a `range` is given
(random values there would make the model's outputs meaningless, or NaN), one rule per input, recorded in the report:
  * padding masks (named like `*padding_mask`, PyTorch's `src_key_padding_mask`: True marks padding): all zeros
    (False), nothing padded;
  * other masks (`attention_mask`, Hugging Face's: 1 = attend): all ones;
  * `token_type_ids`: all zeros (one segment).
A spec's `fill:` (zeros, ones or random) overrides the rule for its input.

The batch axis is the one named `batch` (axis 0 unless declared elsewhere). Every other dynamic axis is validated at
a second size too (axes that share a name, one dimension, together), so an export that baked in a sequence length or
an image size fails the gate. The second size is half the example size when the model (and the captured
ExportedProgram, whose guards may bound a size) accepts it, else one step up (the example plus its largest power-of-two
factor, at most 32: 16 -> 32, 224 -> 256, 4 -> 8), else one less.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..registry import TensorSpec


@dataclass
class Case:
    """One validated shape: its label for messages, the batch size, the inputs and (once run) the eager outputs."""

    label: str
    batch: int
    inputs: list[np.ndarray]
    outputs: list[np.ndarray] = field(default_factory=list)
    resized: bool = False  # the dynamic axes other than batch are at their second size


def smaller(size: int) -> int | None:
    return size // 2 if size >= 4 else None


def larger(size: int) -> int:
    step = 1
    while size % (step * 2) == 0 and step < 32:
        step *= 2
    return size + step


def one_less(size: int) -> int | None:
    return size - 1 if size >= 3 else None


Resize = Callable[[int], int | None]  # a rule for the second size of a dynamic axis (None: the axis is too small)
RESIZE_RULES: tuple[tuple[str, Resize], ...] = (("half", smaller), ("one step up", larger), ("one less", one_less))


def _shape(spec: TensorSpec, batch: int, resize: Resize | None = None) -> tuple[int, ...]:
    """The input's shape in a case: the batch axis at `batch`; with a rule, every other dynamic axis at its second
    size (axes of one name have one example size, so a rule moves them together)."""
    shape = list(spec.shape)
    batch_axis = spec.batch_axis
    if batch_axis is not None:
        shape[batch_axis] = batch
    if resize is not None:
        for axis in spec.dynamic_axes:
            if axis != batch_axis:
                size = resize(shape[axis])
                if size is not None:  # resized_cases() uses a rule only where it gives every moved axis a size
                    shape[axis] = size
    return tuple(shape)


FILLS = ("zeros", "ones", "random")  # what a spec's `fill:` may say


def fill_rule(spec: TensorSpec) -> tuple[str, str]:
    """(values, why): the values an input is filled with (one of FILLS) and the rule that chose them."""
    if spec.fill is not None:
        return spec.fill, "the spec's `fill`"
    dtype = np.dtype(spec.dtype)
    lowered = spec.name.lower()
    if spec.range is None and (dtype == np.bool_ or np.issubdtype(dtype, np.integer)):
        if lowered.endswith("padding_mask"):
            return "zeros", "padding mask (named like *padding_mask; True marks padding): nothing padded"
        if "mask" in lowered:
            return "ones", "attention mask (named like a mask; 1 = attend): every position attended"
        if lowered == "token_type_ids":
            return "zeros", "token_type_ids: one segment"
    return "random", "uniform in `range`" if spec.range is not None else "random values of the dtype"


def _fill(spec: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    values, _ = fill_rule(spec)
    if values != "random":
        return (np.ones if values == "ones" else np.zeros)(shape, dtype=dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        low, high = spec.range or (0, 10)
        return rng.integers(int(low), int(high), size=shape, dtype=np.int64).astype(dtype)
    if spec.range is not None:
        return rng.uniform(spec.range[0], spec.range[1], size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def make_inputs(specs: Sequence[TensorSpec], batch: int, seed: int, resize: Resize | None = None) -> list[np.ndarray]:
    """Deterministic inputs for one case."""
    rng = np.random.Generator(np.random.PCG64([seed, batch, 1] if resize is not None else [seed, batch]))
    return [np.ascontiguousarray(_fill(spec, _shape(spec, batch, resize), rng)) for spec in specs]


def batch_cases(specs: Sequence[TensorSpec], batch_sizes: Sequence[int], seed: int) -> list[Case]:
    """A case per batch size, every other axis at its declared size."""
    return [Case(f"batch {b}", b, make_inputs(specs, b, seed)) for b in batch_sizes]


def resized_cases(specs: Sequence[TensorSpec], batch: int, seed: int) -> list[Case]:
    """Candidates for the second-size case, in order of preference (empty when only the batch axis is dynamic)."""
    moved = [(s, a) for s in specs for a in s.dynamic_axes if a != s.batch_axis]
    out = []
    for _, rule in RESIZE_RULES:
        if not moved or any(rule(s.shape[a]) is None for s, a in moved):
            continue
        where = ", ".join(f"{s.name} axis {a} = {rule(s.shape[a])}" for s, a in moved)
        out.append(Case(f"batch {batch}, {where}", batch, make_inputs(specs, batch, seed, rule), resized=True))
    return out


def flipped(specs: Sequence[TensorSpec], case: Case) -> Case:
    """The case's inputs with their values flipped (floats negated, integers mirrored in their range, bools inverted,
    masks padded on the right): an `if` on tensor values that every sample took one way goes the other way here.
    Used to test a trace that converted tensors to Python bools."""
    arrays = []
    for spec, arr in zip(specs, case.inputs, strict=True):
        values, _ = fill_rule(spec)
        if values != "random" and "mask" in spec.name.lower() and arr.ndim >= 2:
            padded = arr.copy()  # the right half padded: False/0 for an attention mask, True/1 for a padding mask
            padded[..., arr.shape[-1] // 2 + 1 :] = 1 if values == "zeros" else 0
            arrays.append(padded)
        elif arr.dtype == np.bool_:
            arrays.append(~arr)
        elif np.issubdtype(arr.dtype, np.integer):
            low, high = spec.range or (0, 10)
            arrays.append((int(high) - 1 - (arr.astype(np.int64) - int(low))).astype(arr.dtype))
        else:
            arrays.append(np.ascontiguousarray(-arr))
    return Case(f"{case.label}, values flipped", case.batch, arrays)


def export_case(cases: Sequence[Case]) -> Case:
    """The case the graph exporters trace with: the first with a batch of at least 2 (a batch of 1 invites
    torch.export to specialise the batch axis), at the declared sizes."""
    declared = [c for c in cases if not c.resized] or list(cases)
    return next((c for c in declared if c.batch >= 2), declared[0])


__all__ = ["FILLS", "Case", "batch_cases", "fill_rule", "export_case", "flipped", "make_inputs", "resized_cases"]

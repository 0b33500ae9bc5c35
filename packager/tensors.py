"""Seeded example inputs and output flattening, shared by export, validation and measurement."""

from __future__ import annotations

from typing import Any

import numpy as np

from .registry import TensorSpec


def make_inputs(specs: list[TensorSpec], batch: int, seed: int) -> list[np.ndarray]:
    """Deterministic inputs for one batch size (numpy's PCG64, so they do not depend on the torch version)."""
    rng = np.random.Generator(np.random.PCG64([seed, batch]))
    arrays = []
    for spec in specs:
        shape = (batch, *spec.shape[1:]) if 0 in spec.dynamic_axes else tuple(spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype == np.bool_:
            arr = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            low, high = spec.range or (0, 10)
            arr = rng.integers(int(low), int(high), size=shape, dtype=np.int64).astype(dtype)
        elif spec.range is not None:
            arr = rng.uniform(spec.range[0], spec.range[1], size=shape).astype(dtype)
        else:
            arr = rng.standard_normal(shape).astype(dtype)
        arrays.append(np.ascontiguousarray(arr))
    return arrays


def flatten_outputs(out: Any) -> list[Any]:
    """A tensor, a (nested) tuple/list of tensors or a dict of tensors -> a flat list, in order."""
    if isinstance(out, dict):
        items: list[Any] = []
        for value in out.values():
            items.extend(flatten_outputs(value))
        return items
    if isinstance(out, (tuple, list)):
        items = []
        for value in out:
            items.extend(flatten_outputs(value))
        return items
    return [out]


def output_keys(out: Any) -> list[str] | None:
    """Names for a dict output's flattened elements, or None when the output is not a flat dict."""
    if isinstance(out, dict) and all(not isinstance(v, (dict, list, tuple)) for v in out.values()):
        return [str(k) for k in out]
    return None

"""Registry of built-in models, in the style of timm: one decorated factory per model.

Registering a model records its metadata (inputs, outputs, task, pre/post-processing, tolerances) without importing
torch; the factory itself imports what it needs when `create_model` calls it. `pack models` and `pack --help` only
read this metadata, so they stay fast.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")


@dataclass(frozen=True)
class TensorSpec:
    """One forward() input: its name, an example shape (batch first), dtype, dynamic axes and value range."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    dynamic_axes: tuple[int, ...] = (0,)
    range: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "dynamic_axes": list(self.dynamic_axes),
        }
        if self.range is not None:
            out["range"] = list(self.range)
        return out


@dataclass(frozen=True)
class OutputSpec:
    """One output (a tensor, or one element of a returned tuple), with optional per-output tolerances."""

    name: str
    dynamic_axes: tuple[int, ...] = (0,)
    atol: float | None = None
    rtol: float | None = None


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-3


@dataclass(frozen=True)
class ModelEntry:
    """Everything pack needs to know about a built-in model, except its weights."""

    name: str
    factory: Callable[[], Any]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[OutputSpec, ...]
    task: str = "generic"
    description: str = ""
    tolerance: Tolerance = Tolerance()
    preprocessing: dict[str, Any] = field(default_factory=dict)
    postprocessing: dict[str, Any] = field(default_factory=dict)
    labels: Callable[[], list[str]] | None = None
    requires: tuple[str, ...] = ()
    weights: str = "state_dict"  # how --weights is read: "state_dict" or "ultralytics"
    prepare: Callable[[Any], Any] | None = None  # applied after weights load, before export (e.g. fuse)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    inputs: list[TensorSpec],
    outputs: list[OutputSpec],
    **meta: Any,
) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator: register the decorated zero-argument factory as the built-in model `name`."""

    def wrap(factory: Callable[[], Any]) -> Callable[[], Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(
            name=name,
            factory=factory,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            description=meta.pop("description", (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""),
            **meta,
        )
        return factory

    return wrap


def _load_builtins() -> None:
    from . import models  # noqa: F401  (registers the built-in entries)


def list_models() -> list[ModelEntry]:
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def suggest(name: str) -> list[str]:
    _load_builtins()
    return difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)


def get_entry(name: str) -> ModelEntry | None:
    _load_builtins()
    return _REGISTRY.get(name)


def create_model(name: str) -> Any:
    """Build the built-in model `name` with its seeded random initialisation, in eval mode."""
    entry = get_entry(name)
    if entry is None:
        raise KeyError(name)
    return entry.factory()

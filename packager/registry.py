"""One registry helper for every named table of pack (models, export formats, variant kinds, serving tasks, targets),
and the registry of built-in models on it, in the style of timm: one decorated factory per model.

A `Registry` is filled by `register` (a call, or a decorator where the decorated object is the entry) and read by
`get` (a one-line UsageError naming near names), `names` (the declared order, then registration order) and `entries`.
Every name table of the command line and the spec schema is derived from one: click choices, help texts, enums.
A registry whose entries live in other modules imports them (`load`) before its first lookup, never before, so
listing stays cheap.

Registering a model records its metadata (inputs, outputs, task, pre/post-processing, tolerances) without importing
torch; the factory itself imports what it needs when `create_model` calls it. `pack models` and `pack --help` only
read this metadata, so they stay fast.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from .errors import UsageError


class Named(Protocol):
    """What a registry holds: anything with a name."""

    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=Named)


class Registry(Generic[E]):
    """Entries of one kind by name. `order`: names listed first, in this order (the rest follow in registration
    order); `load`: modules that register the entries, imported before the first lookup; `see`: what to do when a
    name is unknown and none is near (default: the list of names)."""

    def __init__(self, kind: str, *, order: Sequence[str] = (), load: Sequence[str] = (), see: str | None = None) -> None:
        self.kind = kind
        self._order = tuple(order)
        self._load = tuple(load)
        self._see = see
        self._entries: dict[str, E] = {}

    def register(self, entry: E) -> E:
        """Add `entry` under its name and return it (so `@registry.register` decorates); twice is a bug in pack."""
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry
        return entry

    def _ready(self) -> None:
        for module in self._load:  # an import that fails is tried again at the next lookup
            importlib.import_module(module)
        self._load = ()

    def names(self) -> list[str]:
        self._ready()
        declared = [n for n in self._order if n in self._entries]
        return declared + [n for n in self._entries if n not in self._order]

    def entries(self) -> list[E]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        self._ready()
        return name in self._entries

    def find(self, name: str) -> E | None:
        self._ready()
        return self._entries.get(name)

    def near(self, name: str, also: Sequence[str] = ()) -> list[str]:
        """The registered names (and `also`) that look like `name`, closest first."""
        return difflib.get_close_matches(name, [*self.names(), *also], n=3, cutoff=0.5)

    def unknown(self, name: str, where: str = "", also: Sequence[str] = ()) -> UsageError:
        """The one line for a name that is not registered (`also`: other words the caller accepts, e.g. `all`)."""
        near = self.near(name, also)
        if near:
            hint = f"did you mean {' or '.join(near)}?"
        else:
            hint = self._see or f"use one of {', '.join([*self.names(), *also])}"
        return UsageError(f"unknown {self.kind} {name!r}{where}", hint)

    def get(self, name: str) -> E:
        entry = self.find(name)
        if entry is None:
            raise self.unknown(name)
        return entry


# The ImageNet pre-processing of torchvision's classifiers and of TorchServe's vision handlers: resize the short side
# to 256, centre-crop 224, normalise with ImageNet's mean and std.
IMAGENET_PREPROCESSING = {
    "image_size": [224, 224],
    "resize": 256,
    "crop": 224,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")


BATCH = "batch"  # the name of the batch dimension


@dataclass(frozen=True)
class TensorSpec:
    """One forward() input: its name, an example shape, dtype, dynamic axes and value range.

    Each dynamic axis is a named dimension: the declared name (`dim_names`, axis -> name), else `batch` for axis 0,
    else `<input>_dim<axis>`. Axes of the same name are one dimension, in every input; the axis named `batch` is the
    batch axis (axis 0 unless declared elsewhere, e.g. an LSTM state's axis 1)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    dynamic_axes: tuple[int, ...] = (0,)
    range: tuple[float, float] | None = None
    fill: str | None = None  # zeros | ones | random: the spec's override of the rule that fills examples (report/cases.py)
    dim_names: tuple[tuple[int, str], ...] = ()  # declared names of dynamic axes, (axis, name) in axis order

    def axis_name(self, axis: int) -> str:
        declared = dict(self.dim_names)
        return declared.get(axis) or (BATCH if axis == 0 else f"{self.name}_dim{axis}")

    @property
    def batch_axis(self) -> int | None:
        """The dynamic axis named `batch`, or None (no batch axis: the declared shape is the only batch)."""
        return next((a for a in self.dynamic_axes if self.axis_name(a) == BATCH), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "dynamic_axes": list(self.dynamic_axes),
        }
        if self.range is not None:
            out["range"] = list(self.range)
        if self.fill is not None:
            out["fill"] = self.fill
        if self.dim_names:
            out["dim_names"] = {str(a): n for a, n in self.dim_names}
        return out


@dataclass(frozen=True)
class OutputSpec:
    """One output (a tensor, or one element of a returned tuple), with optional per-output tolerances."""

    name: str
    dynamic_axes: tuple[int, ...] = (0,)
    atol: float | None = None
    rtol: float | None = None
    variable: tuple[int, ...] = ()  # axes whose size depends on the data (a detector's count of boxes)


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


MODELS: Registry[ModelEntry] = Registry("model", load=("packager.models",), see="run `pack models` for the built-in names")


def register_model(
    name: str,
    *,
    inputs: list[TensorSpec],
    outputs: list[OutputSpec],
    **meta: Any,
) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator: register the decorated zero-argument factory as the built-in model `name`."""

    def wrap(factory: Callable[[], Any]) -> Callable[[], Any]:
        MODELS.register(
            ModelEntry(
                name=name,
                factory=factory,
                inputs=tuple(inputs),
                outputs=tuple(outputs),
                description=meta.pop("description", (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""),
                **meta,
            )
        )
        return factory

    return wrap


def list_models() -> list[ModelEntry]:
    """The built-in models, by name (what `pack models` lists)."""
    return sorted(MODELS.entries(), key=lambda e: e.name)


def get_entry(name: str) -> ModelEntry | None:
    return MODELS.find(name)


def create_model(name: str) -> Any:
    """Build the built-in model `name` with its seeded random initialisation, in eval mode."""
    return MODELS.get(name).factory()

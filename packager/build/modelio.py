"""How pack calls a model: inputs bound to forward() by name, outputs flattened to stable names.

Every format is exported from one `ExportModule` around the user's model. It takes the inputs positionally, in the
order the spec lists them, passes each to the forward() parameter of the same name (or by position when the names
are not parameter names), and returns a flat tuple of tensors. So TorchScript, ONNX, the ExportedProgram and the
AOTInductor package all have the same inputs and the same outputs, in the same order, under the same names.

Output names come from the structure the model returns: a tensor is `output`; dict, ModelOutput and dataclass fields
keep their keys (`logits`, `last_hidden_state`, `out`); elements of a returned tuple or list are `output_0`,
`output_1`...; nested parts are joined with dots (`aux.0`, `output_1.boxes`). A tuple or list of one element is
named as that element (a detector's `[{"boxes", "scores", "labels"}]` gives `boxes`, `scores`, `labels`). `None`
is left out; so is any other object that holds no tensors pack can name (a key/value cache), with a warning.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

NO_CACHE_PARAMETER = "use_cache"  # a forward() that takes it gets False: one forward pass, no key/value cache outputs


@dataclass(frozen=True)
class Binding:
    """Where each input goes in forward(): by keyword or by position, and which inputs are lists of tensors."""

    names: tuple[str, ...]
    by_keyword: bool
    as_list: tuple[bool, ...]  # the parameter takes a list of tensors: the input is split along its batch axis
    extra_kwargs: dict[str, Any] = field(default_factory=dict)

    def arrange(self, args: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
        values = [list(a.unbind(0)) if listed else a for a, listed in zip(args, self.as_list, strict=True)]
        if self.by_keyword:
            return [], {**self.extra_kwargs, **dict(zip(self.names, values, strict=True))}
        return values, dict(self.extra_kwargs)

    def describe(self) -> str:
        how = "by name" if self.by_keyword else "by position"
        listed = [n for n, flag in zip(self.names, self.as_list, strict=True) if flag]
        extra = f"; {', '.join(f'{k}={v!r}' for k, v in self.extra_kwargs.items())}" if self.extra_kwargs else ""
        return f"inputs passed {how}" + (f"; {', '.join(listed)} as a list of tensors" if listed else "") + extra


def _is_tensor_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return any(_is_tensor_list(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin in (list, Sequence) or annotation is list  # bare typing.List has origin list too


def _signature(model: Any) -> inspect.Signature | None:
    forward = getattr(model, "forward", None)
    if forward is None:
        return None
    for eval_str in (True, False):
        try:
            return inspect.signature(forward, eval_str=eval_str)
        except (NameError, TypeError, ValueError, SyntaxError):
            continue
    return None


def bind(model: Any, input_names: Sequence[str]) -> Binding:
    """Decide how the spec's inputs reach forward(): every name a parameter -> by keyword; none -> by position."""
    names = tuple(input_names)
    sig = _signature(model)
    if sig is None:
        return Binding(names, False, tuple(False for _ in names))
    params = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    by_name = {p.name: p for p in params}
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_varargs = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    matching = [n for n in names if n in by_name]
    extra = {NO_CACHE_PARAMETER: False} if NO_CACHE_PARAMETER in by_name and NO_CACHE_PARAMETER not in names else {}
    if matching and len(matching) == len(names) and all(by_name[n].kind != by_name[n].POSITIONAL_ONLY for n in names):
        return Binding(names, True, tuple(_is_tensor_list(by_name[n].annotation) for n in names), extra)
    order = [p.name for p in positional]
    if matching and any(n in order and order.index(n) != names.index(n) for n in matching):
        raise UsageError(
            f"inputs {', '.join(n for n in names if n not in by_name)} are not forward() parameters, and "
            f"{', '.join(matching)} would land on other parameters by position",
            f"name every input after a forward() parameter ({', '.join(order[:8])})",
        )
    if len(names) > len(positional) and not takes_varargs:
        raise UsageError(
            f"{len(names)} inputs given, but forward() takes {len(positional)} positional parameter(s) "
            f"({', '.join(order) or 'none'})",
            "name the inputs after forward()'s parameters so they are passed by keyword",
        )
    listed = tuple(_is_tensor_list(positional[i].annotation) if i < len(positional) else False for i in range(len(names)))
    return Binding(names, False, listed, extra)


def _items(value: Any) -> list[tuple[str, Any]] | None:
    """The named children of a container (mapping, dataclass, namedtuple, tuple/list), or None for a leaf."""
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return [(str(k), getattr(value, k)) for k in value._fields]
    if isinstance(value, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(value)]
    return None


def flatten(out: Any, is_tensor: Any) -> tuple[list[tuple[str, Any]], list[str]]:
    """(name, tensor) pairs in a stable order, and the names of parts left out (neither tensors nor containers)."""
    leaves: list[tuple[str, Any]] = []
    dropped: list[str] = []

    def walk(value: Any, path: list[str], top: bool) -> None:
        if value is None:
            return
        if is_tensor(value):
            leaves.append((".".join(path) or "output", value))
            return
        children = _items(value)
        if children is None:
            dropped.append(f"{'.'.join(path) or 'output'} ({type(value).__name__})")
            return
        sequence = isinstance(value, (list, tuple)) and not hasattr(value, "_fields")
        if sequence and len(children) == 1:
            walk(children[0][1], path, top)
            return
        for key, child in children:
            part = f"output_{key}" if top and sequence else key
            walk(child, [*path, part], False)

    walk(out, [], True)
    return leaves, dropped


def export_module(model: Any, binding: Binding) -> Any:
    """The nn.Module every format is exported from: positional inputs in spec order -> what the model returns when
    that is one tensor (so `model.pt` and `model.pt2` stay drop-in models), else a flat tuple of tensors."""
    import torch

    class ExportModule(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.model = inner

        def forward(self, *args: Any) -> Any:
            call_args, call_kwargs = binding.arrange(args)
            out = self.model(*call_args, **call_kwargs)
            if isinstance(out, torch.Tensor):
                return out
            leaves, _ = flatten(out, lambda v: isinstance(v, torch.Tensor))
            return tuple(t for _, t in leaves)

    wrapped = ExportModule(model)
    wrapped.eval()
    return wrapped


def output_names(model: Any, binding: Binding, example: Sequence[Any]) -> tuple[list[str], list[str], str]:
    """Run the model once and return (output names, parts left out, what the exports return: `tensor` when the model
    returns one tensor, else `tuple`, a flat tuple in the output names' order)."""
    import torch

    call_args, call_kwargs = binding.arrange(example)
    with torch.inference_mode():
        out = model(*call_args, **call_kwargs)
    leaves, dropped = flatten(out, lambda v: isinstance(v, torch.Tensor))
    names = [name for name, _ in leaves]
    if len(set(names)) != len(names):  # keys that collide once joined with dots: fall back to positions
        names = [f"output_{i}" for i in range(len(names))]
    return names, dropped, "tensor" if isinstance(out, torch.Tensor) else "tuple"


__all__ = ["Binding", "bind", "export_module", "flatten", "output_names"]

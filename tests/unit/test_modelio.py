"""How pack calls a model (packager/build/modelio.py): inputs bound to forward() by name or position, and outputs
flattened to stable names."""

from __future__ import annotations

import dataclasses
from collections import namedtuple
from typing import Any, List, Optional  # noqa: UP035 - the annotations torchvision writes

import numpy as np
import pytest

from packager.build.modelio import bind, export_module, flatten, output_names
from packager.errors import UsageError


class ByName:
    def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any: ...


class Positional:
    def forward(self, x: Any, y: Any) -> Any: ...


class WithCache:
    def forward(self, input_ids: Any, use_cache: bool = True) -> Any: ...


class Detector:
    def forward(self, images: List[Any], targets: Optional[List[Any]] = None) -> Any: ...  # noqa: UP006, UP045 - torchvision's own spelling


class PositionalOnly:
    def forward(self, x: Any, /) -> Any: ...


class VarArgs:
    def forward(self, *tensors: Any) -> Any: ...


def test_every_input_a_parameter_name_goes_by_keyword_whatever_the_order() -> None:
    binding = bind(ByName(), ["attention_mask", "input_ids"])
    assert binding.by_keyword and binding.as_list == (False, False)
    args, kwargs = binding.arrange(["MASK", "IDS"])
    assert args == [] and kwargs == {"attention_mask": "MASK", "input_ids": "IDS"}
    assert binding.describe() == "inputs passed by name"


def test_no_input_a_parameter_name_goes_by_position() -> None:
    binding = bind(Positional(), ["a", "b"])
    assert not binding.by_keyword
    assert binding.arrange(["A", "B"]) == (["A", "B"], {})
    assert binding.describe() == "inputs passed by position"
    assert not bind(PositionalOnly(), ["x"]).by_keyword  # a positional-only parameter cannot take a keyword
    assert bind(VarArgs(), ["a", "b", "c"]).arrange([1, 2, 3]) == ([1, 2, 3], {})


def test_a_mix_that_would_land_on_the_wrong_parameters_is_refused() -> None:
    with pytest.raises(UsageError, match="would land on other parameters by position"):
        bind(Positional(), ["y", "z"])  # y would be passed as x
    with pytest.raises(UsageError, match=r"3 inputs given, but forward\(\) takes 2 positional"):
        bind(Positional(), ["a", "b", "c"])


def test_use_cache_is_turned_off() -> None:
    binding = bind(WithCache(), ["input_ids"])
    assert binding.extra_kwargs == {"use_cache": False}
    assert binding.arrange(["IDS"]) == ([], {"use_cache": False, "input_ids": "IDS"})
    assert "use_cache=False" in binding.describe()
    assert bind(WithCache(), ["input_ids", "use_cache"]).extra_kwargs == {}  # the user gives it: left alone


def test_a_list_of_tensors_parameter_gets_the_input_split_along_its_first_axis() -> None:
    import torch

    assert bind(Detector(), ["images", "targets"]).as_list == (True, True)  # Optional[List[Tensor]] too
    binding = bind(Detector(), ["images"])
    assert binding.by_keyword and binding.as_list == (True,)
    _, kwargs = binding.arrange([torch.zeros(2, 3, 4, 4)])
    assert [t.shape for t in kwargs["images"]] == [(3, 4, 4), (3, 4, 4)]
    assert binding.describe() == "inputs passed by name; images as a list of tensors"


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray)


@dataclasses.dataclass
class Output:
    logits: Any
    hidden: Any = None


Pair = namedtuple("Pair", ["first", "second"])
A, B, C = np.zeros(1), np.ones(1), np.full(1, 2.0)


@pytest.mark.parametrize(
    "out, names",
    [
        (A, ["output"]),
        ({"logits": A, "aux": {"0": B}}, ["logits", "aux.0"]),
        ((A, B), ["output_0", "output_1"]),
        (((A, B), C), ["output_0.0", "output_0.1", "output_1"]),
        ([{"boxes": A, "scores": B, "labels": C}], ["boxes", "scores", "labels"]),  # a detector's one-image list
        ((A, None, B), ["output_0", "output_2"]),
        (Output(A), ["logits"]),
        (Pair(A, B), ["first", "second"]),
        ([A], ["output"]),
    ],
)
def test_outputs_are_flattened_to_stable_names(out: Any, names: list[str]) -> None:
    leaves, dropped = flatten(out, _is_array)
    assert [n for n, _ in leaves] == names and dropped == []


def test_parts_that_hold_no_tensors_are_left_out_and_named() -> None:
    leaves, dropped = flatten({"logits": A, "cache": object(), "steps": 3}, _is_array)
    assert [n for n, _ in leaves] == ["logits"]
    assert dropped == ["cache (object)", "steps (int)"]


class DictModel:
    def __call__(self, x: Any) -> Any:
        return {"a.b": x, "a": {"b": x * 2}, "skip": None}

    def forward(self, x: Any) -> Any: ...


def test_names_that_collide_once_joined_fall_back_to_positions() -> None:
    import torch

    model = DictModel()
    names, dropped, _ = output_names(model, bind(model, ["x"]), [torch.ones(1, 2)])
    assert names == ["output_0", "output_1"] and dropped == []


def test_export_module_takes_positional_inputs_and_returns_a_flat_tuple() -> None:
    import torch

    class Model(torch.nn.Module):
        def forward(self, mask: torch.Tensor, ids: torch.Tensor) -> dict[str, Any]:
            return {"sum": ids + mask, "parts": (ids, None, mask)}

    model = Model()
    wrapped = export_module(model, bind(model, ["ids", "mask"]))  # spec order differs from forward()'s
    assert not wrapped.training
    ids, mask = torch.tensor([1.0]), torch.tensor([10.0])
    out = wrapped(ids, mask)
    assert isinstance(out, tuple) and [t.item() for t in out] == [11.0, 1.0, 10.0]

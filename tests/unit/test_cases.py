"""The gate's validation cases (packager/report/cases.py): seeded inputs, named integer inputs, the second size of every
dynamic axis, flipped values, and the case the exporters trace with."""

from __future__ import annotations

import numpy as np
import pytest

from packager.registry import TensorSpec
from packager.report.cases import Case, batch_cases, export_case, fill_rule, flipped, larger, make_inputs, resized_cases

IMAGE = TensorSpec("input", (1, 3, 8, 8))
TOKENS = TensorSpec("input_ids", (2, 16), "int64", (0, 1), (0, 1000))


def test_inputs_are_numpy_pcg64_seeded_with_seed_and_batch() -> None:
    """The same arrays on every machine: PCG64([seed, batch]), standard normal floats."""
    [x] = make_inputs([IMAGE], batch=4, seed=3)
    expected = np.random.Generator(np.random.PCG64([3, 4])).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(x, expected)
    assert x.flags["C_CONTIGUOUS"]
    assert not np.array_equal(make_inputs([IMAGE], 4, seed=4)[0], x)
    assert not np.array_equal(make_inputs([IMAGE], 4, seed=3, resize=larger)[0][:, :, :8, :8], x)  # its own stream


def test_value_ranges_and_dtypes() -> None:
    specs = [
        TensorSpec("ids", (2, 64), "int64"),
        TensorSpec("ranged", (2, 64), "int32", range=(5, 8)),
        TensorSpec("pixels", (2, 64), "float32", range=(0.0, 1.0)),
        TensorSpec("flags", (2, 64), "bool"),
    ]
    ids, ranged, pixels, flags = make_inputs(specs, 2, 0)
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 10  # default integer range [0, 10)
    assert ranged.dtype == np.int32 and set(np.unique(ranged)) <= {5, 6, 7}
    assert pixels.dtype == np.float32 and pixels.min() >= 0 and pixels.max() <= 1
    assert flags.dtype == np.bool_ and flags.any() and not flags.all()


def test_masks_are_ones_and_token_types_zeros_unless_a_range_is_given() -> None:
    mask, types, ranged_mask = make_inputs(
        [
            TensorSpec("attention_mask", (2, 8), "int64"),
            TensorSpec("token_type_ids", (2, 8), "int64"),
            TensorSpec("attention_mask", (2, 8), "int64", range=(0, 2)),
        ],
        2,
        0,
    )
    assert (mask == 1).all() and (types == 0).all()
    assert set(np.unique(ranged_mask)) == {0, 1}


def test_batch_replaces_only_a_dynamic_first_axis() -> None:
    cases = batch_cases([IMAGE, TensorSpec("scale", (1, 2), dynamic_axes=())], [1, 4], 0)
    assert [(c.label, c.batch) for c in cases] == [("batch 1", 1), ("batch 4", 4)]
    assert [a.shape for a in cases[1].inputs] == [(4, 3, 8, 8), (1, 2)]


@pytest.mark.parametrize("size, step_up", [(16, 32), (224, 256), (4, 8), (3, 4), (48, 64), (640, 672)])
def test_one_step_up_adds_the_largest_power_of_two_factor_up_to_32(size: int, step_up: int) -> None:
    assert larger(size) == step_up


def test_second_sizes_of_the_other_dynamic_axes() -> None:
    labels = [c.label for c in resized_cases([TOKENS], batch=2, seed=0)]
    assert labels == ["batch 2, input_ids axis 1 = 8", "batch 2, input_ids axis 1 = 32", "batch 2, input_ids axis 1 = 15"]
    half = resized_cases([TOKENS], 2, 0)[0]
    assert half.resized and half.inputs[0].shape == (2, 8)
    short = TensorSpec("x", (1, 2), dynamic_axes=(0, 1))  # too short to halve or shorten: one step up only
    assert [c.inputs[0].shape for c in resized_cases([short], 2, 0)] == [(2, 4)]
    assert resized_cases([IMAGE], 2, 0) == []  # only the batch axis is dynamic


def test_flipped_values_take_the_other_branch() -> None:
    specs = [TensorSpec("x", (1, 4)), TOKENS, TensorSpec("attention_mask", (1, 8), "int64"), TensorSpec("b", (1, 4), "bool")]
    case = Case("batch 1", 1, make_inputs(specs, 1, 0))
    x, ids, mask, b = flipped(specs, case).inputs
    np.testing.assert_array_equal(x, -case.inputs[0])
    np.testing.assert_array_equal(ids, 999 - case.inputs[1])  # mirrored in [0, 1000)
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0, 0, 0]]  # padded on the right
    np.testing.assert_array_equal(b, ~case.inputs[3])
    assert flipped(specs, case).label == "batch 1, values flipped"


def test_exporters_trace_with_the_first_declared_case_of_batch_two_or_more() -> None:
    one, four = batch_cases([TOKENS], [1, 4], 0)
    resized = resized_cases([TOKENS], 4, 0)[0]
    assert export_case([one, resized, four]) is four
    assert export_case([one]) is one
    assert export_case([resized]) is resized


def test_padding_masks_are_all_false_and_attention_masks_ones() -> None:
    """PyTorch's `src_key_padding_mask` means True = padding: an all-True mask pads everything (issue 24)."""
    specs = [
        TensorSpec("src_key_padding_mask", (2, 8), "bool"),
        TensorSpec("key_padding_mask", (2, 8), "int64"),
        TensorSpec("attention_mask", (2, 8), "bool"),
    ]
    padding, padding_int, attention = make_inputs(specs, 2, 0)
    assert not padding.any() and not padding_int.any() and attention.all()
    assert fill_rule(specs[0])[0] == "zeros" and "padding mask" in fill_rule(specs[0])[1]
    assert fill_rule(specs[2]) == ("ones", "attention mask (named like a mask; 1 = attend): every position attended")
    # flipped: the right half padded, in each mask's own meaning
    flipped_padding, _, flipped_attention = flipped(specs, Case("batch 2", 2, [padding, padding_int, attention])).inputs
    assert flipped_padding[0].tolist() == [False] * 5 + [True] * 3
    assert flipped_attention[0].tolist() == [True] * 5 + [False] * 3


def test_a_spec_fill_overrides_the_rule_by_name() -> None:
    ones, randoms = make_inputs(
        [
            TensorSpec("src_key_padding_mask", (2, 8), "bool", fill="ones"),
            TensorSpec("attention_mask", (2, 64), "bool", fill="random"),
        ],
        2,
        0,
    )
    assert ones.all() and randoms.any() and not randoms.all()
    assert fill_rule(TensorSpec("m", (1,), "bool", fill="ones")) == ("ones", "the spec's `fill`")

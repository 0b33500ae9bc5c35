"""The parity gate's comparison (packager/report/validate.py): shapes, exact dtypes, NaN/Inf, the scale-aware tolerance, the
overall rms bound, row matching for outputs without a batch axis, and running a format over every case."""

from __future__ import annotations

import numpy as np
import pytest

from packager.registry import Tolerance
from packager.report.cases import Case
from packager.report.validate import compare, constant_outputs, first_failure, summarise, validate_model_outputs

TOL = Tolerance(atol=1e-4, rtol=1e-3)
CASE = Case("batch 2", 2, [])


def _normal(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_equal_outputs_pass_with_zero_error() -> None:
    e = _normal((2, 10))
    check = compare(e, e.copy(), TOL, CASE, "logits")
    assert check.passed and check.max_abs_error == 0 and check.rms_rel_error == 0 and check.reason == ""
    assert (check.case, check.batch, check.output) == ("batch 2", 2, "logits")
    assert check.scale == pytest.approx(float(np.abs(e).max()))


def test_an_output_far_below_atol_is_held_to_its_own_scale() -> None:
    """Outputs peaking at 1e-9: zeros are within a plain atol of 1e-4, but not within the scale-aware atol."""
    e = _normal((2, 10)) * 1e-9
    zeros = np.zeros_like(e)
    assert np.allclose(zeros, e, atol=TOL.atol, rtol=TOL.rtol)  # what a scale-blind check would accept
    check = compare(e, zeros, TOL, CASE, "tiny")
    assert not check.passed and "exceeds atol" in check.reason and "output scale" in check.reason
    assert check.detectable_abs_error < 1e-11
    # the same output computed right (float32 rounding of a float64 result) still passes
    assert compare(e, (e.astype(np.float64) * (1 + 1e-7)).astype(np.float32), TOL, CASE, "tiny").passed


def test_every_value_a_little_off_fails_the_rms_bound() -> None:
    """Each value within atol' + rtol x |eager| (5e-4 relative), but the overall error is 5x rtol / 10."""
    e = _normal((4, 256))
    slightly = (e.astype(np.float64) * (1 + 5e-4)).astype(np.float32)
    check = compare(e, slightly, TOL, CASE, "logits")
    assert not check.passed and "overall error" in check.reason and "every value a little off" in check.reason
    assert check.rms_rel_error == pytest.approx(5e-4, rel=0.05)
    assert compare(e, (e.astype(np.float64) * (1 + 5e-5)).astype(np.float32), TOL, CASE, "logits").passed


def test_one_value_out_of_tolerance_is_named_with_its_index() -> None:
    e = _normal((2, 10))
    a = e.copy()
    a[1, 3] += 0.5
    check = compare(e, a, TOL, CASE, "logits")
    assert not check.passed and "worst at index [1, 3]" in check.reason
    assert check.max_abs_error == pytest.approx(0.5, rel=1e-5)


def test_shapes_rows_and_dtypes() -> None:
    e = _normal((2, 10))
    rows = compare(e, _normal((3, 10)), TOL, CASE, "boxes")
    assert not rows.passed and rows.reason.startswith("3 rows, eager has 2")
    other = compare(e, _normal((2, 11)), TOL, CASE, "logits")
    assert not other.passed and other.reason == "shape [2, 11] != eager [2, 10]"
    labels = np.array([1, 2, 3])
    assert compare(labels, labels.copy(), TOL, CASE, "labels").passed
    off = compare(labels, np.array([1, 2, 4]), TOL, CASE, "labels")
    assert not off.passed and off.reason == "1 of 3 values differ"  # integers are exact, whatever the tolerance


def test_nan_in_the_export_where_eager_is_finite_fails() -> None:
    e = _normal((2, 4))
    a = e.copy()
    a[0, 0] = np.nan
    check = compare(e, a, TOL, CASE, "y")
    assert not check.passed and check.reason == "1 NaN/Inf values where the eager output is finite"
    e_nan = e.copy()
    e_nan[0, 0] = np.nan
    assert compare(e_nan, a, TOL, CASE, "y").passed  # where eager itself is NaN, the value is not compared
    assert compare(np.full((2, 2), np.inf), np.full((2, 2), np.inf), TOL, CASE, "y").passed


def test_runner_failures_and_output_count_fail_their_case() -> None:
    cases = [
        Case("batch 1", 1, [np.zeros((1, 3))], [np.zeros((1, 2))]),
        Case("batch 4", 4, [np.zeros((4, 3))], [np.zeros((4, 2))]),
    ]

    def runner(arrays: list[np.ndarray]) -> list[np.ndarray]:
        if arrays[0].shape[0] == 4:
            raise ValueError("Got invalid dimensions for input\nsecond line")
        return [np.zeros((1, 2)), np.zeros((1, 2))]

    checks = validate_model_outputs(runner, cases, ["y"], [TOL])
    assert [(c.case, c.output, c.passed) for c in checks] == [("batch 1", "*", False), ("batch 4", "*", False)]
    assert checks[0].reason == "2 outputs, eager has 1"
    assert checks[1].reason == "failed to run: ValueError: Got invalid dimensions for input"


def _detections() -> tuple[list[np.ndarray], list[np.ndarray]]:
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 8, 8]], np.float32)
    scores = np.array([0.5, 0.5, 0.25], np.float32)  # the first two tie
    order = [1, 0, 2]
    return [boxes, scores], [boxes[order], scores[order]]


def test_tied_rows_in_another_order_are_matched_without_a_batch_axis() -> None:
    expected, swapped = _detections()
    case = Case("batch 1", 1, [np.zeros((1, 3, 8, 8), np.float32)], expected)
    ordered = validate_model_outputs(lambda _: swapped, [case], ["boxes", "scores"], [TOL, TOL], unordered_rows=False)
    assert not ordered[0].passed
    matched = validate_model_outputs(lambda _: swapped, [case], ["boxes", "scores"], [TOL, TOL], unordered_rows=True)
    assert all(c.passed for c in matched)
    assert matched[0].note == "rows matched to eager's up to order (ties)"
    wrong = [swapped[0] + 1.0, swapped[1]]  # matching rows does not excuse wrong values
    assert not validate_model_outputs(lambda _: wrong, [case], ["boxes", "scores"], [TOL, TOL], unordered_rows=True)[0].passed


def test_constant_outputs_are_named() -> None:
    cases = [
        Case("batch 1", 1, [], [np.full((1, 2), 7.0), _normal((1, 2), 1)]),
        Case("batch 4", 4, [], [np.full((4, 2), 7.0), _normal((4, 2), 2)]),
    ]
    assert constant_outputs(cases, ["same", "varies"]) == ["same"]


def test_summary_and_first_failure() -> None:
    e = _normal((2, 3))
    good = compare(e, e, TOL, CASE, "a")
    bad = compare(e, e + 1, TOL, CASE, "b")
    assert first_failure([good, bad]) is bad and first_failure([good]) is None
    summary = summarise([good, bad])
    assert summary["passed"] is False and summary["max_abs_error"] == pytest.approx(1.0)
    assert [c["output"] for c in summary["checks"]] == ["a", "b"]
    assert "reason" not in summary["checks"][0] and summary["checks"][1]["reason"]
    assert summarise([])["passed"] is True


def _top_k(batch: int = 2, rows: int = 4) -> np.ndarray:
    """(N, K, 6) rows of box, score, class; rows 0 and 1 tie in score at every batch index."""
    out = np.zeros((batch, rows, 6), np.float32)
    for b in range(batch):
        for k in range(rows):
            out[b, k] = [k * 10 + b, k * 10, k * 10 + 5, k * 10 + 5, 0.9 if k < 2 else 0.5 - 0.1 * k, k]
    return out


def test_tied_rows_of_a_batched_output_are_matched_at_each_batch_index() -> None:
    expected = _top_k()
    case = Case("batch 2", 2, [np.zeros((2, 3), np.float32)], [expected])
    swapped = expected.copy()
    swapped[1, [0, 1]] = expected[1, [1, 0]]  # the tied rows of batch index 1 in the other order
    checks = validate_model_outputs(lambda _: [swapped], [case], ["detections"], [TOL])
    assert checks[0].passed and checks[0].note == "tied rows matched to eager's at each batch index"


def test_untied_rows_out_of_order_and_wrong_values_still_fail() -> None:
    expected = _top_k()
    case = Case("batch 2", 2, [np.zeros((2, 3), np.float32)], [expected])
    reordered = expected.copy()
    reordered[0, [2, 3]] = expected[0, [3, 2]]  # scores 0.3 and 0.2: no tie, a real reordering
    assert not validate_model_outputs(lambda _: [reordered], [case], ["detections"], [TOL])[0].passed
    wrong = expected.copy()
    wrong[1, [0, 1]] = expected[1, [1, 0]]
    wrong[1, 0, 0] += 1.0  # tied rows swapped, and a box moved: matching does not excuse it
    assert not validate_model_outputs(lambda _: [wrong], [case], ["detections"], [TOL])[0].passed


def test_tied_rows_split_over_boxes_scores_and_labels_are_matched_together() -> None:
    detections = _top_k()
    boxes, scores, labels = detections[..., :4], detections[..., 4], detections[..., 5].astype(np.int64)
    case = Case("batch 2", 2, [np.zeros((2, 3), np.float32)], [boxes, scores, labels])
    order = [1, 0, 2, 3]  # the tied rows 0 and 1 swapped at batch index 0
    swapped = [boxes.copy(), scores.copy(), labels.copy()]
    for out in swapped:
        out[0] = out[0][order]
    checks = validate_model_outputs(lambda _: swapped, [case], ["boxes", "scores", "labels"], [TOL] * 3)
    assert all(c.passed for c in checks), [c.reason for c in checks]
    swapped[2][0, 0] = 7  # a wrong label stays wrong
    assert not validate_model_outputs(lambda _: swapped, [case], ["boxes", "scores", "labels"], [TOL] * 3)[2].passed

"""The parity gate: compare an export with the eager model, output by output, in every validation case.

One `validate_model_outputs` serves every format, the build gate, `pack verify --parity` and the deploy smoke tests.
An output passes when
  * it has the eager shape (a variable-length output: the same number of rows),
  * it has no NaN/Inf where the eager output is finite, and integer and bool outputs are equal,
  * elementwise, |export - eager| <= atol' + rtol * |eager|, where atol' = min(atol, rtol * scale) and scale is the
    largest |eager| value: an output far smaller than atol is held to its own scale, so an export that returns
    zeros for an output that peaks at 1e-9 fails,
  * and overall, rms(export - eager) <= rtol / 10 * rms(eager): a small error spread over every value (slightly
    wrong weights) fails even where each value alone is within tolerance.
Each check records the smallest error it would have caught (`detectable_abs_error`, at the smallest |eager| value).

Variable-length outputs of a model without a batch axis (a detector's boxes, scores and labels) must have the same
number of rows as eager; rows that tie (equal scores) may come in another order, so when a case fails as it comes,
the rows of every output with that many rows are matched one to one (nearest first) and compared again.
Batched outputs of rows (a top-k or detection output `(N, K, 6)`) may reorder tied rows at any batch index: when one
fails as it comes, its rows are matched at each batch index the same way, and the match is kept only where every row
it moves trades places with rows that tie with it (an equal value in eager, the score), so a real reordering fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import Tolerance
from .cases import Case

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]
RMS_FRACTION = 0.1  # the overall rms error allowed, as a fraction of rtol


@dataclass
class OutputCheck:
    case: str
    batch: int
    output: str
    passed: bool
    max_abs_error: float
    max_rel_error: float
    rms_rel_error: float = 0.0
    scale: float = 0.0
    detectable_abs_error: float = 0.0
    reason: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v != "" or k not in ("reason", "note")}


def _fail(case: Case, name: str, reason: str) -> OutputCheck:
    return OutputCheck(case.label, case.batch, name, False, float("inf"), float("inf"), float("inf"), reason=reason)


def compare(expected: np.ndarray, actual: np.ndarray, tol: Tolerance, case: Case, name: str) -> OutputCheck:
    actual = np.asarray(actual)
    if tuple(actual.shape) != tuple(expected.shape):
        if actual.ndim == expected.ndim and actual.ndim and actual.shape[1:] == expected.shape[1:]:
            return _fail(
                case,
                name,
                f"{actual.shape[0]} rows, eager has {expected.shape[0]} (shape {list(actual.shape)} != {list(expected.shape)})",
            )
        return _fail(case, name, f"shape {list(actual.shape)} != eager {list(expected.shape)}")
    if expected.dtype.kind in "biu" or actual.dtype.kind == "b":
        differ = int((expected.astype(np.int64) != actual.astype(np.int64)).sum()) if expected.size else 0
        reason = f"{differ} of {expected.size} values differ" if differ else ""
        return OutputCheck(
            case.label, case.batch, name, not differ, float(differ > 0), float(differ > 0), float(differ > 0), 0.0, 1.0, reason
        )
    e = expected.astype(np.float64)
    a = actual.astype(np.float64)
    bad_e, bad_a = ~np.isfinite(e), ~np.isfinite(a)
    if (bad_a & ~bad_e).any():
        return _fail(case, name, f"{int((bad_a & ~bad_e).sum())} NaN/Inf values where the eager output is finite")
    finite = ~bad_e
    if not finite.any():
        return OutputCheck(case.label, case.batch, name, True, 0.0, 0.0)
    e, a = e[finite], a[finite]
    err = np.abs(a - e)
    ref = np.abs(e)
    scale = float(ref.max())
    atol = min(tol.atol, tol.rtol * scale)
    max_abs = float(err.max())
    max_rel = float((err / np.maximum(ref, max(atol, 1e-30))).max())
    rms_ref = float(np.sqrt(np.mean(e * e)))
    rms_rel = float(np.sqrt(np.mean(err * err)) / rms_ref) if rms_ref > 0 else (0.0 if max_abs == 0 else float("inf"))
    detectable = float(atol + tol.rtol * ref.min())
    check = OutputCheck(case.label, case.batch, name, True, max_abs, max_rel, rms_rel, scale, detectable)
    excess = err - (atol + tol.rtol * ref)
    if (excess > 0).any():
        worst = int(np.argmax(excess))
        index = [int(i) for i in np.argwhere(finite)[worst]]
        check.passed = False
        check.reason = (
            f"max abs error {max_abs:.3g} exceeds atol {atol:.3g} + rtol {tol.rtol:g} x |eager| "
            f"(worst at index {index}: export {a[worst]:.9g}, eager {e[worst]:.9g}; output scale {scale:.3g})"
        )
    elif rms_rel > tol.rtol * RMS_FRACTION:
        check.passed = False
        check.reason = (
            f"overall error {rms_rel:.3g} of the output's rms exceeds rtol / 10 = {tol.rtol * RMS_FRACTION:.3g} "
            "(every value a little off)"
        )
    return check


def _nearest_order(e: np.ndarray, a: np.ndarray) -> np.ndarray:
    """For rows `e` (eager) and `a` (an export), both (rows, values): the row of `a` matched to each row of `e`, the
    nearest pairs first (distance: the largest difference, scaled by each column's magnitude in eager)."""
    rows = e.shape[0]
    scale = np.maximum(np.abs(e).max(axis=0), 1e-12)
    distance = (np.abs(e[:, None, :] - a[None, :, :]) / scale).max(axis=2)
    order = np.empty(rows, dtype=np.int64)
    free = np.ones(rows, dtype=bool)
    for i in np.argsort(distance.min(axis=1), kind="stable"):
        j = int(np.argmin(np.where(free, distance[i], np.inf)))
        order[i], free[j] = j, False
    return order


def _matched(expected: list[np.ndarray], actual: list[np.ndarray], group: list[int]) -> list[np.ndarray]:
    """`actual` with the rows of the outputs in `group` (same leading size) reordered to match eager's, nearest first."""
    rows = expected[group[0]].shape[0]
    e = np.concatenate([expected[i].reshape(rows, -1).astype(np.float64) for i in group], axis=1)
    a = np.concatenate([actual[i].reshape(rows, -1).astype(np.float64) for i in group], axis=1)
    order = _nearest_order(e, a)
    out = list(actual)
    for i in group:
        out[i] = np.asarray(actual[i])[order]
    return out


def _tied_order(expected: np.ndarray, actual: np.ndarray) -> np.ndarray | None:
    """Row order of `actual` (K, ...) matched to `expected`'s at one batch index, or None when a row it moves does not
    tie with the row whose place it takes (no value of the two eager rows is equal)."""
    rows = expected.shape[0]
    e = expected.reshape(rows, -1).astype(np.float64)
    order = _nearest_order(e, np.asarray(actual).reshape(rows, -1).astype(np.float64))
    moved = np.flatnonzero(order != np.arange(rows))
    if any(not (e[i] == e[order[i]]).any() for i in moved):
        return None
    return order


def _match_batched(
    case: Case, actual: list[np.ndarray], checks: list[OutputCheck], tolerances: Sequence[Tolerance], names: Sequence[str]
) -> None:
    """Failed outputs of rows `(N, K, ...)` compared again with tied rows matched at each batch index; outputs with the
    same (N, K) (a detector's boxes, scores and labels) are matched together, as one row each."""
    heads = {e.shape[:2] for e, c in zip(case.outputs, checks, strict=True) if not c.passed and e.ndim >= 2 and e.shape[1] > 1}
    for head in heads:
        group = [i for i, e in enumerate(case.outputs) if e.shape[:2] == head and np.shape(actual[i]) == e.shape]
        if not any(case.outputs[i].ndim >= 3 for i in group):  # rows of values (boxes, a top-k's entries), not logits
            continue
        rows = [
            (
                np.concatenate([case.outputs[i][b].reshape(head[1], -1) for i in group], axis=1),
                np.concatenate([np.asarray(actual[i])[b].reshape(head[1], -1) for i in group], axis=1),
            )
            for b in range(head[0])
        ]
        orders = [_tied_order(e, a) for e, a in rows]
        if any(o is None for o in orders):
            continue
        again = [
            compare(
                case.outputs[i],
                np.stack([np.asarray(actual[i])[b][o] for b, o in enumerate(orders)]),
                tolerances[i],
                case,
                names[i],
            )
            for i in group
        ]
        if all(c.passed for c in again):
            for i, c in zip(group, again, strict=True):
                c.note = "tied rows matched to eager's at each batch index"
                checks[i] = c


def _compare_case(
    case: Case, actual: list[np.ndarray], names: Sequence[str], tolerances: Sequence[Tolerance], unordered: bool
) -> list[OutputCheck]:
    checks = [
        compare(e, np.asarray(a), tol, case, name)
        for name, tol, e, a in zip(names, tolerances, case.outputs, actual, strict=True)
    ]
    if all(c.passed for c in checks):
        return checks
    if not unordered:
        _match_batched(case, actual, checks, tolerances, names)
        return checks
    for rows in {e.shape[0] for e, c in zip(case.outputs, checks, strict=True) if not c.passed and e.ndim and e.shape[0] > 1}:
        group = [i for i, e in enumerate(case.outputs) if e.ndim and e.shape[0] == rows and np.shape(actual[i])[:1] == (rows,)]
        if not group:
            continue
        matched = _matched(case.outputs, list(actual), group)
        again = [compare(case.outputs[i], matched[i], tolerances[i], case, names[i]) for i in group]
        if all(c.passed for c in again):
            for i, c in zip(group, again, strict=True):
                c.note = "rows matched to eager's up to order (ties)"
                checks[i] = c
    return checks


def validate_model_outputs(
    runner: Runner,
    cases: Sequence[Case],
    output_names: Sequence[str],
    tolerances: Sequence[Tolerance],
    unordered_rows: bool = False,
) -> list[OutputCheck]:
    """Run `runner` on each case's inputs and compare every output with the case's eager outputs.

    `unordered_rows`: the model has no batch axis, so rows of equal-length outputs may be matched up to order."""
    checks: list[OutputCheck] = []
    for case in cases:
        try:
            actual = runner(case.inputs)
        except Exception as exc:  # an export that cannot run at this shape fails the gate
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            checks.append(_fail(case, "*", f"failed to run: {type(exc).__name__}: {first[:300]}"))
            continue
        if len(actual) != len(case.outputs):
            checks.append(_fail(case, "*", f"{len(actual)} outputs, eager has {len(case.outputs)}"))
            continue
        checks.extend(_compare_case(case, list(actual), output_names, tolerances, unordered_rows))
    return checks


def constant_outputs(cases: Sequence[Case], output_names: Sequence[str]) -> list[str]:
    """Outputs whose every value, in every case, is the same: the gate cannot tell a broken export by them."""
    constant = []
    for i, name in enumerate(output_names):
        values = [c.outputs[i] for c in cases if c.outputs[i].size]
        if values and all(np.array_equal(v, np.full_like(v, values[0].flat[0]), equal_nan=True) for v in values):
            constant.append(name)
    return constant


def summarise(checks: list[OutputCheck]) -> dict[str, Any]:
    """Per-format summary for the report: passed, worst errors, and every check."""
    return {
        "passed": all(c.passed for c in checks),
        "max_abs_error": max((c.max_abs_error for c in checks), default=0.0),
        "max_rel_error": max((c.max_rel_error for c in checks), default=0.0),
        "checks": [c.to_dict() for c in checks],
    }


def first_failure(checks: list[OutputCheck]) -> OutputCheck | None:
    return next((c for c in checks if not c.passed), None)


__all__ = ["OutputCheck", "compare", "constant_outputs", "first_failure", "summarise", "validate_model_outputs"]

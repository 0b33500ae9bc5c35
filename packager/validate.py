"""The parity gate: compare every export with the eager model, output by output, at every validated batch size.

One `validate_model_outputs` serves every format. An output passes when it has the eager shape, no NaN/Inf the eager
output lacks, and |export - eager| <= atol + rtol * |eager| everywhere (numpy.allclose's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .registry import Tolerance
from .runners import Runner


@dataclass
class OutputCheck:
    batch: int
    output: str
    passed: bool
    max_abs_error: float
    max_rel_error: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "output": self.output,
            "passed": self.passed,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            **({"reason": self.reason} if self.reason else {}),
        }


def compare(expected: np.ndarray, actual: np.ndarray, tol: Tolerance, batch: int, name: str) -> OutputCheck:
    if tuple(actual.shape) != tuple(expected.shape):
        return OutputCheck(batch, name, False, float("inf"), float("inf"), f"shape {list(actual.shape)} != eager {list(expected.shape)}")
    if expected.dtype == np.bool_ or actual.dtype == np.bool_:
        diff = (expected != actual).astype(np.float64)
        bad = int(diff.sum())
        return OutputCheck(batch, name, bad == 0, float(diff.max(initial=0.0)), float(diff.max(initial=0.0)), f"{bad} values differ" if bad else "")
    e = expected.astype(np.float64)
    a = actual.astype(np.float64)
    nan_e, nan_a = ~np.isfinite(e), ~np.isfinite(a)
    if (nan_a & ~nan_e).any():
        count = int((nan_a & ~nan_e).sum())
        return OutputCheck(batch, name, False, float("inf"), float("inf"), f"{count} NaN/Inf values where the eager output is finite")
    finite = ~nan_e
    if not finite.any():
        return OutputCheck(batch, name, True, 0.0, 0.0)
    err = np.abs(a[finite] - e[finite])
    ref = np.abs(e[finite])
    max_abs = float(err.max(initial=0.0))
    max_rel = float((err / np.maximum(ref, max(tol.atol, 1e-12))).max(initial=0.0))
    excess = err - (tol.atol + tol.rtol * ref)
    if (excess > 0).any():
        worst = int(np.argmax(excess))
        index = tuple(int(i) for i in np.argwhere(finite)[worst])
        reason = (
            f"max abs error {max_abs:.3g} exceeds atol {tol.atol:g} + rtol {tol.rtol:g} x |eager| "
            f"(worst at index {list(index)}: export {a[index]:.9g}, eager {e[index]:.9g})"
        )
        return OutputCheck(batch, name, False, max_abs, max_rel, reason)
    return OutputCheck(batch, name, True, max_abs, max_rel)


def validate_model_outputs(
    runner: Runner,
    cases: dict[int, tuple[list[np.ndarray], list[np.ndarray]]],
    output_names: list[str],
    tolerances: list[Tolerance],
) -> list[OutputCheck]:
    """Run `runner` on each batch size's inputs and compare every output with the recorded eager outputs."""
    checks: list[OutputCheck] = []
    for batch, (inputs, expected) in cases.items():
        try:
            actual = runner(inputs)
        except Exception as exc:  # an export that cannot run at this batch size fails the gate
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            checks.append(OutputCheck(batch, "*", False, float("inf"), float("inf"), f"failed to run: {first[:300]}"))
            continue
        if len(actual) != len(expected):
            checks.append(OutputCheck(batch, "*", False, float("inf"), float("inf"), f"{len(actual)} outputs, eager has {len(expected)}"))
            continue
        for name, tol, e, a in zip(output_names, tolerances, expected, actual):
            checks.append(compare(e, np.asarray(a), tol, batch, name))
    return checks


def summarise(checks: list[OutputCheck]) -> dict[str, Any]:
    """Per-format summary for the report: passed, worst errors, and every check."""
    finite_abs = [c.max_abs_error for c in checks]
    return {
        "passed": all(c.passed for c in checks),
        "max_abs_error": max(finite_abs, default=0.0),
        "max_rel_error": max((c.max_rel_error for c in checks), default=0.0),
        "checks": [c.to_dict() for c in checks],
    }


def first_failure(checks: list[OutputCheck]) -> OutputCheck | None:
    return next((c for c in checks if not c.passed), None)

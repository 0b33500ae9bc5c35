"""The build's recorded sample (inputs and eager outputs) and its comparison, through the gate's own function.

`pack verify --parity`, both deploy smoke tests and `pack bench` compare what a file or a server returns for the
sample with `validate_model_outputs`, the function the build gate uses: the same tolerances, the same scale rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import Tolerance
from .build_report import BuildReport
from .cases import Case
from .validate import OutputCheck, first_failure, validate_model_outputs


@dataclass
class Sample:
    case: Case
    names: list[str]
    tolerances: list[Tolerance]
    unordered: bool  # the model has no batch axis: rows may be matched up to order (see packager/report/validate.py)

    @property
    def inputs(self) -> list[np.ndarray]:
        return self.case.inputs

    def check(self, runner: Callable[[list[np.ndarray]], Sequence[np.ndarray]]) -> list[OutputCheck]:
        return validate_model_outputs(
            lambda arrays: list(runner(arrays)), [self.case], self.names, self.tolerances, self.unordered
        )

    def check_outputs(self, outputs: Sequence[np.ndarray]) -> list[OutputCheck]:
        """Compare outputs already received (from a server) with the recorded eager outputs."""
        return self.check(lambda _: outputs)


def variant_tolerances(record: dict[str, Any], outputs: int) -> list[Tolerance] | None:
    """The per-output tolerances a variant was gated with (report `variants.results[].tolerance`), or None."""
    recorded = record.get("tolerance") or []
    if len(recorded) != outputs:
        return None
    return [Tolerance(atol=float(t["atol"]), rtol=float(t["rtol"])) for t in recorded]


def load_sample(folder: Path, report: BuildReport | dict[str, Any], serving: bool = False) -> Sample:
    """The recorded sample with the build's tolerances; `serving`: what a server answers is compared within the
    served variant's own tolerances when the targets serve one (an int8 file is not held to float32's)."""
    if isinstance(report, dict):
        report = BuildReport.from_dict(report)
    inputs = [_load(folder, p) for p in report.samples.inputs]
    expected = [_load(folder, p) for p in report.samples.outputs]
    tolerances = [Tolerance(atol=float(o.atol), rtol=float(o.rtol)) for o in report.outputs]
    variant = report.served_variant() if serving else None
    tolerances = (variant_tolerances(variant, len(tolerances)) if variant else None) or tolerances
    batch = report.samples.batch
    case = Case(f"batch {batch} (the recorded sample)", batch, inputs, expected)
    return Sample(case, report.output_names, tolerances, not report.inputs_batchable)


def _load(folder: Path, rel: str) -> np.ndarray:
    """A sample .npy, read without pickles (allow_pickle=False: a crafted sample cannot run code)."""
    from ..errors import ValidationFailed

    path = folder / rel
    if path.is_symlink() or not path.is_file():
        raise ValidationFailed(f"sample {path} is missing", "rebuild with `pack build`; the build folder is incomplete")
    try:
        array: np.ndarray = np.load(path, allow_pickle=False)
        return array
    except (ValueError, OSError, EOFError) as exc:
        raise ValidationFailed(
            f"sample {path} is not a readable .npy file ({str(exc)[:120]})", "rebuild with `pack build`"
        ) from None


def verdict(checks: list[OutputCheck]) -> dict[str, Any]:
    """The smoke-test document: passed, per-output figures, and the first failure's reason."""
    bad = first_failure(checks)
    out: dict[str, Any] = {
        "passed": bad is None,
        "outputs": [
            {
                "output": c.output,
                "passed": c.passed,
                "max_abs_error": c.max_abs_error,
                "max_rel_error": c.max_rel_error,
                **({"reason": c.reason} if c.reason else {}),
            }
            for c in checks
        ],
    }
    if bad is not None:
        out["reason"] = f"output {bad.output!r}: {bad.reason}" if bad.output != "*" else bad.reason
    return out


__all__ = ["Sample", "load_sample", "variant_tolerances", "verdict"]

"""The build's recorded sample (inputs and eager outputs) and its comparison, through the gate's own function.

`pack verify --parity`, both deploy smoke tests and `pack bench` compare what a file or a server returns for the
sample with `validate_model_outputs`, the function the build gate uses: the same tolerances, the same scale rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .cases import Case
from .registry import Tolerance
from .validate import OutputCheck, first_failure, validate_model_outputs


@dataclass
class Sample:
    case: Case
    names: list[str]
    tolerances: list[Tolerance]
    unordered: bool  # the model has no batch axis: rows may be matched up to order (see packager/validate.py)

    @property
    def inputs(self) -> list[np.ndarray]:
        return self.case.inputs

    def check(self, runner: Callable[[list[np.ndarray]], Sequence[np.ndarray]]) -> list[OutputCheck]:
        return validate_model_outputs(lambda arrays: list(runner(arrays)), [self.case], self.names, self.tolerances, self.unordered)

    def check_outputs(self, outputs: Sequence[np.ndarray]) -> list[OutputCheck]:
        """Compare outputs already received (from a server) with the recorded eager outputs."""
        return self.check(lambda _: outputs)


def load_sample(folder: Path, report: dict[str, Any]) -> Sample:
    samples = report["samples"]
    inputs = [np.load(folder / p) for p in samples["inputs"]]
    expected = [np.load(folder / p) for p in samples["outputs"]]
    default = report.get("tolerance") or {"atol": 1e-4, "rtol": 1e-3}
    tolerances = [Tolerance(atol=float(o.get("atol", default["atol"])), rtol=float(o.get("rtol", default["rtol"]))) for o in report["outputs"]]
    batch = int(samples.get("batch", inputs[0].shape[0] if inputs and inputs[0].ndim else 1))
    case = Case(f"batch {batch} (the recorded sample)", batch, inputs, expected)
    unordered = not all(0 in (i.get("dynamic_axes") or []) for i in report["inputs"])
    return Sample(case, [o["name"] for o in report["outputs"]], tolerances, unordered)


def verdict(checks: list[OutputCheck]) -> dict[str, Any]:
    """The smoke-test document: passed, per-output figures, and the first failure's reason."""
    bad = first_failure(checks)
    out: dict[str, Any] = {
        "passed": bad is None,
        "outputs": [{"output": c.output, "passed": c.passed, "max_abs_error": c.max_abs_error, "max_rel_error": c.max_rel_error,
                     **({"reason": c.reason} if c.reason else {})} for c in checks],
    }
    if bad is not None:
        out["reason"] = f"output {bad.output!r}: {bad.reason}" if bad.output != "*" else bad.reason
    return out


__all__ = ["Sample", "load_sample", "verdict"]

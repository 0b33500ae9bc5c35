"""pt2's capture tries what torch.export offers before giving up (packager/export/pt2.py): each attempt is recorded
with why it failed, a program that does not run at batch 1 fails its attempt, and data-dependent control flow ends
the attempts. torch.export itself is replaced by fakes here (error paths); tests/integration/test_export_causes.py
runs the real one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from packager.export import pt2
from packager.registry import TensorSpec

SPECS = [TensorSpec("x", (4, 6), "float32", (0,))]
EXAMPLE = [np.zeros((4, 6), np.float32)]


class Symbol:
    """A dynamic size as torch.export records it (a SymInt prints as its symbol)."""

    def __str__(self) -> str:
        return "s0"


def _program(runs_at_batch_1: bool) -> Any:
    node = SimpleNamespace(op="placeholder", name="x", meta={"val": SimpleNamespace(shape=(Symbol(), 6))})

    def module() -> Any:
        def run(x: np.ndarray) -> np.ndarray:
            if x.shape[0] == 1 and not runs_at_batch_1:
                raise AssertionError("Guard failed: x.size()[0] != 1")
            return x

        return run

    return SimpleNamespace(graph=SimpleNamespace(nodes=[node]), graph_signature=SimpleNamespace(user_inputs=["x"]), module=module)


def _fake_export(results: dict[str, Any]) -> Any:
    def export(module: Any, example: list[Any], inputs: list[Any], attempt: str) -> Any:
        result = results[attempt]
        if isinstance(result, Exception):
            raise result
        return result

    return export


def test_a_program_that_refuses_batch_1_gives_way_to_the_size_oblivious_one(monkeypatch: pytest.MonkeyPatch) -> None:
    good = _program(runs_at_batch_1=True)
    monkeypatch.setattr(pt2, "_export", _fake_export({"non-strict": _program(False), "size-oblivious": good}))
    attempts: list[dict[str, str]] = []
    program, error = pt2.capture(object(), EXAMPLE, SPECS, attempts)
    assert program is good and error is None
    assert attempts[0] == {
        "attempt": "non-strict",
        "failed": "the program does not run at batch 1 (AssertionError: Guard failed: x.size()[0] != 1)",
    }
    assert attempts[1]["attempt"] == "size-oblivious" and "passed" in attempts[1]


def test_every_attempt_failing_is_one_line_with_a_fix_that_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pt2, "_export", _fake_export({"non-strict": _program(False), "size-oblivious": _program(False)}))
    attempts: list[dict[str, str]] = []
    program, error = pt2.capture(object(), EXAMPLE, SPECS, attempts)
    assert program is None and error is not None
    assert error.startswith("torch.export failed (non-strict, size-oblivious: the program does not run at batch 1")
    assert error.endswith("; declare the batch static (dyn= without 0), or serve torchscript or onnx")
    assert "inside the range" not in error and len(attempts) == 2


def test_data_dependent_control_flow_ends_the_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    failure = RuntimeError("Could not guard on data-dependent expression Eq(u0, 1)")
    monkeypatch.setattr(pt2, "_export", _fake_export({"non-strict": failure, "size-oblivious": _program(True)}))
    attempts: list[dict[str, str]] = []
    program, error = pt2.capture(object(), EXAMPLE, SPECS, attempts)
    assert program is None and [a["attempt"] for a in attempts] == ["non-strict"]
    assert error is not None and "data-dependent" in error and "torch.cond" in error

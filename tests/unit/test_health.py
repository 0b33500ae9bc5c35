"""`pack status`'s health decisions (packager/serve/health.py), in-process with a real build and fake probes and
repairs (the real servers are in integration/test_reliability_health.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from packager.errors import DeployFailed
from packager.serve import health as h
from packager.serve.http import Unreachable


def _model(store: Path, version: str = "1") -> h.Deployed:
    return h.Deployed("tiny", version, store)


def test_no_build_to_probe_with_is_unknown_not_healthy(tmp_path):
    calls: list[Any] = []
    result = h.check_and_repair(_model(tmp_path), lambda f, r: calls.append(f) or {"passed": True}, lambda: None, 1)
    assert result == {"health": h.UNKNOWN, "reason": "no build tiny v1 in the store to probe it with"} and calls == []


def test_a_wrong_or_missing_answer_is_unhealthy_with_its_reason(tiny_store):
    wrong = h.check(_model(tiny_store), lambda f, r: {"passed": False, "reason": "output 'logits': max abs error 3"})
    assert wrong["health"] == h.UNHEALTHY and wrong["reason"] == "output 'logits': max abs error 3"

    def unreachable(folder: Path, report: Any) -> dict[str, Any]:
        raise Unreachable("Triton", "http://127.0.0.1:1", "connection refused")

    gone = h.check(_model(tiny_store), unreachable)
    assert gone["health"] == h.UNHEALTHY and "connection refused" in gone["reason"]
    assert h.check(_model(tiny_store), lambda f, r: {"passed": True})["health"] == h.HEALTHY


def test_repair_reloads_then_probes_until_healthy(tiny_store):
    answers = iter([False, False, True])
    reloads: list[int] = []
    result = h.check_and_repair(
        _model(tiny_store), lambda f, r: {"passed": next(answers), "reason": "stub not healthy"}, lambda: reloads.append(1), 10
    )
    assert reloads == [1] and result["health"] == h.HEALTHY
    assert result["repair"]["repaired"] and result["repair"]["was"] == "stub not healthy"
    line = h.health_line("tiny", "1", result)
    assert line.startswith("  tiny v1: healthy (repaired in ") and line.endswith("it was unhealthy: stub not healthy)")


def test_a_repair_that_fails_or_does_not_help_says_so(tiny_store):
    def refuse() -> None:
        raise DeployFailed("the load failed", "see the server log")

    failed = h.check_and_repair(_model(tiny_store), lambda f, r: {"passed": False, "reason": "bad"}, refuse, 1)
    assert failed["health"] == h.UNHEALTHY and not failed["repair"]["repaired"]
    assert failed["repair"]["reason"] == "the reload failed: the load failed; see the server log"
    assert "not repaired: the reload failed" in h.health_line("tiny", "1", failed)
    stuck = h.check_and_repair(_model(tiny_store), lambda f, r: {"passed": False, "reason": "bad"}, lambda: None, 0.6)
    assert stuck["health"] == h.UNHEALTHY and not stuck["repair"]["repaired"]
    assert "not repaired: still failing" in h.health_line("tiny", "1", stuck)


def test_healthy_is_not_repaired(tiny_store):
    def must_not_run() -> None:
        pytest.fail("a healthy model was reloaded")

    assert "repair" not in h.check_and_repair(_model(tiny_store), lambda f, r: {"passed": True}, must_not_run, 1)

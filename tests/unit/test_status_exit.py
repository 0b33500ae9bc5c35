"""`pack status` says a served model's health in its exit code (issue 20, item 3): 7 when a deployment is unhealthy
or `--repair` did not repair it, after its whole document (stdout stays parseable); 0 when every one is healthy or
unknown. The target's status is replaced by a fixed document: what is tested is the CLI's rule, once for every target
(tests/integration/test_reliability_health.py has it on real servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from packager.targets import get_target
from tests.helpers.cli import invoke


def _health(state: str, repaired: bool | None = None) -> dict[str, Any]:
    health: dict[str, Any] = {"health": state, "reason": "inference failed" if state == "unhealthy" else ""}
    if repaired is not None:
        health["repair"] = {"repaired": repaired, "was": "inference failed", "seconds": 1.0}
    return health


def _serve(monkeypatch: pytest.MonkeyPatch, document: dict[str, Any]) -> None:
    target = get_target("fastapi")
    assert target is not None
    monkeypatch.setattr(target, "status", lambda opts: document)


@pytest.mark.parametrize(
    "document, extra, code, line",
    [
        ({"models": [{"name": "tiny", "version": "1", "health": _health("healthy")}]}, (), 0, ""),
        ({"models": [{"name": "tiny", "version": "1", "health": _health("unknown")}]}, (), 0, ""),
        ({"models": []}, (), 0, ""),
        (
            {"models": [{"name": "tiny", "version": "1", "health": _health("unhealthy")}]},
            (),
            7,
            "error: unhealthy: tiny v1; run `pack status --repair`",
        ),
        (  # Triton's shape: a health map by deployment
            {"health": {"a": {**_health("healthy"), "version": "1"}, "b": {**_health("unhealthy"), "version": "2"}}},
            (),
            7,
            "error: unhealthy: b v2;",
        ),
        (  # TorchServe's shape: `model` in each entry
            {"models": [{"model": "tiny", "version": "3", "health": _health("unhealthy", repaired=False)}]},
            ("--repair",),
            7,
            "error: not repaired: tiny v3; see the server's log",
        ),
        ({"models": [{"name": "tiny", "version": "1", "health": _health("healthy", repaired=True)}]}, ("--repair",), 0, ""),
    ],
)
def test_status_exit_code_says_the_health(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, document: dict[str, Any], extra: tuple[str, ...], code: int, line: str
) -> None:
    doc = {"target": "fastapi", "running": True, **document}
    _serve(monkeypatch, doc)
    result = invoke("status", "--target", "fastapi", "--store", str(tmp_path), *extra, "--json")
    assert result.returncode == code, result.stderr
    assert json.loads(result.stdout) == doc  # the whole document first, whatever the code
    if code:
        assert result.stderr.strip().splitlines()[-1].startswith(line), result.stderr
